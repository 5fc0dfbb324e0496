"""Task asr_ctc: character CTC speech recognition (wav2vec2, HuBERT, WavLM... any AutoModelForCTC)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from slp_toolkit.config import ModelConfig, Recipe, rule
from slp_toolkit.data.splits import column
from slp_toolkit.data.text import ctc_vocab, decodes_ctc, fit_case, report_unknown_chars
from slp_toolkit.metrics import asr_metrics
from slp_toolkit.runtime.loading import apply_settings, config_parts, explicit_keys, scratch_values
from slp_toolkit.runtime.presets import CTC_PRESETS, check_preset
from slp_toolkit.tasks import (
    Capabilities,
    LearningRates,
    ModelLoadError,
    Tab,
    Task,
    audio_batch,
    freeze_front_end,
    load_or_fail,
    no_grad,
    padded_labels,
    register,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger("slp")


@dataclass(frozen=True)
class CtcModelConfig(ModelConfig):
    # the convolutional front end stays as pretrained (the wav2vec 2.0 recipe); None: frozen for a pretrained
    # checkpoint, trained for a scratch model (a random front end must learn)
    freeze_feature_encoder: bool | None = None
    ctc_zero_infinity: bool = True
    # SpecAugment, applied by the model itself in train mode (families without it: Parakeet, LASR... skip it)
    # None (each): a pretrained checkpoint's own (wav2vec2-base: 0.05 x 10 frames), a scratch model's SCRATCH_MASKS
    mask_time_prob: float | None = field(default=None, metadata=rule(min=0.0, max=1.0))
    mask_time_length: int | None = field(default=None, metadata=rule(min=1))
    mask_feature_prob: float | None = field(default=None, metadata=rule(min=0.0, max=1.0))
    mask_feature_length: int | None = field(default=None, metadata=rule(min=1))
    # A checkpoint's own CTC tokenizer and head are kept; true builds a character vocabulary from the training
    # text and a fresh output layer for it (a head in another alphabet or language would emit [UNK]s)
    new_vocab: bool = False


# the wav2vec 2.0 fine-tuning recipe's masks, and no dropout: what a scratch model gets for the keys left unset
SCRATCH_MASKS = {"mask_time_prob": 0.05, "mask_time_length": 10, "mask_feature_prob": 0.0, "mask_feature_length": 10}


def _settings(cfg: CtcModelConfig) -> dict:
    """The recipe's model settings by our names (None: the checkpoint's own); loading.apply_settings maps them
    onto the family's config."""
    return {
        "ctc_zero_infinity": cfg.ctc_zero_infinity,
        "ctc_loss_reduction": "mean",
        "mask_time_prob": cfg.mask_time_prob,
        "mask_time_length": cfg.mask_time_length,
        "mask_feature_prob": cfg.mask_feature_prob,
        "mask_feature_length": cfg.mask_feature_length,
        "dropout": cfg.dropout,
        "layerdrop": cfg.layerdrop,
    }


def build(recipe: Recipe, train_ds) -> tuple:
    from slp_toolkit.runtime import scratch

    cfg: CtcModelConfig = recipe.model
    texts = column(train_ds, "text")
    if cfg.init == "scratch":
        vocab, _ = ctc_vocab(texts)
        settings = scratch_values(_settings(cfg), SCRATCH_MASKS)
        model, processor = scratch.build_ctc(vocab, cfg.preset, cfg.sampling_rate, settings=settings)
    else:
        model, processor = _pretrained(cfg, texts)
    check_head(model, processor, cfg.name_or_path or "scratch")
    freeze_front_end(model, cfg)
    return model, processor


def _pretrained(cfg: CtcModelConfig, texts: list[str]) -> tuple:
    """Any checkpoint of a family transformers maps to CTC, with its own feature extractor; the recipe's settings
    go onto the family's config (names differ: Parakeet's dropout sits in its encoder_config)."""
    from transformers import AutoConfig, AutoModelForCTC
    from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES as CTC

    name = cfg.name_or_path
    config = load_or_fail(AutoConfig.from_pretrained, name, "model config")
    if config.model_type not in CTC:
        raise ModelLoadError(
            f"{name}: a {config.model_type} checkpoint has no CTC head in transformers (CTC families: "
            f"{', '.join(sorted(CTC))}); for Whisper use task asr_seq2seq"
        )
    processor = _pretrained_processor(name, texts, cfg.new_vocab)
    tok = processor.tokenizer
    settings = {**_settings(cfg), "pad_token_id": tok.pad_token_id, "vocab_size": len(tok)}
    apply_settings(config, settings, explicit_keys(cfg), config.model_type)
    if (cfg.mask_feature_prob or 0) > 0 and not hasattr(config, "mask_feature_min_masks"):
        config.mask_feature_min_masks = 0  # WavLM's model reads it but its config lacks it (transformers 5.24)
    model = load_or_fail(
        AutoModelForCTC.from_pretrained, name, "CTC model", config=config, ignore_mismatched_sizes=True
    )
    if cfg.new_vocab:  # a head of the new vocabulary's size loads without a mismatch, mapping old symbols
        fresh_head(model)
    return model, processor


def fresh_head(model) -> None:
    """Re-initialise the CTC output layer (`lm_head`), as transformers initialises a missing one."""
    import torch

    head = getattr(model, "lm_head", None) or getattr(model, "ctc_head", None)
    if not isinstance(head, torch.nn.Linear):
        return
    with torch.no_grad():
        head.weight.normal_(0.0, getattr(model.config, "initializer_range", 0.02))
        if head.bias is not None:
            head.bias.zero_()


def _pretrained_processor(name: str, texts: list[str], new_vocab: bool = False):
    """The checkpoint's own feature extractor (its normalisation and masks are part of what it learnt) with its
    CTC tokenizer, reporting characters it lacks; or, where it has none (self-supervised bases) or
    `new_vocab`, a character tokenizer built from the training text."""
    from transformers import AutoFeatureExtractor, AutoTokenizer, Wav2Vec2Processor

    from slp_toolkit.runtime import scratch

    extractor = load_or_fail(AutoFeatureExtractor.from_pretrained, name, "feature extractor")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError, TypeError):
        tokenizer = None
    if new_vocab or not decodes_ctc(tokenizer):
        vocab, _ = ctc_vocab(texts)
        why = "model.new_vocab" if new_vocab and tokenizer is not None else "it has no CTC tokenizer"
        log.info(
            "%s: %s, so a character vocabulary from the training text (%d symbols) and a new output layer",
            name,
            why,
            len(vocab),
        )
        tokenizer = scratch.ctc_processor(vocab, int(extractor.sampling_rate)).tokenizer
    elif hasattr(tokenizer, "word_delimiter_token"):
        report_unknown_chars(tokenizer, texts, name)
    return Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)


def check_head(model, processor, name: str) -> None:
    """Fail early, with a fix, when the output layer cannot emit the tokenizer's ids."""
    head = model.config.vocab_size
    tok = len(processor.tokenizer)
    if head < tok:
        raise ModelLoadError(
            f"{name}: the CTC head has {head} outputs but the tokenizer has {tok} tokens; "
            "use a tokenizer that matches the checkpoint or start from a model without a CTC head"
        )


def load(model_dir: str) -> tuple:
    """A trained CTC dir, a Hub name, or a LoRA adapter dir (its base found via adapter_config)."""
    from transformers import AutoModelForCTC, AutoProcessor

    from slp_toolkit.runtime import adapters

    base = adapters.adapter_base(model_dir)
    processor = load_or_fail(AutoProcessor.from_pretrained, model_dir, "processor")
    model = load_or_fail(AutoModelForCTC.from_pretrained, base or model_dir, "CTC model")
    check_head(model, processor, model_dir)
    if base is not None:
        model = adapters.load_adapter(model, model_dir)
    return model.eval(), processor


def preprocess(example: dict, processor) -> dict:
    text = fit_case(example["text"], processor.tokenizer)
    return {"labels": processor.tokenizer(text, add_special_tokens=False).input_ids}


def collate(examples: list[dict], processor) -> dict:
    batch = audio_batch([e["audio"] for e in examples], processor.feature_extractor)
    if examples and "labels" in examples[0]:
        batch["labels"] = padded_labels(examples)
    return batch


# Long-form input (any clip over LONG_SECONDS) is cut at its pauses (slp_toolkit.data.segment) and each piece of
# speech decoded alone, the way the model heard speech in training; a piece with no pause for over
# LONG_SECONDS goes through windows of CHUNK_SECONDS that overlap by CONTEXT_SECONDS on each side, each
# window's logits counting only for its middle (the pipeline's chunk_length_s / stride_length_s).
LONG_SECONDS, CHUNK_SECONDS, CONTEXT_SECONDS = 30.0, 20.0, 2.0
CHUNKS_PER_BATCH = 4
SILENCE_LOGIT = -30.0  # the other tokens' logit on a pause's frames: the blank's probability rounds to 1


@no_grad
def predict(model, processor, examples: list[dict]) -> list[str]:
    """Greedy CTC: the best token of every frame, repeats and blanks removed."""
    return processor.batch_decode([e.argmax(-1) for e in emissions(model, processor, examples)])


def timed(model, processor, examples: list[dict]) -> list[dict]:
    """Greedy transcripts with word timestamps: {"text", "words": [{"word", "start", "end"}]} in seconds, from
    the frames each word's characters were emitted on (long clips too: their frames tile the clip)."""
    frame = samples_per_frame(model, processor) / processor.feature_extractor.sampling_rate
    out = []
    for logits in emissions(model, processor, examples):
        ids = logits.argmax(-1)
        out.append({"text": processor.decode(ids), "words": ctc_words(ids, processor.tokenizer, frame)})
    return out


def ctc_words(ids, tokenizer, frame_seconds: float) -> list[dict]:
    """Words of a greedy CTC path: repeats merged, blanks dropped, split at the word delimiter; each word
    spans its first character's first frame to its last character's last frame."""
    blank, delimiter = tokenizer.pad_token_id, getattr(tokenizer, "word_delimiter_token_id", None)
    words, chars, start, end, previous = [], [], 0, 0, None
    for i, token in enumerate(int(t) for t in ids):
        if token == previous:
            end = i + 1 if token not in (blank, delimiter) else end
            continue
        previous = token
        if token == blank:
            continue
        if token == delimiter:
            if chars:
                words.append((chars, start, end))
            chars = []
            continue
        if not chars:
            start = i
        chars.append(token)
        end = i + 1
    if chars:
        words.append((chars, start, end))
    # group_tokens=False: the repeats left here were separated by a blank ("l", "l" of "hello")
    return [
        {
            "word": tokenizer.decode(c, group_tokens=False).strip(),
            "start": round(a * frame_seconds, 3),
            "end": round(b * frame_seconds, 3),
        }
        for c, a, b in words
    ]


@no_grad
def emissions(model, processor, examples: list[dict]) -> list[np.ndarray]:
    """Each example's (frames x vocab) logits, without the frames of its batch padding."""
    rate = processor.feature_extractor.sampling_rate
    out: list = [None] * len(examples)
    short = [i for i, e in enumerate(examples) if len(e["audio"]) <= LONG_SECONDS * rate]
    if short:
        logits, lengths = _logits(model, processor, [examples[i]["audio"] for i in short])
        for i, row, n in zip(short, logits, lengths):
            out[i] = row[:n].float().cpu().numpy()
    for i in sorted(set(range(len(examples))) - set(short)):
        out[i] = long_form_logits(model, processor, examples[i]["audio"])
    return out


def _logits(model, processor, waves: list) -> tuple[torch.Tensor, list[int]]:
    """The logits of a padded batch and each clip's number of output frames (the rest is its padding)."""
    import math

    import torch

    batch = collate([{"audio": w} for w in waves], processor)
    device = next(model.parameters()).device
    logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
    padded, lengths = logits.shape[1], getattr(model, "_get_feat_extract_output_lengths", None)
    if lengths is not None and model.main_input_name == "input_values":  # the conv front end's own arithmetic
        return logits, [min(padded, int(n)) for n in lengths(torch.tensor([len(w) for w in waves]))]
    mask = batch.get("attention_mask", batch.get("padding_mask"))  # OmniASR names its mask padding_mask
    if mask is None:
        return logits, [padded] * len(waves)
    # mel-frame families (w2v-BERT, Parakeet...): the output keeps the input's share of real frames
    return logits, [min(padded, math.ceil(int(real) * padded / mask.shape[-1])) for real in mask.sum(-1)]


def samples_per_frame(model, processor) -> int:
    """Input samples per output frame: the conv strides' product for the wav2vec2 family (320), else measured
    once on 8 s of silence (Parakeet: 10 ms mel hops x 8 = 1,280)."""
    import math

    import torch

    if getattr(model, "_slp_samples_per_frame", None):
        return model._slp_samples_per_frame
    strides = [getattr(part, "conv_stride", None) for part in config_parts(model.config)]
    found = next((math.prod(s) for s in strides if s), None)
    if found is None:
        n = 8 * processor.feature_extractor.sampling_rate
        with torch.no_grad():
            logits, _ = _logits(model, processor, [np.zeros(n, dtype=np.float32)])
        found = max(1, round(n / logits.shape[1]))
    model._slp_samples_per_frame = found
    return found


def windows(n: int, chunk: int, context: int, align: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, keep_from, keep_to) in samples, all multiples of `align`: the input windows and the
    part of each whose output counts; the kept parts tile [0, n) exactly once."""
    step = max(align, (chunk - 2 * context) // align * align)
    context = context // align * align
    spans = []
    for keep_from in range(0, n, step):
        keep_to = min(keep_from + step, n)
        spans.append((max(0, keep_from - context), min(n, keep_to + context), keep_from, keep_to))
    return spans


@no_grad
def long_form_logits(model, processor, wave: np.ndarray) -> np.ndarray:
    """(frames x vocab) logits of a clip of any length, as many frames as one pass would give: each piece of
    speech between pauses decoded alone (in windows when longer than LONG_SECONDS), a pause's frames blank
    and a word delimiter after each piece, so greedy and beam decoding and word times read it unchanged."""
    from slp_toolkit.data.segment import segments

    rate, tokenizer = processor.feature_extractor.sampling_rate, processor.tokenizer
    align = samples_per_frame(model, processor)
    total = _frames_of(model, len(wave), align)
    out = np.full((total, model.config.vocab_size), SILENCE_LOGIT, dtype=np.float32)
    out[:, tokenizer.pad_token_id] = 0.0
    delimiter = getattr(tokenizer, "word_delimiter_token_id", None)
    pieces = segments(wave, rate)
    longest = int(LONG_SECONDS * rate)
    for a, b in (p for p in pieces if p[1] - p[0] > longest):
        frames = _frames_of(model, b - a, align)  # windows can give a frame more than one pass
        _place(out, windowed_logits(model, processor, wave[a:b])[:frames], a // align, delimiter)
    short = sorted((p for p in pieces if p[1] - p[0] <= longest), key=lambda p: p[1] - p[0])
    budget, group = CHUNKS_PER_BATCH * CHUNK_SECONDS * rate, []
    for i, piece in enumerate(short):  # length-sorted batches of at most `budget` padded samples
        group.append(piece)
        following = short[i + 1][1] - short[i + 1][0] if i + 1 < len(short) else None
        if following is None or following * (len(group) + 1) > budget:
            logits, lengths = _logits(model, processor, [wave[a:b] for a, b in group])
            for (a, _), row, n in zip(group, logits, lengths):
                _place(out, row[:n].float().cpu().numpy(), a // align, delimiter)
            group = []
    return out


def _frames_of(model, samples: int, align: int) -> int:
    """Output frames of one pass over `samples` samples."""
    import torch

    lengths = getattr(model, "_get_feat_extract_output_lengths", None)
    if lengths is not None and model.main_input_name == "input_values":
        return int(lengths(torch.tensor([samples]))[0])
    return samples // align


def _place(out: np.ndarray, rows: np.ndarray, first: int, delimiter: int | None) -> None:
    n = max(0, min(len(rows), len(out) - first))
    out[first : first + n] = rows[:n]
    if delimiter is not None and first + n < len(out):
        out[first + n] = SILENCE_LOGIT
        out[first + n, delimiter] = 0.0


@no_grad
def windowed_logits(model, processor, wave: np.ndarray) -> np.ndarray:
    """(frames x vocab) logits of speech of any length, window by window (see `windows`)."""
    rate = processor.feature_extractor.sampling_rate
    align = samples_per_frame(model, processor)
    spans = windows(len(wave), int(CHUNK_SECONDS * rate), int(CONTEXT_SECONDS * rate), align)
    kept = []
    for first in range(0, len(spans), CHUNKS_PER_BATCH):
        group = spans[first : first + CHUNKS_PER_BATCH]
        logits, _ = _logits(model, processor, [wave[a:b] for a, b, _, _ in group])
        for row, (a, b, keep_from, keep_to) in zip(logits, group):
            frames = row[: (b - a) // align]  # the rest is padding
            kept.append(frames[(keep_from - a) // align : (keep_to - a) // align].float().cpu().numpy())
    return np.concatenate(kept)


def beam_predictor(processor, settings) -> Callable:
    """A predict that beam-searches the emissions (with settings.lm, a character n-gram, when given)."""
    from slp_toolkit.lm import beam_decoder, beam_texts

    decoder = beam_decoder(processor, settings)

    def predict_beam(model, processor, examples: list[dict]) -> list[str]:
        return beam_texts(decoder, processor, emissions(model, processor, examples))

    return predict_beam


def metrics(predictions: list[str], examples: list[dict]) -> dict:
    refs = [e.get("raw_text", e.get("text", "")) for e in examples]
    groups = [e.get("speaker", "") for e in examples]
    return asr_metrics(predictions, refs, groups)


def validate(recipe: Recipe, fail) -> None:
    check_preset(recipe.model, CTC_PRESETS, "wav2vec2 CTC", fail)


TASK = register(
    Task(
        name="asr_ctc",
        needs=("text",),
        build=build,
        load=load,
        preprocess=preprocess,
        collate=collate,
        predict=predict,
        metrics=metrics,
        main_metric="cer",
        greater_is_better=False,
        model_config=CtcModelConfig,
        pipeline_tag="automatic-speech-recognition",
        caps=Capabilities(
            preprocess_reads=("text",),
            validate=validate,
            architectures=("ForCTC",),
            tab=Tab("asr", "Transcribe", "transcribe"),
            usage='pipe("clip.wav")["text"]',
            space=True,
            lora_targets=("q_proj", "k_proj", "v_proj", "out_proj"),
            lora_heads=("lm_head",),
            # HF's wav2vec2 fine-tuning guide: 1e-4 for a pretrained base
            learning_rates=LearningRates(scratch=3e-4, pretrained=1e-4, lora=1e-3),
            beam=beam_predictor,
            timed=timed,
        ),
    )
)
