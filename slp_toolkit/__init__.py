"""slp_toolkit: fine-tune pretrained speech models (ASR, TTS, speech emotion) from one recipe format.

The package by role (each folder's __init__ says what lives there and what it may import):
  config, schema, errors    recipes as typed dataclasses, validated once; the error types
  runtime/                  loading checkpoints and adapters, the device rule, storage, memory and speed switches
  data/                     splits, manifests, the decode cache, batches, augmentation, packing, segmentation
  tasks/                    the Task interface and registry; one file per task
  metrics, plots, lm        scores (WER/CER, UA/WA, MCD), figures, character LMs and CTC beam search
  inference/                evaluation and the inference commands
  training/                 the loop, run bookkeeping, checkpoints, LoRA, speaker folds
  serve/                    the Gradio demo and the Hub
  synth/                    the synthetic corpus and the tiny, family and full-size twin checkpoints
  cli                       `slp` (also `python -m slp_toolkit`)
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

# Modules that moved into the folders above: `import slp_toolkit.train` (and `from slp_toolkit.train import
# train`) still works, with a DeprecationWarning naming the new place.
MOVED = {
    "train": "training.loop", "run": "training.run", "checkpoint": "training.checkpoint",
    "progress": "training.progress", "folds": "training.folds", "lora": "training.lora",
    "evaluate": "inference.evaluate", "demo": "serve.demo", "hub": "serve.hub",
    "loading": "runtime.loading", "device": "runtime.device", "storage": "runtime.storage",
    "memory": "runtime.memory", "speed": "runtime.speed", "manifest": "data.manifest",
    "batches": "data.batches", "augment": "data.augment", "packing": "data.packing", "segment": "data.segment",
    "prepare": "data.prepare", "data_report": "data.report", "text": "data.text",
    "whisper_mel": "data.whisper_mel", "tts_audio": "tasks.tts_audio",
}  # fmt: skip


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `slp_toolkit.<old>` and fills it with the names of the module at its new path (the same objects;
    the new module itself is left untouched)."""

    def find_spec(self, fullname, path, target=None):
        old = fullname.removeprefix(f"{__name__}.")
        return importlib.util.spec_from_loader(fullname, self) if old in MOVED and old != fullname else None

    def create_module(self, spec):
        return None  # a plain module, filled below

    def exec_module(self, module):
        new = importlib.import_module(f"{__name__}.{MOVED[module.__name__.removeprefix(__name__ + '.')]}")
        warnings.warn(f"{module.__name__} moved to {new.__name__}; import it from there", DeprecationWarning,
                      stacklevel=2)  # fmt: skip
        own = ("__name__", "__spec__", "__loader__", "__package__", "__path__", "__file__", "__cached__")
        module.__dict__.update({k: v for k, v in vars(new).items() if k not in own})
        module.__getattr__ = lambda name: getattr(new, name)  # names the new module gains later


def forward_names(package: str, module: str):
    """A package's module-level __getattr__ that hands out the names of `module`: what a module that became a
    folder (slp_toolkit.data, slp_toolkit.inference) offered, so old imports keep working."""

    def __getattr__(name: str):
        if not name.startswith("__"):
            found = importlib.import_module(module)
            if hasattr(found, name):
                return getattr(found, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
    sys.meta_path.append(_Moved())
