"""Training: the one loop every task trains in, and what keeps a run safe.

loop (`train(recipe)`: Accelerate, batches by audio seconds, schedule, clipping, non-finite steps skipped),
run (when to evaluate, stop and checkpoint; the final export), checkpoint (atomic, sealed checkpoints and
exports; resume from the newest whole one), progress (a bar on a terminal, plain lines in a log), lora
(LoRA adapters wrapped for training, merged afterwards), folds (speaker-independent K-fold retraining). It
imports everything below it (config, runtime, data, tasks, inference.evaluate), never the fronts.
"""
