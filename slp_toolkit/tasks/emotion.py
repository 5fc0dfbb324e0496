"""Task emotion: utterance classification (speech emotion) with any AutoModelForAudioClassification
(wav2vec2, HuBERT, WavLM) or WhisperForAudioClassification.

The model comes from a Hub name, a local dir (an ASR output of this toolkit included: its encoder is
reused under a fresh projector + classifier) or a scratch preset. The label set is the sorted unique
`label` values of the train split, or `model.labels` (which also fixes the order); it is saved as
`id2label`/`label2id` in config.json, so the output loads in `pipeline("audio-classification")`.

Training crops each clip longer than `data.crop_seconds` to a random window of that length (a fresh
window each epoch, so a short corpus is not memorised clip by clip); evaluation sees the full clip.
`data.max_seconds` is a different knob: the data layer drops longer clips for every task.
`model.class_weights: balanced` weights the cross-entropy by n / (classes * n_class) of the train
split; the weights are stored in config.json as `class_weights`, so a resumed run uses the same ones.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from slp_toolkit.config import ModelConfig, Recipe, UserError
from slp_toolkit.data.splits import change_speed, column
from slp_toolkit.metrics import classification_metrics
from slp_toolkit.runtime.loading import apply_settings, explicit_keys, scratch_values
from slp_toolkit.runtime.presets import CTC_PRESETS, WHISPER_PRESETS, check_preset
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
    register,
    window_seconds,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger("slp")

HEADS = ("classifier", "projector")  # new in every classifier; trained (and saved) next to LoRA adapters


class LabelError(UserError):
    """The recipe's label list and the data's labels disagree; the message names the split and labels."""


# ---------------------------------------------------------------- labels and class weights


@dataclass(frozen=True)
class EmotionModelConfig(ModelConfig):
    family: Literal["wav2vec2", "hubert", "wavlm", "whisper"] = "wav2vec2"
    # the convolutional front end stays as pretrained (the wav2vec 2.0 recipe); None: frozen for a pretrained
    # checkpoint, trained for a scratch model (a random front end must learn)
    freeze_feature_encoder: bool | None = None
    class_weights: Literal["none", "balanced"] = "balanced"
    labels: list[str] | None = None


def label_set(wanted: list[str] | None, seen: list[str], source: str) -> list[str]:
    """The classes to train: `wanted` (the recipe's model.labels) checked against the labels `seen` in
    the train split `source`, or the sorted unique labels seen."""
    found = sorted(set(seen))
    if wanted is None:
        if len(found) < 2:
            raise LabelError(f"{source}: a classifier needs at least two labels, the data has {found}")
        return found
    dupes = sorted(label for label, n in Counter(wanted).items() if n > 1)
    if dupes:
        raise LabelError(f"model.labels lists {dupes} more than once")
    extra = [label for label in found if label not in wanted]
    unseen = [label for label in wanted if label not in found]
    if extra or unseen:
        parts = [f"{extra} in the data but not in model.labels"] if extra else []
        parts += [f"{unseen} in model.labels but never in the data"] if unseen else []
        raise LabelError(
            f"{source}: label mismatch between recipe and data: {'; '.join(parts)} "
            f"(model.labels {list(wanted)}, data labels {found})"
        )
    return list(wanted)


def balanced_weights(seen: list[str], labels: list[str]) -> list[float]:
    """sklearn's 'balanced' class weights: n_samples / (n_classes * n_samples_of_class)."""
    counts = Counter(seen)
    return [len(seen) / (len(labels) * counts[label]) for label in labels]


# ---------------------------------------------------------------- building and loading
def _settings(cfg: EmotionModelConfig) -> dict:
    """The recipe's model settings by recipe key (None: a pretrained checkpoint's own)."""
    return {"dropout": cfg.dropout, "layerdrop": cfg.layerdrop}


# A scratch model gets no SpecAugment time masks: measured on the synthetic corpus, a small random-init wav2vec2
# learns to read the class through the learned mask embedding (train-mode accuracy rose while eval mode, which
# has no masks, predicted one class).
SCRATCH_SETTINGS = {"mask_time_prob": 0.0}


def build(recipe: Recipe, train_ds) -> tuple:
    from slp_toolkit.runtime import scratch

    cfg: EmotionModelConfig = recipe.model
    seen = [str(x) for x in column(train_ds, "label")]
    labels = label_set(cfg.labels, seen, recipe.data.train)
    if cfg.init == "scratch":
        try:
            model, extractor = scratch.build_audio_classifier(
                labels,
                cfg.family,
                cfg.preset,
                cfg.sampling_rate,
                settings=scratch_values(_settings(cfg)) | SCRATCH_SETTINGS,
            )
        except ValueError as err:  # unknown preset or family, Whisper at another rate
            raise ModelLoadError(f"model.preset/model.family: {err}") from None
        # Keep the absolute level: loudness is an arousal cue that per-utterance normalisation erases
        # (measured: unseen-voice UA 0.53 -> 0.66 on the synthetic corpus). A pretrained checkpoint keeps
        # its extractor's setting, which must match its pretraining.
        extractor.do_normalize = False
    else:
        model, extractor = _pretrained(cfg.name_or_path, labels, cfg)
    model.config.class_weights = balanced_weights(seen, labels) if cfg.class_weights == "balanced" else None
    _attach(extractor, model.config.label2id, recipe.data.crop_seconds, recipe.data.speed_perturb)
    freeze_front_end(model, cfg)
    return model, extractor


def _pretrained(name: str, labels: list[str], cfg: EmotionModelConfig) -> tuple:
    """A classifier of any family transformers maps to audio classification, from a Hub name or a local dir,
    with its own feature extractor; an ASR checkpoint (CTC or Whisper) gives its encoder, and the projector +
    classifier start fresh. The recipe's dropout and layerdrop go onto the family's config."""
    from transformers import AutoConfig, AutoFeatureExtractor
    from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES as HEADS_OF

    extractor = load_or_fail(AutoFeatureExtractor.from_pretrained, name, "feature extractor")
    config = load_or_fail(AutoConfig.from_pretrained, name, "model config")
    family = config.model_type
    if family not in HEADS_OF:
        raise ModelLoadError(
            f"{name}: a {family} checkpoint has no audio-classification head in transformers (families: "
            f"{', '.join(sorted(HEADS_OF))})"
        )
    apply_settings(config, _settings(cfg), explicit_keys(cfg), family)
    model, info = _classifier(name, labels, "audio classifier", config=config, output_loading_info=True)
    fresh = [k for k in info["missing_keys"] if not k.startswith(HEADS)]
    if fresh:
        log.warning("%s: %d weights outside the head are newly initialised (e.g. %s)", name, len(fresh), fresh[0])
    renewed = [str(k) for k in [*info["missing_keys"], *info["mismatched_keys"]]]
    head = "a new head" if any(h in k for k in renewed for h in HEADS) else "its own head"
    log.info("%s: encoder reused, %s; %d labels: %s", name, head, len(labels), ", ".join(labels))
    return model, extractor


def _classifier(name: str, labels: list[str], what: str, config=None, **kwargs):
    """AutoModelForAudioClassification with a head sized and named for `labels` (a new one if needed)."""
    from transformers import AutoConfig, AutoModelForAudioClassification

    config = config if config is not None else load_or_fail(AutoConfig.from_pretrained, name, "model config")
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    return load_or_fail(
        AutoModelForAudioClassification.from_pretrained,
        name,
        what,
        config=config,
        ignore_mismatched_sizes=True,
        **kwargs,
    )


def _attach(extractor, label2id: dict, crop_seconds: float | None, speed_perturb: float = 0.0) -> None:
    """What preprocessing needs beside the audio: label ids, the training crop length and speed range.
    Saved in preprocessor_config.json (harmless to other readers) and part of the preprocessing cache key."""
    extractor.label2id = {str(k): int(v) for k, v in label2id.items()}
    extractor.crop_seconds = crop_seconds
    extractor.speed_perturb = speed_perturb


def load(model_dir: str) -> tuple:
    """A trained classifier dir, a Hub name, or a LoRA adapter dir (its base found via adapter_config;
    the labels from the saved feature extractor, since the base may be an ASR model)."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from slp_toolkit.runtime import adapters

    extractor = load_or_fail(AutoFeatureExtractor.from_pretrained, model_dir, "feature extractor")
    base = adapters.adapter_base(model_dir)
    if base is None:
        model = load_or_fail(AutoModelForAudioClassification.from_pretrained, model_dir, "audio classifier")
    else:
        label2id = getattr(extractor, "label2id", None)
        if not label2id:
            raise ModelLoadError(f"{model_dir}: preprocessor_config.json has no label2id; cannot rebuild the head")
        labels = sorted(label2id, key=label2id.get)
        model = _classifier(base, labels, "audio classifier base")
        model = adapters.load_adapter(model, model_dir)
    _attach(extractor, _config(model).label2id, None)
    return model.eval(), extractor


# ---------------------------------------------------------------- features, loss, augmentation
def preprocess(example: dict, processor) -> dict:
    """The label id (-100, ignored by the loss, for a label the model lacks), crop length, speed range."""
    crop = getattr(processor, "crop_seconds", None)
    return {
        "labels": processor.label2id.get(str(example["label"]), -100),
        "crop_samples": int(round(crop * processor.sampling_rate)) if crop else 0,
        "speed_perturb": float(getattr(processor, "speed_perturb", 0.0) or 0.0),
    }


def keep(example: dict, processor) -> bool:
    """Rows whose label is one of the model's: no other label can be learnt or predicted."""
    return str(example["label"]) in processor.label2id


def augment(example: dict, rng) -> dict:
    """Speed perturbation (a random factor in 1 ± `speed_perturb`), then a random window of
    `crop_samples` from a longer clip."""
    audio, crop = example["audio"], int(example.get("crop_samples", 0) or 0)
    spread = float(example.get("speed_perturb", 0.0) or 0.0)
    if spread:
        audio = change_speed(audio, float(rng.uniform(1 - spread, 1 + spread)))
        example = {**example, "audio": audio}
    if not crop or len(audio) <= crop:
        return example
    start = int(rng.integers(0, len(audio) - crop + 1))
    return {**example, "audio": audio[start : start + crop]}


def collate(examples: list[dict], processor) -> dict:
    import torch

    batch = audio_batch([e["audio"] for e in examples], processor)
    if examples and "labels" in examples[0]:
        batch["labels"] = torch.tensor([int(e["labels"]) for e in examples], dtype=torch.long)
    return batch


def _config(model):
    return getattr(model, "module", model).config  # through a DDP wrapper; PEFT forwards .config


def compute_loss(model, batch: dict) -> torch.Tensor:
    """Cross-entropy, weighted by the class weights stored in the model config (None: unweighted)."""
    import torch
    import torch.nn.functional as F

    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    weights = getattr(_config(model), "class_weights", None)
    weight = torch.tensor(weights, dtype=torch.float32, device=logits.device) if weights else None
    return F.cross_entropy(logits, batch["labels"], weight=weight, ignore_index=-100)


# ---------------------------------------------------------------- prediction and metrics
@no_grad
def probabilities(model, processor, examples: list[dict]) -> torch.Tensor:
    import torch

    batch = collate([{"audio": e["audio"]} for e in examples], processor)
    if "attention_mask" not in batch and window_seconds(processor) is None and len(examples) > 1:
        if len({len(e["audio"]) for e in examples}) > 1:
            # no mask (e.g. wav2vec2-base's extractor): the model would mean-pool the padding too, and a clip's
            # label would depend on its batch-mates; clip by clip it is what the clip alone gives
            return torch.cat([probabilities(model, processor, [e]) for e in examples])
    device = next(model.parameters()).device
    return model(**{k: v.to(device) for k, v in batch.items()}).logits.float().softmax(-1).cpu()


class Scored(str):
    """A predicted label (a plain str everywhere) that keeps every class's log-probability, so that
    `metrics` can normalise per speaker. JSON writes it as the label."""

    log_probs: dict[str, float]


def predict(model, processor, examples: list[dict]) -> list[str]:
    id2label = _config(model).id2label
    out = []
    for row in probabilities(model, processor, examples).clamp_min(1e-12).log():
        label = Scored(id2label[int(row.argmax())])
        label.log_probs = {id2label[i]: float(v) for i, v in enumerate(row)}
        out.append(label)
    return out


MIN_CLIPS_PER_CLASS = 5  # per speaker, for speaker normalisation: fewer clips give a prior too noisy to use


def speaker_normalised(predictions: list[str], speakers: list[str]) -> list[str] | None:
    """Labels after per-speaker normalisation: each clip's class probabilities are divided by its
    speaker's mean probabilities (a per-speaker class prior) before the argmax. It removes a voice's
    pull towards one class (a high voice heard as happy). Transductive: only speakers with at least
    MIN_CLIPS_PER_CLASS clips per class are normalised (measured: with ~3 clips a speaker the prior
    swamps the evidence). Subtracting mean log-probabilities instead did worse (0.81 vs 0.87 plain vs
    0.90 this, test_unseen of the scratch recipe). None where predictions carry no scores."""
    if not predictions or not all(isinstance(p, Scored) for p in predictions):
        return None
    labels = list(predictions[0].log_probs)
    scores = np.array([[p.log_probs[k] for k in labels] for p in predictions])
    for speaker in set(speakers):
        idx = [i for i, s in enumerate(speakers) if s == speaker]
        if len(idx) >= MIN_CLIPS_PER_CLASS * len(labels):
            scores[idx] -= np.log(np.exp(scores[idx]).mean(axis=0))
    return [labels[i] for i in scores.argmax(axis=1)]


def top_k(model, processor, examples: list[dict], k: int = 3) -> list[list[tuple[str, float]]]:
    """The k most probable labels of each example, with their probabilities."""
    id2label = _config(model).id2label
    probs = probabilities(model, processor, examples)
    scores, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(id2label[int(i)], float(s)) for s, i in zip(row_s, row_i)] for row_s, row_i in zip(scores, ids)]


def metrics(predictions: list[str], examples: list[dict]) -> dict:
    """Classification scores (metrics.classification_metrics) and, with several speakers, accuracy per
    speaker (`wa/<speaker>`): where a speaker-independent model still fails. Where the data has a
    speaker column, `ua_speaker_norm`/`wa_speaker_norm` score the speaker-normalised labels."""
    refs = [str(e["label"]) for e in examples]
    out = classification_metrics(predictions, refs)
    speakers = [str(e.get("speaker", "")) for e in examples]
    normalised = speaker_normalised(predictions, speakers) if any(speakers) else None
    if normalised is not None:
        scores = classification_metrics(normalised, refs)
        out |= {"ua_speaker_norm": scores["ua"], "wa_speaker_norm": scores["wa"]}
    if len(set(speakers)) > 1:
        for speaker in sorted(set(speakers)):
            idx = [i for i, s in enumerate(speakers) if s == speaker]
            out[f"wa/{speaker}"] = sum(predictions[i] == refs[i] for i in idx) / len(idx)
    return out


def validate(recipe: Recipe, fail) -> None:
    m = recipe.model
    check_preset(m, WHISPER_PRESETS if m.family == "whisper" else CTC_PRESETS, f"{m.family} classifier", fail)


TASK = register(
    Task(
        name="emotion",
        needs=("label",),
        build=build,
        load=load,
        preprocess=preprocess,
        collate=collate,
        predict=predict,
        metrics=metrics,
        main_metric="ua",
        greater_is_better=True,
        model_config=EmotionModelConfig,
        pipeline_tag="audio-classification",
        caps=Capabilities(
            preprocess_reads=("label",),
            ranked=top_k,
            validate=validate,
            architectures=("ForAudioClassification", "ForSequenceClassification"),
            tab=Tab("emotion", "Emotion", "classify"),
            space=True,
            lora_targets=("q_proj", "k_proj", "v_proj", "out_proj"),
            lora_heads=HEADS,
            # HF's audio-classification guide: 3e-5 for a pretrained encoder and a new head
            learning_rates=LearningRates(scratch=3e-4, pretrained=3e-5, lora=1e-3),
            compute_loss=compute_loss,
            augment=augment,
            augment_changes_label=("speed",),
            keep=keep,
            keep_why="a label not among the model's labels",
        ),
    )
)
