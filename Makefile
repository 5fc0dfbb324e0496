# slp_toolkit: `make setup`, `make quickstart`, `make test`. Every target does its own set-up and is
# safe to run again (a second `make setup` does nothing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   := data/synth
RUN    := outputs/ctc_quickstart

.PHONY: setup quickstart test test-slow lint format bench bench-data bench-full clean system-deps

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

quickstart: setup
	@test -f $(DATA)/test_unseen/metadata.csv || $(BIN)/slp data synth $(DATA) --n 4000 --seed 0
	@if [ -d $(RUN)/checkpoints ]; then $(BIN)/slp train recipes/asr/ctc_quickstart.yaml --resume; \
	  else $(BIN)/slp train recipes/asr/ctc_quickstart.yaml; fi
	$(BIN)/slp eval $(RUN) --data $(DATA)/test_unseen
	$(BIN)/slp transcribe $(RUN) $$(ls $(DATA)/test_unseen/*.flac | head -2)
	@echo
	@echo "Model: $(RUN)  (metrics: $(RUN)/eval/test_unseen/metrics.json, curves: $(RUN)/curves.png)"
	@echo "Load it anywhere with plain transformers:"
	@echo "  from transformers import pipeline"
	@echo "  asr = pipeline('automatic-speech-recognition', model='$(RUN)')"
	@echo "  print(asr('some.wav')['text'])"

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
	rm -rf $(VENV) outputs data/synth
