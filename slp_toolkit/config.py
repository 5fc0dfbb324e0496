"""Recipes: plain YAML mapped onto frozen, typed dataclasses and validated once.

Every default lives in a dataclass below. `load_recipe` is the only way in; any problem becomes a
`ConfigError` whose message is one line naming the source (file or `<command line>`) and the dotted
key. This module imports no torch so that `slp validate` stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# UserError is re-exported: modules and users import the errors from here too
from slp_toolkit.errors import ConfigError, UserError  # noqa: F401
from slp_toolkit.schema import (
    CMDLINE,
    DuplicateKey,
    StrictLoader,
    convert,
    field_types,
    fmt_choices,
    parse_override,
    rule,
    set_dotted,
    src_for,
    suggest,
)


# ---------------------------------------------------------------- the model section (each task extends it)
@dataclass(frozen=True)
class ModelConfig:
    """How the model is obtained. `name_or_path` is a Hub name or a local dir; `init: scratch` builds a
    randomly initialised model from `preset` instead (processors are still real ones)."""

    name_or_path: str | None = None
    init: Literal["pretrained", "scratch"] = "pretrained"
    preset: str = "small"
    sampling_rate: int = field(default=16000, metadata=rule(min=1000))
    gradient_checkpointing: bool = False
    # transformers' attention kernel: sdpa, eager, flash_attention_2 (needs the flash-attn package, a GPU and
    # bf16/fp16), flash_attention_3, flex_attention. None: sdpa, with plain math for small bf16 CPU batches
    # (slp_toolkit/runtime/speed.py).
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"] | None = (
        None
    )
    # None: a pretrained checkpoint keeps its own (wav2vec2-base trains with 0.1), a scratch model gets 0. Only
    # what a recipe sets changes a pretrained config: a toolkit default must not strip its regularisation.
    dropout: float | None = field(default=None, metadata=rule(min=0.0, max=0.9))
    layerdrop: float | None = field(default=None, metadata=rule(min=0.0, max=0.9))


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
    num_workers: int | None = field(default=None, metadata=rule(min=1))
    # Decode training rows on the fly instead of into the on-disk cache (Hub datasets too large to
    # download, manifests too large to cache). Needs train.max_steps or train.max_minutes.
    streaming: bool = False
    # Streaming: clips read ahead and sorted by length together (memory: this many decoded clips).
    stream_window: int = field(default=500, metadata=rule(min=1))
    audio_column: str | None = None  # None: the first of file_name/audio/path/... that exists
    text_column: str | None = None  # None: the first of transcription/text/sentence/... that exists
    label_column: str = "label"
    speaker_column: str = "speaker"
    min_seconds: float = field(default=0.2, metadata=rule(min=0.0))
    max_seconds: float = field(default=20.0, metadata=rule(gt=0.0))  # longer clips are dropped
    # Training-time random crop (classification tasks); evaluation always sees whole clips. None: no crop.
    crop_seconds: float | None = field(default=None, metadata=rule(gt=0.0))
    # Training-time speed perturbation (classification tasks): each clip is resampled by a random factor
    # in [1 - x, 1 + x], moving pitch and formants together like another speaker's voice. 0: off.
    speed_perturb: float = field(default=0.0, metadata=rule(min=0.0, max=0.5))
    # Lower-case, strip punctuation and spell out what the text normaliser knows, for training targets. None:
    # the task's choice (on for character CTC, off for Whisper, which writes cased and punctuated text and
    # is scored after its own normaliser).
    normalize_text: bool | None = None
    # Fixed-window models (Whisper pads every clip to its 30 s window): join a training batch's clips, a
    # short pause between them, into as few full windows as their transcripts allow (distil-whisper's
    # `concatenate_audio` does the same to its short-form data). ~3x less encoder work per audio second
    # on 4-s clips; evaluation still sees clips one by one. Tasks without a window refuse it.
    pack: bool = False
    max_train_samples: int | None = field(default=None, metadata=rule(min=1))
    max_eval_samples: int | None = field(default=None, metadata=rule(min=1))


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    # None: the task's rate for how the model starts (scratch / pretrained / LoRA), after the anchors'
    # fine-tuning guides (tasks/*.py, `learning_rates`); the saved recipe.yaml spells out the one used
    learning_rate: float | None = field(default=None, metadata=rule(gt=0.0))
    weight_decay: float = field(default=0.0, metadata=rule(min=0.0))
    warmup: float = field(default=0.1, metadata=rule(min=0.0, max=1.0))  # fraction of the run
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_steps: int | None = field(default=None, metadata=rule(min=1))
    epochs: float | None = field(default=None, metadata=rule(gt=0.0))
    max_minutes: float | None = field(default=None, metadata=rule(gt=0.0))
    batch_seconds: float = field(default=120.0, metadata=rule(gt=0.0))  # audio per batch, summed
    max_batch_size: int = field(default=64, metadata=rule(min=1))
    grad_accum: int = field(default=1, metadata=rule(min=1))
    max_grad_norm: float = field(default=1.0, metadata=rule(gt=0.0))
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # bf16 on CPU: 1.3x per step where avx512_bf16/AMX
    # torch.compile the wav2vec2-family conv front end (slp_toolkit/runtime/speed.py): 1.26x per step on CPU, after a
    # one-time ~20 s compile; pays off in runs of a few minutes and more. Whisper/SpeechT5: no effect.
    compile: bool = False
    eval_every: int = field(default=200, metadata=rule(min=1))  # steps
    eval_every_minutes: float | None = field(default=None, metadata=rule(gt=0.0))
    metric_for_best: str | None = None  # None: the task's main metric
    early_stopping_patience: int | None = field(default=None, metadata=rule(min=1))
    log_every: int = field(default=10, metadata=rule(min=1))
    # two: should the newest be torn (a copy cut short, a disk that lost it), `--resume` takes the one before
    keep_checkpoints: int = field(default=2, metadata=rule(min=1))
    num_threads: int | None = field(default=None, metadata=rule(min=1))
    # A step whose loss (or gradient norm) is NaN/inf is skipped and counted; this many in a row stop the run.
    max_nonfinite_steps: int = field(default=20, metadata=rule(min=1))
    # Augment and collate the next batch in a worker thread while the current one trains (numpy and
    # torch release the GIL); false does it in the loop, one after the other.
    prefetch: bool = True
    # Threads that augment and collate batches ahead of the loop (with prefetch). None: 1 on CPU, where each
    # thread takes a core from the model, and 4 with a GPU, which otherwise waits for heavy augmentation.
    data_workers: int | None = field(default=None, metadata=rule(min=1, max=64))
    # TF32 matmuls/convolutions on Ampere and later GPUs (10-bit mantissa, several times the fp32 rate), as
    # the Trainer's `tf32`; no effect on CPU.
    tf32: bool = True
    # Several processes: how long one waits for the others (evaluation, a checkpoint or the data cache on
    # rank 0) before the run fails. The Trainer's ddp_timeout is 30 min; torch's default 10 min.
    ddp_timeout_minutes: float = field(default=30.0, metadata=rule(gt=0.0))
    # DDP: look for parameters a step did not use (layerdrop skips whole layers; DDP otherwise stops at the
    # next step with "Expected to have finished reduction"). None: on when the model drops layers
    # (any *layerdrop > 0), off otherwise (it costs a pass over the graph every step).
    find_unused_parameters: bool | None = None
    # Return freed heap to the OS whenever resident memory grew this much (glibc fragments under batches of
    # changing shapes: the quickstart grew ~1.5 GB/min without). Costs throughput (~15 % measured on
    # the quickstart); null turns it off. See slp_toolkit/runtime/memory.py.
    trim_memory_mb: int | None = field(default=512, metadata=rule(min=16))
    shuffle: bool = True


@dataclass(frozen=True)
class LoraConfig:
    r: int = field(default=8, metadata=rule(min=1))
    alpha: float = field(default=16.0, metadata=rule(gt=0.0))
    dropout: float = field(default=0.05, metadata=rule(min=0.0, max=0.9))
    target_modules: list[str] | None = None  # None: the family's attention projections
    modules_to_save: list[str] | None = None  # None: the task's new head
    # Adapt only the target modules inside this part of the model (a name in their dotted path, e.g. encoder or
    # decoder); None: everywhere. An encoder-only Whisper LoRA leaves the decoder's language model as it was.
    within: str | None = None


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly waveform augmentation of training clips, for tasks that take audio in (TTS targets stay
    clean). Each transform fires with its own probability; every draw is a function of (train.seed, rank,
    batch position), so a resumed run repeats it exactly. See slp_toolkit/data/augment.py."""

    speed_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.1])  # one picked at random (transcript kept)
    reverb_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))
    rir_dir: str | None = None  # a folder of impulse responses; None: generated rooms
    noise_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))
    # white, pink, brown (generated), babble (other clips of the batch), dir (a file from noise_dir)
    noise_types: list[str] = field(default_factory=lambda: ["white", "pink", "brown", "babble"])
    noise_dir: str | None = None  # a folder of noise recordings, e.g. MUSAN noise/
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])  # [low, high], uniform
    telephone_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))  # 300-3,400 Hz, 8 kHz
    gain_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))
    gain_db: list[float] = field(default_factory=lambda: [-6.0, 6.0])
    clip_prob: float = field(default=0.0, metadata=rule(min=0.0, max=1.0))  # hard clipping at 30-80 % of peak


@dataclass(frozen=True)
class Recipe:
    task: str
    model: ModelConfig
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    lora: LoraConfig | None = None
    augment: AugmentConfig | None = None
    output_dir: str = "outputs/run"


# ---------------------------------------------------------------- loading and validation
def load_recipe(path: str | Path, overrides: list[str] | None = None, check_paths: bool = True) -> Recipe:
    """Read a recipe file, apply `key.sub=value` overrides, and validate everything once.

    With `check_paths=False` paths that do not exist yet (data a later step writes) are not errors;
    `missing_paths` lists them."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ConfigError(f"{src}: recipe file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=StrictLoader)
    except DuplicateKey as err:
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
        key, value = parse_override(item)
        set_dotted(raw, key, value)
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
            f"{src_for('model.name_or_path', src, sources)}: 'model.name_or_path' path does not exist: {m.name_or_path}"
        )
    for key in ("judge_asr", "speaker_embedding_dir"):
        value = getattr(m, key, None)
        if _looks_local(value) and not Path(value).exists():
            found.append(f"{src_for('model.' + key, src, sources)}: 'model.{key}' path does not exist: {value}")
    if getattr(m, "speaker_embedding", None) == "file" and not m.speaker_embedding_dir:
        found.append(
            f"{src_for('model.speaker_embedding_dir', src, sources)}: 'model.speaker_embedding: file' "
            "needs 'model.speaker_embedding_dir' (a folder of <speaker>.npy)"
        )
    for key in ("rir_dir", "noise_dir"):
        value = getattr(recipe.augment, key, None) if recipe.augment else None
        if value is not None and not Path(value).is_dir():
            found.append(f"{src_for('augment.' + key, src, sources)}: 'augment.{key}' is not a folder: {value}")
    for key in ("train", "eval"):
        spec = getattr(d, key)
        if spec and not spec.startswith("hf:") and not Path(spec).exists():
            found.append(f"{src_for('data.' + key, src, sources)}: 'data.{key}' path does not exist: {spec}")
    return found


def recipe_from_dict(raw: dict, src: str = "<recipe>", sources: dict[str, str] | None = None) -> Recipe:
    """Validate a plain dict (as read from YAML) into a Recipe."""
    from slp_toolkit.tasks import get_task, task_names  # the registry: each task brings its model section

    sources = sources or {}
    task, names = raw.get("task"), task_names()
    if task is None:
        raise ConfigError(f"{src}: missing required key 'task' (one of {fmt_choices(names)})")
    if not isinstance(task, str) or task not in names:
        raise ConfigError(
            f"{sources.get('task', src)}: 'task' must be one of {fmt_choices(names)}, "
            f"got {task!r}{suggest(str(task), names)}"
        )
    spec = get_task(task)
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    hints = {"model": spec.model_config}
    values: dict[str, Any] = {"task": task}
    for key, value in raw.items():
        if key == "task":
            continue
        if key not in fields:
            raise ConfigError(f"{src_for(key, src, sources)}: unknown key {key!r}{suggest(key, fields)}")
        hint = hints.get(key, field_types(Recipe)[key])
        values[key] = convert(value, hint, key, src, sources)
    if "model" not in values:
        values["model"] = spec.model_config()
    recipe = _task_defaults(Recipe(**values), spec)
    _validate_semantics(recipe, src, sources, spec.caps.validate)
    if recipe.data.pack and spec.caps.pack is None:
        packing = ", ".join(n for n in names if get_task(n).caps.pack is not None) or "none"
        raise ConfigError(
            f"{src_for('data.pack', src, sources)}: 'data.pack' joins clips into a model's fixed input window; "
            f"task {task} has none (tasks that pack: {packing}); drop data.pack"
        )
    _check_ignored(recipe, raw.get("model") or {}, src, sources)
    return recipe


def _task_defaults(recipe: Recipe, task) -> Recipe:
    """Fill the keys whose default is the task's (None in the dataclass): the learning rate for how the model
    starts and whether training text is normalised. Once, here, so everything after reads plain values."""
    t, d = recipe.train, recipe.data
    start = "lora" if recipe.lora is not None else recipe.model.init
    if t.learning_rate is None:
        t = dataclasses.replace(t, learning_rate=getattr(task.caps.learning_rates, start))
    if d.normalize_text is None:
        d = dataclasses.replace(d, normalize_text=task.caps.normalize_text)
    return dataclasses.replace(recipe, train=t, data=d)


def _check_ignored(recipe: Recipe, given: dict, src: str, sources: dict[str, str]) -> None:
    """A key the current mode would silently ignore is an error: the user meant something by it."""
    m = recipe.model
    if m.init == "scratch" and m.name_or_path:
        raise ConfigError(
            f"{src_for('model.name_or_path', src, sources)}: 'model.name_or_path' is not used with "
            "model.init: scratch (a random model is built from model.preset); to fine-tune it, add "
            "model.init=pretrained, else drop model.name_or_path"
        )
    # a saved run's recipe.yaml spells out the default preset: only another value was meant to matter
    if m.init == "pretrained" and "preset" in given and m.preset != type(m)().preset:
        raise ConfigError(
            f"{src_for('model.preset', src, sources)}: 'model.preset' applies to model.init: scratch only "
            "(a checkpoint brings its own architecture); drop it, or set model.init: scratch"
        )


def _validate_semantics(recipe: Recipe, src: str, sources: dict[str, str], task_checks=None) -> None:
    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{src_for(key, src, sources)}: {msg}")

    m, d, t = recipe.model, recipe.data, recipe.train
    if m.init == "pretrained" and not m.name_or_path:
        fail("model.name_or_path", "missing required key 'model.name_or_path' (or set model.init: scratch)")
    if d.train is None:
        fail("data.train", "missing required key 'data.train'")
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
    if task_checks is not None:
        task_checks(recipe, fail)


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
        fail("augment.noise_types", f"'augment.noise_types' takes {fmt_choices(NOISE_TYPES)}, got {a.noise_types}")
    if "dir" in a.noise_types and a.noise_dir is None:
        fail("augment.noise_dir", "'augment.noise_types' has dir: set augment.noise_dir to a folder of audio files")


def _looks_local(name: str | None) -> bool:
    return bool(name) and (name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists())


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
