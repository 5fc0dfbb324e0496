"""The Task interface and its registry. One file per task fills a `Task` and calls `register`.

The training loop, evaluation, the CLI, the recipe loader, the demo and the model card only ever talk to
a Task; none of them branch on its name. A task module must stay light at import (no torch at module
level: see `no_grad`), because `slp validate` imports it to find the recipe's model section.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slp_toolkit.runtime.loading import ModelLoadError, load_or_fail, refuse_pickle

__all__ = [
    "LearningRates",
    "ModelLoadError",
    "Capabilities",
    "Tab",
    "Task",
    "TaskNotImplementedError",
    "audio_batch",
    "fp32_features",
    "window_seconds",
    "freeze_front_end",
    "load_or_fail",
    "no_grad",
    "padded_labels",
    "refuse_pickle",
]


class TaskNotImplementedError(ModelLoadError):
    """A known task whose module this version lacks (e.g. the demo hides that task's tab)."""

    def __init__(self, task: str):
        super().__init__(f"task {task!r} is not implemented in this version yet")
        self.task = task


def model_loss(model, batch: dict):
    return model(**batch).loss


def rows(batch: dict) -> int:
    """The rows of a collated batch (its labels', else its first input's)."""
    first = batch["labels"] if "labels" in batch else next(iter(batch.values()))
    return len(first)


def no_augment(example: dict, rng) -> dict:
    return example


def as_is(prediction: Any) -> Any:
    return prediction


def no_grad(fn: Callable) -> Callable:
    """`torch.no_grad()` as a decorator that imports torch at the first call, not when the module loads."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


def freeze_front_end(model, cfg) -> None:
    """Freeze a wav2vec2-family model's convolutional front end as `cfg.freeze_feature_encoder` says (None:
    frozen for a pretrained checkpoint, trained for a scratch model). Families without one are left as they are."""
    wanted = cfg.freeze_feature_encoder if cfg.freeze_feature_encoder is not None else cfg.init == "pretrained"
    if wanted and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    elif cfg.freeze_feature_encoder and not hasattr(model, "freeze_feature_encoder"):
        import logging

        logging.getLogger("slp").warning(
            "model.freeze_feature_encoder: %s has no convolutional front end to freeze", type(model).__name__
        )


def window_seconds(processor) -> float | None:
    """The fixed input window of a model whose feature extractor pads every clip to it (Whisper: 30 s), else
    None. Such a model spends a whole window on each clip, whatever its length."""
    ext = getattr(processor, "feature_extractor", processor)
    if getattr(ext, "n_samples", None) and getattr(ext, "chunk_length", None):
        return float(ext.chunk_length)
    if type(ext).__name__ == "ASTFeatureExtractor":  # Kaldi fbank frames of 10 ms, padded or cut to max_length
        return float(ext.max_length) / 100
    return None


def audio_batch(waves: list, extractor) -> dict:
    """A family's model inputs for a batch of clips, from its own feature extractor: padded to the longest (a
    fixed-window extractor, Whisper's or AST's, pads itself), with the attention mask wherever the inputs are
    mel frames (Parakeet, LASR, w2v-BERT... compute their output lengths from it). A wav2vec2-family extractor
    keeps its own setting: wav2vec2-base was pretrained without masks."""
    import numpy as np

    kwargs: dict = {"sampling_rate": extractor.sampling_rate, "return_tensors": "pt"}
    if window_seconds(extractor) is None:
        kwargs["padding"] = True
    names = list(getattr(extractor, "model_input_names", ()))
    if names and names[0] == "input_features" and "attention_mask" in names:
        kwargs["return_attention_mask"] = True
    with fp32_features():
        return dict(extractor([np.asarray(w, dtype=np.float32) for w in waves], **kwargs))


def fp32_features():
    """A block where CPU autocast is off: `--precision bf16` autocasts a task's predict, and the extractors that
    compute their features with torch (Whisper's log-mel, AST's fbank) then failed converting bf16 to numpy."""
    import torch

    return torch.autocast("cpu", enabled=False)


def padded_labels(examples: list[dict]):
    """The examples' label id lists as one (batch x longest) tensor, padded with -100 (ignored by the losses)."""
    import torch

    longest = max(len(e["labels"]) for e in examples)
    labels = torch.full((len(examples), longest), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, : len(e["labels"])] = torch.tensor(e["labels"], dtype=torch.long)
    return labels


@dataclass(frozen=True)
class LearningRates:
    """A task's default learning rate by how its model starts; a recipe's train.learning_rate overrides it."""

    scratch: float = 3e-4
    pretrained: float = 1e-4
    lora: float = 1e-3


@dataclass(frozen=True)
class Tab:
    """A task's tab in the demo. `key` is the tab's id and its app.py flag (tasks with one key share the
    tab: both ASR tasks are --asr); `kind` is the page it shows: audio in and text out (transcribe),
    audio in and label probabilities out (classify), or text in and audio out (synthesize)."""

    key: str
    title: str
    kind: Literal["transcribe", "classify", "synthesize"]


@dataclass(frozen=True)
class Capabilities:
    """What a task may add: each field has a default that means "the task has none" or the common behaviour.

    lora_targets, lora_heads                             modules LoRA adapts by default; modules trained in full
                                                         and saved beside the adapter (a new classifier head)
    compute_loss(model, batch) -> scalar tensor          the training loss (default: model(**batch).loss)
    loss_items(batch) -> int                             how many items compute_loss averages over (default: the
                                                         batch's rows; Whisper: its label tokens), to weigh
                                                         micro-batches by them in a global batch
    augment(example, rng) -> example                     training-time only changes (crops, noise...)
    pack(examples, processor, rng, model_config) -> list   a training batch's clips joined into fewer, fuller
                                                         model inputs (`data.pack`); None: the task has no
                                                         fixed window to fill
    keep(example, processor) -> bool                     rows the model can use (None: all of them);
                                                         keep_why says in a few words why others are left out
    beam(processor, settings) -> predict                 a beam-search predict (settings: lm.BeamSettings), for
                                                         `--decoder beam`; None where the task has none
    set_language(model, processor, language)             `--language`: decode in another language (multilingual
                                                         Whisper); None where the model has no language setting
    timed(model, processor, examples) -> list[dict]     transcripts with timestamps ({"text", "words" or "chunks":
                                                         [{"word"/"text", "start", "end"}]}), for `--json`
    ranked(model, processor, examples, k) -> list       the k best labels with scores per example, for
                                                         `slp classify` and the demo; None where it has none
    speakers(model, processor) -> list[str]             voices a synthesis model offers (the demo's choices)
    vocoders                                             vocoder names a synthesis model takes besides a dir
    summarize(prediction) -> JSON-able                   what predictions.jsonl keeps of a prediction
    report(model, processor, predictions, examples, dir, writer, step)   samples and plots of an evaluation
    preprocess_reads                                     the columns preprocess reads (None: all, audio too);
                                                         naming them keeps preparation from paging in the audio
    lockstep_predict                                     False where predict cannot run on a model sharded over
                                                         processes (SpeechT5's generate_speech has no synced mode:
                                                         each process stops at its own length, and they hang)
    audio_is_input                                       False where the audio is the target (TTS): the
                                                         recipe's augment: section leaves it alone
    augment_changes_label                                augment: kinds that can change the label (emotion:
                                                         speed moves pitch and rate); a recipe using one is warned
    validate(recipe, fail)                               the task's own recipe checks, run when the recipe loads
                                                         (before any data or model); fail(dotted_key, message)
    architectures                                        name parts of the transformers architectures it trains
                                                         (config.json `architectures`), for models with no recipe
    tab                                                  its demo tab (None: the demo does not serve it)
    usage                                                the call shown in the model card after
                                                         `pipe = pipeline(pipeline_tag, model=...)`
    space                                                a Space serving it with plain transformers can be staged
    learning_rates                                       train.learning_rate when the recipe gives none, by how the
                                                         model starts (scratch / pretrained / LoRA)
    normalize_text                                       data.normalize_text when the recipe gives none
    """

    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_heads: tuple[str, ...] = ()
    compute_loss: Callable[[Any, dict], Any] = model_loss
    loss_items: Callable[[dict], int] = rows
    augment: Callable[[dict, Any], dict] = no_augment
    pack: Callable[[list[dict], Any, Any, Any], list[dict]] | None = None
    keep: Callable[[dict, Any], bool] | None = None
    keep_why: str = ""
    beam: Callable[[Any, Any], Callable] | None = None
    ranked: Callable[..., list] | None = None
    timed: Callable[..., list] | None = None
    set_language: Callable[[Any, Any, str], None] | None = None
    speakers: Callable[[Any, Any], list] | None = None
    vocoders: tuple[str, ...] = ()
    summarize: Callable[[Any], Any] = as_is
    report: Callable[..., None] | None = None
    preprocess_reads: tuple[str, ...] | None = None
    lockstep_predict: bool = True
    audio_is_input: bool = True
    augment_changes_label: tuple[str, ...] = ()
    validate: Callable[[Any, Callable[[str, str], None]], None] | None = None
    architectures: tuple[str, ...] = ()
    tab: Tab | None = None
    usage: str = 'pipe("clip.wav")'
    space: bool = False
    learning_rates: LearningRates = LearningRates()
    normalize_text: bool = True


@dataclass(frozen=True)
class Task:
    """What every task must give for the shared loop, evaluation and CLI to run it; the rest is `caps`.

    build(recipe, train_ds) -> (model, processor)       a fresh model to train (vocab/labels from data)
    load(model_dir) -> (model, processor)                a trained model to evaluate or serve
    preprocess(example, processor) -> dict               per-example features, computed once and cached
    collate(examples, processor) -> dict of tensors      one padded batch; `labels` included when known
    predict(model, processor, examples) -> list          predictions for a list of examples
    metrics(predictions, examples) -> dict[str, float]   scores against the examples' references
    model_config                                         the dataclass of the recipe's `model:` section
    name, needs                                          the recipe's task name; the columns its data must have
    main_metric, greater_is_better                       the score that picks the best checkpoint
    pipeline_tag                                         the transformers pipeline that serves the saved model
    caps                                                 what the task may add (Capabilities)
    """

    name: str
    needs: tuple[str, ...]
    model_config: type
    build: Callable[[Any, Any], tuple[Any, Any]]
    load: Callable[[str], tuple[Any, Any]]
    preprocess: Callable[[dict, Any], dict]
    collate: Callable[[list[dict], Any], dict]
    predict: Callable[[Any, Any, list[dict]], list]
    metrics: Callable[[list, list[dict]], dict]
    main_metric: str
    greater_is_better: bool
    pipeline_tag: str
    caps: Capabilities = Capabilities()


TASKS: dict[str, Task] = {}
_MODULES = {"asr_ctc": "asr_ctc", "asr_seq2seq": "asr_seq2seq", "emotion": "emotion", "tts": "tts"}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    TASKS[task.name] = task
    return task


PLUGIN_GROUP = "slp_toolkit.tasks"  # entry points of installed packages: name = "module:TASK" (a Task)


@functools.lru_cache(maxsize=1)
def _plugins() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in _MODULES}


def task_names() -> tuple[str, ...]:
    """The built-in tasks, then those of installed packages (entry points), then any registered in-process."""
    names = (*_MODULES, *_plugins())
    return (*names, *(name for name in TASKS if name not in names))


def all_tasks() -> list[Task]:
    """Every task this version has (the built-in modules are imported; they are light). An installed
    task that fails to load is left out with a warning: the others still serve."""
    import logging

    found = []
    for name in task_names():
        try:
            found.append(get_task(name))
        except TaskNotImplementedError:
            continue
        except ModelLoadError as err:
            logging.getLogger("slp").warning("%s", err)
    return found


def _load_plugin(name: str) -> None:
    ep = _plugins()[name]
    try:
        task = ep.load()
    except Exception as err:  # noqa: BLE001 - someone else's package: any error is theirs, named in one line
        raise ModelLoadError(
            f"task {name!r} ({PLUGIN_GROUP} entry point {ep.value}): {type(err).__name__}: {err}"
        ) from None
    if isinstance(task, Task) and task.name not in TASKS:
        register(task)
    if name not in TASKS:
        raise ModelLoadError(f"task {name!r}: the entry point {ep.value} is not a Task named {name!r}")


def get_task(name: str) -> Task:
    """Import the task's module on first use (so `slp validate` never imports torch)."""
    if name not in TASKS and name in _plugins():
        _load_plugin(name)
    if name not in TASKS:
        if name not in _MODULES:
            raise ModelLoadError(f"unknown task {name!r} (known: {', '.join(task_names())})")
        try:
            importlib.import_module(f"slp_toolkit.tasks.{_MODULES[name]}")
        except ModuleNotFoundError as err:
            if err.name == f"slp_toolkit.tasks.{_MODULES[name]}":
                raise TaskNotImplementedError(name) from None
            raise
    return TASKS[name]


def model_sampling_rate(cfg) -> int:
    """The rate the model expects: the preset's for scratch models, else the feature extractor's."""
    if cfg.init == "scratch":
        return cfg.sampling_rate
    from transformers import AutoFeatureExtractor

    extractor = load_or_fail(AutoFeatureExtractor.from_pretrained, cfg.name_or_path, "feature extractor")
    return int(extractor.sampling_rate)


def detect_task(model: str) -> Task:
    """The task of a trained model: from the recipe saved beside it, else from its architecture."""

    import yaml

    recipe = Path(model) / "recipe.yaml"
    if recipe.is_file():
        name = (yaml.safe_load(recipe.read_text()) or {}).get("task")
        if name:
            return get_task(name)
    from slp_toolkit.runtime.adapters import adapter_base

    base = adapter_base(model)
    if base is not None:
        return detect_task(base)
    from transformers import AutoConfig

    config = load_or_fail(AutoConfig.from_pretrained, model, "model config")
    for arch in config.architectures or []:
        for task in all_tasks():
            if any(part in arch for part in task.caps.architectures):
                return task
    raise ModelLoadError(f"{model}: cannot tell which task this model is for (architectures: {config.architectures})")
