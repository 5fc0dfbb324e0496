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

__version__ = "0.1.0"
