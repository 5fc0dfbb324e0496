"""Inference: a trained model on new audio or text.

evaluate (predictions over a split in length-sorted batches, sharded over processes, scored by the task's
metrics) and commands (`slp eval`, `transcribe`, `classify`, `synthesize`, `lm build`; the LMs and beam search
themselves are slp_toolkit/lm.py, which the CTC task uses too). It imports the tasks, data and runtime;
training imports it (evaluation during a run), never the other way round.

`from slp_toolkit.inference import cmd_eval` (the module before the folder) still works.
"""


def __getattr__(name: str):
    # the names slp_toolkit.inference had when it was one module (notebooks import them from here)
    import importlib

    if not name.startswith("__"):
        found = importlib.import_module("slp_toolkit.inference.commands")
        if hasattr(found, name):
            return getattr(found, name)
    raise AttributeError(f"module 'slp_toolkit.inference' has no attribute {name!r}")
