"""Inference: a trained model on new audio or text.

evaluate (predictions over a split in length-sorted batches, sharded over processes, scored by the task's
metrics) and commands (`slp eval`, `transcribe`, `classify`, `synthesize`, `lm build`; the LMs and beam search
themselves are slp_toolkit/lm.py, which the CTC task uses too). It imports the tasks, data and runtime;
training imports it (evaluation during a run), never the other way round.
"""
