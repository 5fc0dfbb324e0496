"""Inference: a trained model on new audio or text.

evaluate (predictions over a split in length-sorted batches, sharded over processes, scored by the task's
metrics) and commands (`slp eval`, `transcribe`, `classify`, `synthesize`, `lm build`; the LMs and beam search
themselves are slp_toolkit/lm.py, which the CTC task uses too). It imports the tasks, data and runtime;
training imports it (evaluation during a run), never the other way round.

`from slp_toolkit.inference import cmd_eval` (the module before the folder) still works.
"""

from slp_toolkit import forward_names

# the names slp_toolkit.inference had when it was one module (notebooks import them from here)
__getattr__ = forward_names(__name__, "slp_toolkit.inference.commands")
