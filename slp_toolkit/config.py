"""Recipes: plain YAML mapped onto frozen, typed dataclasses and validated once.

Every default lives in a dataclass below. `load_recipe` is the only way in; any problem becomes a
`ConfigError` whose message is one line naming the source (file or `<command line>`) and the dotted
key. This module imports no torch so that `slp validate` stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

CMDLINE = "<command line>"


class UserError(ValueError):
    """Something the user can fix; the message is the whole story (one line). The CLI prints it and
    exits 2. Every module's own error class derives from this one."""


class ConfigError(UserError):
    """A recipe problem: the message names the source (file or `<command line>`) and the key."""


def _check(**rules: Any) -> dict:
    """Field metadata for value checks: min/max (inclusive), gt (exclusive), path (must exist)."""
    return rules


# ---------------------------------------------------------------- model sections (one per task family)
@dataclass(frozen=True)
class ModelConfig:
    """How the model is obtained. `name_or_path` is a Hub name or a local dir; `init: scratch` builds a
    randomly initialised model from `preset` instead (processors are still real ones)."""

    name_or_path: str | None = None
    init: Literal["pretrained", "scratch"] = "pretrained"
    preset: str = "small"
    sampling_rate: int = field(default=16000, metadata=_check(min=1000))
    gradient_checkpointing: bool = False
    dropout: float = field(default=0.0, metadata=_check(min=0.0, max=0.9))
    layerdrop: float = field(default=0.0, metadata=_check(min=0.0, max=0.9))


@dataclass(frozen=True)
class CtcModelConfig(ModelConfig):
    freeze_feature_encoder: bool = False
    ctc_zero_infinity: bool = True
    # SpecAugment, applied by the model itself in train mode.
    mask_time_prob: float = field(default=0.05, metadata=_check(min=0.0, max=1.0))
    mask_time_length: int = field(default=10, metadata=_check(min=1))
    mask_feature_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))
    mask_feature_length: int = field(default=10, metadata=_check(min=1))


@dataclass(frozen=True)
class Seq2SeqModelConfig(ModelConfig):
    language: str | None = "english"
    task: Literal["transcribe", "translate"] = "transcribe"
    freeze_encoder: bool = False
    num_beams: int = field(default=1, metadata=_check(min=1))
    max_new_tokens: int = field(default=128, metadata=_check(min=1))
    mask_time_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))
    mask_feature_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))


@dataclass(frozen=True)
class EmotionModelConfig(ModelConfig):
    family: Literal["wav2vec2", "hubert", "wavlm", "whisper"] = "wav2vec2"
    freeze_feature_encoder: bool = True
    class_weights: Literal["none", "balanced"] = "balanced"
    labels: list[str] | None = None


@dataclass(frozen=True)
class TtsModelConfig(ModelConfig):
    # table: a learned vector per speaker; file: <speaker>.npy in speaker_embedding_dir; xvector: SpeechBrain
    speaker_embedding: Literal["table", "file", "xvector"] = "table"
    speaker_embedding_dir: str | None = None
    min_clips_per_speaker: int = field(default=1, metadata=_check(min=1))
    vocoder: str = "griffin-lim"  # or a SpeechT5HifiGan dir / Hub name (microsoft/speecht5_hifigan)
    guided_attention_weight: float = field(default=10.0, metadata=_check(min=0.0))  # SpeechT5's lambda; 0: off
    judge_asr: str | None = None  # an ASR model dir: evaluation transcribes the synthesised speech with it
    # Mel frames per decoder step, scratch models only (None: the preset's 2). Higher: fewer autoregressive
    # steps, faster training and alignment, coarser frames.
    reduction_factor: int | None = field(default=None, metadata=_check(min=1, max=8))


MODEL_CONFIGS: dict[str, type[ModelConfig]] = {
    "asr_ctc": CtcModelConfig,
    "asr_seq2seq": Seq2SeqModelConfig,
    "emotion": EmotionModelConfig,
    "tts": TtsModelConfig,
}


# ---------------------------------------------------------------- the shared sections
@dataclass(frozen=True)
class DataConfig:
    """Where the audio is. Each of train/eval is an audiofolder dir, a .csv/.jsonl manifest, a folder in
    LibriSpeech's layout, or `hf:NAME[:CONFIG]@SPLIT` for a Hub dataset."""

    train: str | None = None
    eval: str | None = None
    # auto: a folder with metadata.csv/jsonl is an audiofolder, one with SPEAKER/CHAPTER/*.trans.txt LibriSpeech
    format: Literal["auto", "librispeech"] = "auto"
    # Processes that decode and preprocess (None: all cores but one, at least one).
    num_workers: int | None = field(default=None, metadata=_check(min=1))
    # Decode training rows on the fly instead of into the on-disk cache (Hub datasets too large to
    # download, manifests too large to cache). Needs train.max_steps or train.max_minutes.
    streaming: bool = False
    # Streaming: clips read ahead and sorted by length together (memory: this many decoded clips).
    stream_window: int = field(default=500, metadata=_check(min=1))
    audio_column: str | None = None  # None: the first of file_name/audio/path/... that exists
    text_column: str | None = None  # None: the first of transcription/text/sentence/... that exists
    label_column: str = "label"
    speaker_column: str = "speaker"
    min_seconds: float = field(default=0.2, metadata=_check(min=0.0))
    max_seconds: float = field(default=20.0, metadata=_check(gt=0.0))  # longer clips are dropped
    # Training-time random crop (classification tasks); evaluation always sees whole clips. None: no crop.
    crop_seconds: float | None = field(default=None, metadata=_check(gt=0.0))
    # Training-time speed perturbation (classification tasks): each clip is resampled by a random factor
    # in [1 - x, 1 + x], moving pitch and formants together like another speaker's voice. 0: off.
    speed_perturb: float = field(default=0.0, metadata=_check(min=0.0, max=0.5))
    normalize_text: bool = True
    max_train_samples: int | None = field(default=None, metadata=_check(min=1))
    max_eval_samples: int | None = field(default=None, metadata=_check(min=1))


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    learning_rate: float = field(default=3e-4, metadata=_check(gt=0.0))
    weight_decay: float = field(default=0.0, metadata=_check(min=0.0))
    warmup: float = field(default=0.1, metadata=_check(min=0.0, max=1.0))  # fraction of the run
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_steps: int | None = field(default=None, metadata=_check(min=1))
    epochs: float | None = field(default=None, metadata=_check(gt=0.0))
    max_minutes: float | None = field(default=None, metadata=_check(gt=0.0))
    batch_seconds: float = field(default=120.0, metadata=_check(gt=0.0))  # audio per batch, summed
    max_batch_size: int = field(default=64, metadata=_check(min=1))
    grad_accum: int = field(default=1, metadata=_check(min=1))
    max_grad_norm: float = field(default=1.0, metadata=_check(gt=0.0))
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # bf16 on CPU: 1.3x per step where avx512_bf16/AMX
    # torch.compile the wav2vec2-family conv front end (slp_toolkit/speed.py): 1.26x per step on CPU, after a
    # one-time ~20 s compile; pays off in runs of a few minutes and more. Whisper/SpeechT5: no effect.
    compile: bool = False
    eval_every: int = field(default=200, metadata=_check(min=1))  # steps
    eval_every_minutes: float | None = field(default=None, metadata=_check(gt=0.0))
    metric_for_best: str | None = None  # None: the task's main metric
    early_stopping_patience: int | None = field(default=None, metadata=_check(min=1))
    log_every: int = field(default=10, metadata=_check(min=1))
    # two: should the newest be torn (a copy cut short, a disk that lost it), `--resume` takes the one before
    keep_checkpoints: int = field(default=2, metadata=_check(min=1))
    num_threads: int | None = field(default=None, metadata=_check(min=1))
    # A step whose loss (or gradient norm) is NaN/inf is skipped and counted; this many in a row stop the run.
    max_nonfinite_steps: int = field(default=20, metadata=_check(min=1))
    # Augment and collate the next batch in a worker thread while the current one trains (numpy and
    # torch release the GIL); false does it in the loop, one after the other.
    prefetch: bool = True
    # Return freed heap to the OS whenever resident memory grew this much (glibc fragments under batches of
    # changing shapes: the quickstart grew ~1.5 GB/min without). Costs throughput (~15 % measured on
    # the quickstart); null turns it off. See slp_toolkit/memory.py.
    trim_memory_mb: int | None = field(default=512, metadata=_check(min=16))
    shuffle: bool = True


@dataclass(frozen=True)
class LoraConfig:
    r: int = field(default=8, metadata=_check(min=1))
    alpha: float = field(default=16.0, metadata=_check(gt=0.0))
    dropout: float = field(default=0.05, metadata=_check(min=0.0, max=0.9))
    target_modules: list[str] | None = None  # None: the family's attention projections
    modules_to_save: list[str] | None = None  # None: the task's new head


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly waveform augmentation of training clips, for tasks that take audio in (TTS targets stay
    clean). Each transform fires with its own probability; every draw is a function of (train.seed, rank,
    batch position), so a resumed run repeats it exactly. See slp_toolkit/augment.py."""

    speed_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.1])  # one picked at random (transcript kept)
    reverb_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))
    rir_dir: str | None = None  # a folder of impulse responses; None: generated rooms
    noise_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))
    # white, pink, brown (generated), babble (other clips of the batch), dir (a file from noise_dir)
    noise_types: list[str] = field(default_factory=lambda: ["white", "pink", "brown", "babble"])
    noise_dir: str | None = None  # a folder of noise recordings, e.g. MUSAN noise/
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])  # [low, high], uniform
    telephone_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))  # 300-3,400 Hz, 8 kHz
    gain_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))
    gain_db: list[float] = field(default_factory=lambda: [-6.0, 6.0])
    clip_prob: float = field(default=0.0, metadata=_check(min=0.0, max=1.0))  # hard clipping at 30-80 % of peak


@dataclass(frozen=True)
class Recipe:
    task: str
    model: ModelConfig
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    lora: LoraConfig | None = None
    augment: AugmentConfig | None = None
    output_dir: str = "outputs/run"


TASK_NAMES = tuple(MODEL_CONFIGS)


# ---------------------------------------------------------------- loading and validation
class _DuplicateKey(Exception):
    pass


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last one, silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                continue  # an unhashable key is SafeLoader's error to report
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _DuplicateKey(f"duplicate key {key!r} (line {line}; first on line {seen[key]}): keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: str | Path, overrides: list[str] | None = None, check_paths: bool = True) -> Recipe:
    """Read a recipe file, apply `key.sub=value` overrides, and validate everything once.

    With `check_paths=False` paths that do not exist yet (data a later step writes) are not errors;
    `missing_paths` lists them."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ConfigError(f"{src}: recipe file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader)
    except _DuplicateKey as err:
        raise ConfigError(f"{src}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{src}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    sources: dict[str, str] = {}
    for item in overrides or []:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
        sources[key] = CMDLINE
    recipe = recipe_from_dict(raw, src, sources)
    if check_paths:
        for problem in missing_paths(recipe, src, sources):
            raise ConfigError(problem)
    return recipe


def missing_paths(recipe: Recipe, src: str = "<recipe>", sources: dict[str, str] | None = None) -> list[str]:
    """One message per local path in the recipe that does not exist."""
    sources = sources or {}
    found = []
    m, d = recipe.model, recipe.data
    if m.init == "pretrained" and _looks_local(m.name_or_path) and not Path(m.name_or_path).exists():
        found.append(
            f"{_src_for('model.name_or_path', src, sources)}: 'model.name_or_path' path does not exist: {m.name_or_path}"
        )
    for key in ("judge_asr", "speaker_embedding_dir"):
        value = getattr(m, key, None)
        if _looks_local(value) and not Path(value).exists():
            found.append(f"{_src_for('model.' + key, src, sources)}: 'model.{key}' path does not exist: {value}")
    if getattr(m, "speaker_embedding", None) == "file" and not m.speaker_embedding_dir:
        found.append(f"{_src_for('model.speaker_embedding_dir', src, sources)}: 'model.speaker_embedding: file' "
                     "needs 'model.speaker_embedding_dir' (a folder of <speaker>.npy)")  # fmt: skip
    for key in ("rir_dir", "noise_dir"):
        value = getattr(recipe.augment, key, None) if recipe.augment else None
        if value is not None and not Path(value).is_dir():
            found.append(f"{_src_for('augment.' + key, src, sources)}: 'augment.{key}' is not a folder: {value}")
    for key in ("train", "eval"):
        spec = getattr(d, key)
        if spec and not spec.startswith("hf:") and not Path(spec).exists():
            found.append(f"{_src_for('data.' + key, src, sources)}: 'data.{key}' path does not exist: {spec}")
    return found


_YAML_BOOLS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}


def recipe_from_dict(raw: dict, src: str = "<recipe>", sources: dict[str, str] | None = None) -> Recipe:
    """Validate a plain dict (as read from YAML) into a Recipe."""
    sources = sources or {}
    task = raw.get("task")
    if task is None:
        raise ConfigError(f"{src}: missing required key 'task' (one of {_fmt_choices(TASK_NAMES)})")
    if not isinstance(task, str) or task not in MODEL_CONFIGS:
        raise ConfigError(
            f"{sources.get('task', src)}: 'task' must be one of {_fmt_choices(TASK_NAMES)}, "
            f"got {task!r}{_suggest(str(task), TASK_NAMES)}"
        )
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    hints = {"model": MODEL_CONFIGS[task]}
    values: dict[str, Any] = {"task": task}
    for key, value in raw.items():
        if key == "task":
            continue
        if key not in fields:
            raise ConfigError(f"{_src_for(key, src, sources)}: unknown key {key!r}{_suggest(key, fields)}")
        hint = hints.get(key, _hints(Recipe)[key])
        values[key] = _convert(value, hint, key, src, sources)
    if "model" not in values:
        values["model"] = MODEL_CONFIGS[task]()
    recipe = Recipe(**values)
    _validate_semantics(recipe, src, sources)
    _check_ignored(recipe, raw.get("model") or {}, src, sources)
    return recipe


def _check_ignored(recipe: Recipe, given: dict, src: str, sources: dict[str, str]) -> None:
    """A key the current mode would silently ignore is an error: the user meant something by it."""
    m = recipe.model
    if m.init == "scratch" and m.name_or_path:
        raise ConfigError(
            f"{_src_for('model.name_or_path', src, sources)}: 'model.name_or_path' is not used with "
            "model.init: scratch (a random model is built from model.preset); to fine-tune it, add "
            "model.init=pretrained, else drop model.name_or_path"
        )
    # a saved run's recipe.yaml spells out the default preset: only another value was meant to matter
    if m.init == "pretrained" and "preset" in given and m.preset != type(m)().preset:
        raise ConfigError(
            f"{_src_for('model.preset', src, sources)}: 'model.preset' applies to model.init: scratch only "
            "(a checkpoint brings its own architecture); drop it, or set model.init: scratch"
        )


def _validate_semantics(recipe: Recipe, src: str, sources: dict[str, str]) -> None:
    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{_src_for(key, src, sources)}: {msg}")

    m, d, t = recipe.model, recipe.data, recipe.train
    if m.init == "pretrained" and not m.name_or_path:
        fail("model.name_or_path", "missing required key 'model.name_or_path' (or set model.init: scratch)")
    if d.train is None:
        fail("data.train", "missing required key 'data.train'")
    if getattr(m, "reduction_factor", None) and m.init != "scratch":
        fail(
            "model.reduction_factor",
            "'model.reduction_factor' applies to scratch models only (a checkpoint has its own)",
        )
    if d.min_seconds >= d.max_seconds:
        fail("data.min_seconds", f"'data.min_seconds' ({d.min_seconds}) must be < data.max_seconds")
    if t.max_steps is None and t.epochs is None and t.max_minutes is None:
        fail("train.max_steps", "set at least one of train.max_steps, train.epochs, train.max_minutes")
    if d.streaming and t.max_steps is None and t.max_minutes is None:
        fail("data.streaming", "'data.streaming: true' has no epoch length: set train.max_steps or train.max_minutes")
    if d.streaming and t.epochs is not None:
        fail("train.epochs", "'train.epochs' does not apply with data.streaming (no epoch length); use train.max_steps")
    if recipe.augment is not None:
        _validate_augment(recipe.augment, fail)


NOISE_TYPES = ("white", "pink", "brown", "babble", "dir")


def _validate_augment(a: AugmentConfig, fail) -> None:
    for key in ("snr_db", "gain_db"):
        pair = getattr(a, key)
        if len(pair) != 2 or pair[0] > pair[1]:
            fail(f"augment.{key}", f"'augment.{key}' must be [low, high], got {pair}")
    if not a.speeds or any(not 0.5 <= v <= 2.0 for v in a.speeds):
        fail("augment.speeds", f"'augment.speeds' must be factors in [0.5, 2.0], got {a.speeds}")
    unknown = [n for n in a.noise_types if n not in NOISE_TYPES]
    if unknown or not a.noise_types:
        fail("augment.noise_types", f"'augment.noise_types' takes {_fmt_choices(NOISE_TYPES)}, got {a.noise_types}")
    if "dir" in a.noise_types and a.noise_dir is None:
        fail("augment.noise_dir", "'augment.noise_types' has dir: set augment.noise_dir to a folder of audio files")


def _looks_local(name: str | None) -> bool:
    return bool(name) and (name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists())


# ---------------------------------------------------------------- generic dataclass conversion
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, hint: Any, key: str, src: str, sources: dict[str, str]) -> Any:
    where = _src_for(key, src, sources)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, src, sources)
    if dataclasses.is_dataclass(hint):
        return _convert_section(value, hint, key, src, sources)
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/off/yes/on as a boolean
            value = next((a for a in args if str(a).lower() in _YAML_BOOLS[value]), value)
        if value not in args:
            raise ConfigError(
                f"{where}: {key!r} must be one of {_fmt_choices(args)}, got {value!r}"
                f"{_suggest(str(value), [str(a) for a in args])}"
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key!r} must be a list, got {_show(value)}")
        return [_convert(v, args[0], f"{key}[{i}]", src, sources) for i, v in enumerate(value)]
    return _convert_scalar(value, hint, key, where)


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _convert_scalar(value: Any, hint: Any, key: str, where: str) -> Any:
    if value is None:
        raise ConfigError(f"{where}: {key!r} must not be empty (expected {_type_name(hint)})")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads `1e-4` (no dot) as a string; accept it as the number everyone means.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:  # pragma: no cover - a dataclass field of an unsupported type is a bug here
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    raise ConfigError(f"{where}: {key!r} must be {_type_name(hint)}, got {_show(value)}")


def _convert_section(value: Any, cls: type, key: str, src: str, sources: dict[str, str]) -> Any:
    where = _src_for(key, src, sources)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key!r} must be a mapping of keys, got {_show(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    kwargs = {}
    for sub, v in value.items():
        dotted = f"{key}.{sub}"
        if sub not in fields:
            options = [f"{key}.{f}" for f in fields]
            raise ConfigError(f"{_src_for(dotted, src, sources)}: unknown key {dotted!r}{_suggest(dotted, options)}")
        kwargs[sub] = _convert(v, hints[sub], dotted, src, sources)
        _check_range(kwargs[sub], fields[sub].metadata, dotted, _src_for(dotted, src, sources))
    return cls(**kwargs)


def _check_range(value: Any, rules: Any, key: str, where: str) -> None:
    if value is None or not rules:
        return
    if "min" in rules and value < rules["min"]:
        raise ConfigError(f"{where}: {key!r} must be >= {rules['min']}, got {value}")
    if "max" in rules and value > rules["max"]:
        raise ConfigError(f"{where}: {key!r} must be <= {rules['max']}, got {value}")
    if "gt" in rules and value <= rules["gt"]:
        raise ConfigError(f"{where}: {key!r} must be > {rules['gt']}, got {value}")


# ---------------------------------------------------------------- overrides and small helpers
def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"{CMDLINE}: override {item!r} must look like key.sub=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"{CMDLINE}: override {item!r} has a malformed key {key!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            dotted = ".".join(parents[: i + 1])
            raise ConfigError(f"{CMDLINE}: cannot set {key!r}: {dotted!r} is not a section")
        node = child
    node[last] = value


def _src_for(key: str, src: str, sources: dict[str, str]) -> str:
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in sources:
            return sources[".".join(parts[:i])]
    return src


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fmt_choices(choices: Any) -> str:
    return ", ".join(repr(c) for c in choices)


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


# ---------------------------------------------------------------- writing back
def recipe_to_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the fully resolved recipe (every default spelled out) next to the run's outputs."""
    Path(path).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))


def recipe_description(path: str | Path) -> str:
    """The first comment line of a recipe file: what it does."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""
