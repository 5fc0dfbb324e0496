"""Task tts: SpeechT5 text-to-speech with speaker embeddings, measured by what a listener cares about.

The model is `SpeechT5ForTextToSpeech` from a Hub name (microsoft/speecht5_tts), a local dir or a
scratch preset (a character tokenizer built from the training text). Targets are the processor's
80-bin log-mel frames, each clip trimmed to a multiple of the reduction factor so the stop label and
the decoder mask line up; the loss is SpeechT5's own (L1 before/after the postnet + stop-token BCE +
guided attention with weight `model.guided_attention_weight`; 0 turns it off).

Speakers (`model.speaker_embedding`): `table` (one learned vector per value of the speaker column),
`file` (`<speaker>.npy` in `model.speaker_embedding_dir`) or `xvector` (SpeechBrain). Whichever, the
vectors are saved in OUTPUT/speaker_embeddings/ (one .npy per speaker + index.json), which is all plain
transformers needs beside the model and processor.

Evaluation synthesises the held-out sentences (vocoder `model.vocoder`: griffin-lim or a HiFi-GAN dir)
and reports `mcd` (mel-cepstral distortion with DTW against the recording), `mcd_sl` (the same times the
length mismatch, which DTW alone forgives), `length_ratio` and, when
`model.judge_asr` names an ASR model, round-trip `cer`/`wer` (normalised) and `cer_raw`/`wer_raw`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from slp_toolkit.config import ModelConfig, Recipe, rule
from slp_toolkit.data.splits import column
from slp_toolkit.metrics import asr_metrics, mel_cepstral_distortion
from slp_toolkit.runtime.loading import apply_settings, explicit_keys, scratch_values
from slp_toolkit.runtime.presets import SPEECHT5_PRESETS, check_preset
from slp_toolkit.tasks import (
    Capabilities,
    LearningRates,
    ModelLoadError,
    Tab,
    Task,
    load_or_fail,
    no_grad,
    register,
    tts_audio,
)

log = logging.getLogger("slp")

VOCODERS = (tts_audio.GRIFFIN_LIM,)
SETTINGS = "tts_config.json"  # vocoder, judge and speaker mode, beside the processor files
MAX_FRAMES_PER_CHAR = 10  # decoding stops here if the stop token never fires (speech is ~5 frames/char)


class TtsProcessor:
    """SpeechT5Processor plus what synthesis needs beside it: speaker vectors, reduction factor,
    vocoder and judge. `save_pretrained` writes the plain processor files (so AutoProcessor loads
    them) and the speaker table next to them."""

    def __init__(self, processor, speakers: dict, reduction_factor: int, vocoder: str, judge_asr: str | None):
        self.processor, self.speakers, self.reduction_factor = processor, speakers, reduction_factor
        self.vocoder, self.judge_asr = vocoder, judge_asr
        self.vocab = {t.replace("▁", " ") for t in processor.tokenizer.get_vocab()}
        self.max_chars = 448  # SpeechT5's 450 text positions, less <s> and </s>; set from the model config

    def __getattr__(self, name):  # tokenizer, feature_extractor...
        if name.startswith("__") or "processor" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["processor"], name)

    @property
    def fingerprint_extra(self) -> str:
        return json.dumps(sorted(self.speakers))

    @property
    def sampling_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def save_pretrained(self, path) -> None:
        path = Path(path)
        self.processor.save_pretrained(path)
        tts_audio.save_speakers(self.speakers, path)
        settings = {"vocoder": self.vocoder, "judge_asr": self.judge_asr}
        (path / SETTINGS).write_text(json.dumps(settings, indent=1))

    def vector(self, speaker: str) -> np.ndarray:
        if speaker in self.speakers:
            return self.speakers[speaker]
        if speaker.endswith(".npy") and Path(speaker).is_file():
            return np.load(speaker).astype(np.float32).reshape(-1)
        if not speaker and len(self.speakers) == 1:
            return next(iter(self.speakers.values()))
        known = ", ".join(list(self.speakers)[:8]) or "none: pass a .npy file"
        raise tts_audio.SpeakerError(f"unknown speaker {speaker!r} (known: {known})")

    def encode(self, text: str) -> list[int]:
        """Token ids of the speakable text (see tts_audio.speakable); each dropped character is reported
        once per process, not once per row."""
        clean, dropped = tts_audio.speakable(text, self.vocab, self.max_chars)
        new = set(dropped) - self.__dict__.setdefault("_reported", set())
        if new:
            self._reported |= new
            log.warning("characters outside the vocabulary are dropped: %s", " ".join(sorted(new)))
        return self.tokenizer(clean).input_ids


# ---------------------------------------------------------------- build and load


@dataclass(frozen=True)
class TtsModelConfig(ModelConfig):
    # table: a learned vector per speaker; file: <speaker>.npy in speaker_embedding_dir; xvector: SpeechBrain
    speaker_embedding: Literal["table", "file", "xvector"] = "table"
    speaker_embedding_dir: str | None = None
    min_clips_per_speaker: int = field(default=1, metadata=rule(min=1))
    vocoder: str = "griffin-lim"  # or a SpeechT5HifiGan dir / Hub name (microsoft/speecht5_hifigan)
    guided_attention_weight: float = field(default=10.0, metadata=rule(min=0.0))  # SpeechT5's lambda; 0: off
    judge_asr: str | None = None  # an ASR model dir: evaluation transcribes the synthesised speech with it
    # Mel frames per decoder step, scratch models only (None: the preset's 2). Higher: fewer autoregressive
    # steps, faster training and alignment, coarser frames.
    reduction_factor: int | None = field(default=None, metadata=rule(min=1, max=8))


def build(recipe: Recipe, train_ds) -> tuple:
    from slp_toolkit.data.splits import cache_root
    from slp_toolkit.runtime import scratch

    cfg: TtsModelConfig = recipe.model
    texts = column(train_ds, "raw_text")
    settings = {
        "dropout": cfg.dropout,
        "layerdrop": cfg.layerdrop,  # speecht5_tts ships 0.1; its decoder prenet keeps its 0.5 dropout either way
        "use_guided_attention_loss": cfg.guided_attention_weight > 0,
        "guided_attention_loss_scale": cfg.guided_attention_weight,
    }
    if cfg.init == "scratch":
        shape = {"reduction_factor": cfg.reduction_factor} if cfg.reduction_factor else {}
        try:
            model, processor = scratch.build_speecht5(texts, cfg.preset, settings=scratch_values(settings), **shape)
        except ValueError as err:
            raise ModelLoadError(f"model.preset: {err}") from None
    else:
        from transformers import SpeechT5Config, SpeechT5ForTextToSpeech, SpeechT5Processor

        name = cfg.name_or_path
        processor = load_or_fail(SpeechT5Processor.from_pretrained, name, "SpeechT5 processor")
        config = load_or_fail(SpeechT5Config.from_pretrained, name, "SpeechT5 config")
        apply_settings(config, settings, explicit_keys(cfg), "speecht5")  # before the model: its loss reads them
        model = load_or_fail(SpeechT5ForTextToSpeech.from_pretrained, name, "SpeechT5 TTS model", config=config)
    c = model.config
    speakers = tts_audio.keep_speakers(column(train_ds, "speaker"), cfg.min_clips_per_speaker)
    dim = c.speaker_embedding_dim
    if cfg.speaker_embedding == "table":
        vectors = tts_audio.table_vectors(speakers, dim)
    elif cfg.speaker_embedding == "file":
        vectors = tts_audio.file_vectors(speakers, cfg.speaker_embedding_dir, dim)
    else:
        vectors = tts_audio.xvector_vectors(train_ds, speakers, cache_root())
    wrapped = TtsProcessor(processor, vectors, c.reduction_factor, cfg.vocoder, cfg.judge_asr)
    wrapped.max_chars = c.max_text_positions - 2
    return model, wrapped


def load(model_dir: str) -> tuple:
    """A trained TTS dir (speaker table and settings included) or a Hub name (speakers from .npy files)."""
    from transformers import SpeechT5ForTextToSpeech, SpeechT5Processor

    processor = load_or_fail(SpeechT5Processor.from_pretrained, model_dir, "SpeechT5 processor")
    model = load_or_fail(SpeechT5ForTextToSpeech.from_pretrained, model_dir, "SpeechT5 TTS model")
    settings_file = Path(model_dir) / SETTINGS
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    speakers = tts_audio.load_speakers(Path(model_dir))
    vocoder = settings.get("vocoder") or tts_audio.GRIFFIN_LIM
    wrapped = TtsProcessor(processor, speakers, model.config.reduction_factor, vocoder, settings.get("judge_asr"))
    wrapped.max_chars = model.config.max_text_positions - 2
    return model.eval(), wrapped


def speakers(model, processor) -> list[str]:
    return list(processor.speakers)


def keep(example: dict, processor) -> bool:
    """Rows whose speaker has a vector (speakers with too few clips or no embedding file have none) and
    whose text the model can speak (not only symbols, not longer than its text positions)."""
    if example.get("speaker", "") not in processor.speakers:
        return False
    try:
        processor.encode(_text(example))
    except tts_audio.TextError:
        return False
    return True


# ---------------------------------------------------------------- features and batches
DITHER = 1e-4  # ~ -80 dBFS


def target_mel(audio, processor) -> np.ndarray:
    """The log-mel frames the model learns to produce. A faint fixed dither (as Kaldi's feature
    extraction adds) keeps digital silence, common in synthetic and edited audio, at the level of a quiet
    room (log10 mel ~ -4) instead of the extractor's floor (-10): those outliers otherwise dominate the L1
    loss. It changes speech frames by < 0.01."""
    audio = np.asarray(audio, dtype=np.float32)
    noise = np.random.default_rng(len(audio)).normal(scale=DITHER, size=audio.shape).astype(np.float32)
    mel = processor.feature_extractor(audio_target=audio + noise, sampling_rate=processor.sampling_rate)
    return np.asarray(mel.input_values[0], dtype=np.float32)


def preprocess(example: dict, processor) -> dict:
    ids = processor.encode(example.get("raw_text") or example["text"])
    return {"input_ids": ids, "labels": target_mel(example["audio"], processor)}


def collate(examples: list[dict], processor) -> dict:
    """Token ids padded with the pad id; mel targets trimmed to a multiple of the reduction factor and
    padded with -100 (ignored by the loss); the decoder mask marks the real frames."""
    import torch

    pad = processor.tokenizer.pad_token_id
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e["input_ids"])] = torch.as_tensor(e["input_ids"])
        mask[i, : len(e["input_ids"])] = 1
    vectors = np.stack([processor.vector(str(e.get("speaker", ""))) for e in examples])
    batch = {"input_ids": ids, "attention_mask": mask, "speaker_embeddings": torch.as_tensor(vectors)}
    if "labels" in examples[0]:
        r = processor.reduction_factor
        mels = [np.asarray(e["labels"], dtype=np.float32) for e in examples]
        lengths = [max(r, len(m) - len(m) % r) for m in mels]
        labels = torch.full((len(mels), max(lengths), mels[0].shape[-1]), -100.0)
        frames = torch.zeros((len(mels), max(lengths)), dtype=torch.long)
        for i, (m, n) in enumerate(zip(mels, lengths, strict=True)):
            labels[i, : min(n, len(m))] = torch.as_tensor(m[:n])
            frames[i, : min(n, len(m))] = 1
        batch["labels"], batch["decoder_attention_mask"] = labels, frames
    return batch


# ---------------------------------------------------------------- synthesis and scores
@contextlib.contextmanager
def seeded(device, seed: int = 0):
    """A fixed RNG for the model's device inside the block, every generator as it was after it. torch.manual_seed
    reseeds every GPU, and fork_rng(devices=[]) restored only the CPU's: an evaluation on a GPU replayed the
    training run's dropout stream from a fixed point at every eval."""
    import torch

    gpus = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.random.default_generator.manual_seed(seed)
        if gpus:
            with torch.cuda.device(gpus[0]):
                torch.cuda.manual_seed(seed)  # the current device's only
        yield


@no_grad
def generate(model, processor, examples: list[dict], attentions: bool = False):
    """Log-mel frames per example (list of (T, mels) tensors) and, with `attentions`, the cross
    attentions of the first example (layers*heads, steps, tokens)."""

    batch = collate(
        [{"input_ids": processor.encode(_text(e)), "speaker": e.get("speaker", "")} for e in examples], processor
    )
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    # The decoder prenet keeps its dropout on at inference (as SpeechT5 was trained to expect): seed it
    # so the same model speaks a sentence the same way, without touching the training loop's RNG.
    with seeded(device):
        out = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            speaker_embeddings=batch["speaker_embeddings"],
            maxlenratio=MAX_FRAMES_PER_CHAR,
            return_output_lengths=True,
            output_cross_attentions=attentions,
        )
    mels = [out[0][i, : out[1][i]] for i in range(len(examples))]  # left on the model's device for the vocoder
    if not attentions:
        return mels, None
    return mels, out[2][0].flatten(0, 1).cpu() if out[2].dim() == 5 else out[2].flatten(0, 1).cpu()


def _text(example: dict) -> str:
    return str(example.get("raw_text") or example.get("text") or "")


def predict(model, processor, examples: list[dict]) -> list[dict]:
    """{"audio": waveform at the processor's rate, "transcript": the judge's hearing or None} per
    example. Rows with reference audio (evaluation) are transcribed by `model.judge_asr` when set."""
    mels, _ = generate(model, processor, examples)
    waves = []
    for e, mel in zip(examples, mels, strict=True):
        waves.append(tts_audio.vocode(mel, e.get("vocoder") or processor.vocoder, processor.feature_extractor))
    transcripts: list = [None] * len(examples)
    if processor.judge_asr and all("audio" in e for e in examples):
        transcripts = judge(processor.judge_asr, waves, processor.sampling_rate, mels[0].device if mels else None)
    return [{"audio": w, "transcript": t, "sampling_rate": processor.sampling_rate} for w, t in zip(waves, transcripts)]


_JUDGES: dict = {}


def judge(name: str, waves: list[np.ndarray], rate: int, device=None) -> list[str]:
    """Transcribe synthesised audio with an ASR model of this toolkit (or any CTC/Whisper dir), on `device`
    (the TTS model's: a GPU run's evaluation keeps its judge on the GPU)."""
    import torch

    from slp_toolkit.runtime.device import place
    from slp_toolkit.tasks import detect_task

    device = torch.device(device or "cpu")
    if (name, device) not in _JUDGES:
        task = detect_task(name)
        model, proc = task.load(name)
        _JUDGES[(name, device)] = (task, place(model, device), proc)
    task, model, proc = _JUDGES[(name, device)]
    target = int(getattr(proc, "sampling_rate", None) or proc.feature_extractor.sampling_rate)
    if target != rate:
        import torchaudio

        waves = [torchaudio.functional.resample(torch.as_tensor(w), rate, target).numpy() for w in waves]
    return task.predict(model, proc, [{"audio": w} for w in waves])


def metrics(predictions: list[dict], examples: list[dict]) -> dict:
    rate = predictions[0]["sampling_rate"] if predictions else 16000
    mcd = [mel_cepstral_distortion(np.asarray(e["audio"]), p["audio"], rate) for p, e in zip(predictions, examples)]
    ratio = [len(p["audio"]) / max(1, len(e["audio"])) for p, e in zip(predictions, examples, strict=True)]
    # DTW forgives any length, so a babbling model can score well: mcd_sl multiplies each utterance's MCD by
    # its length mismatch (longer/shorter), the "MCD-DTW-SL" variant.
    penalised = [m * max(r, 1 / r) if r > 0 else float("nan") for m, r in zip(mcd, ratio, strict=True)]
    out = {
        "mcd": float(np.mean(mcd)) if mcd else float("nan"),
        "mcd_sl": float(np.mean(penalised)) if penalised else float("nan"),
        "length_ratio": float(np.mean(ratio or [np.nan])),
    }
    if predictions and predictions[0]["transcript"] is not None:
        scores = asr_metrics([p["transcript"] for p in predictions], [_text(e) for e in examples])
        out.update({k: v for k, v in scores.items() if k != "n"})
    out["n"] = len(predictions)
    return out


def report(model, processor, predictions, examples, where: Path, writer=None, step: int | None = None) -> None:
    """Listenable samples of an evaluation: wav files, spectrograms (synthesised over recorded) and the
    attention alignment of the first sentence as PNGs in `where`, and the audio in TensorBoard."""
    import soundfile as sf
    import torch

    from slp_toolkit.plots import plot_alignment, plot_spectrograms

    where.mkdir(parents=True, exist_ok=True)
    rate = processor.sampling_rate
    for i, p in enumerate(predictions):
        sf.write(where / f"sample-{i}.wav", p["audio"], rate, subtype="PCM_16")
        if writer is not None:
            writer.add_audio(f"samples/{i}", torch.as_tensor(p["audio"])[None], step, sample_rate=rate)
    if not examples:
        return
    mels, attention = generate(model, processor, examples[:1], attentions=True)
    reference = target_mel(examples[0]["audio"], processor)
    plot_spectrograms(mels[0].float().cpu().numpy(), reference, where / "spectrogram.png", _text(examples[0]))
    plot_alignment(attention.mean(0).numpy(), where / "alignment.png")


def summarize(prediction: dict) -> dict:
    """What predictions.jsonl keeps of a synthesis: its length and the judge's transcript."""
    seconds = len(prediction["audio"]) / prediction["sampling_rate"]
    return {"seconds": round(seconds, 3), "transcript": prediction["transcript"]}


def validate(recipe: Recipe, fail) -> None:
    m = recipe.model
    check_preset(m, SPEECHT5_PRESETS, "SpeechT5", fail)
    if m.reduction_factor and m.init != "scratch":
        fail(
            "model.reduction_factor",
            "'model.reduction_factor' applies to scratch models only (a checkpoint has its own)",
        )


TASK = register(
    Task(
        name="tts",
        needs=("text",),
        build=build,
        load=load,
        preprocess=preprocess,
        collate=collate,
        predict=predict,
        metrics=metrics,
        main_metric="mcd",
        greater_is_better=False,
        model_config=TtsModelConfig,
        pipeline_tag="text-to-speech",
        caps=Capabilities(
            speakers=speakers,
            vocoders=VOCODERS,
            validate=validate,
            architectures=("ForTextToSpeech",),
            tab=Tab("tts", "Synthesize", "synthesize"),
            usage='pipe("Hello there.")',
            lora_targets=("q_proj", "v_proj"),
            # HF's SpeechT5 text-to-speech fine-tuning guide: 1e-5 (the pretrained model drifts at higher rates)
            learning_rates=LearningRates(scratch=3e-4, pretrained=1e-5, lora=1e-3),
            audio_is_input=False,
            lockstep_predict=False,  # SpeechT5 generate_speech: no synced_gpus; under FSDP each process stops alone
            keep=keep,
            keep_why="a speaker without a vector, or text it cannot speak",
            summarize=summarize,
            report=report,
        ),
    )
)
