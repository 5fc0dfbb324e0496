"""Runtime: where a model is read from, where it runs and how it is stored.

loading (every `from_pretrained`, one-line errors, pickles refused, recipe settings mapped onto a family's
config), adapters (a LoRA adapter dir's base, the adapter put on it), device (the one device rule of the
inference commands), storage (file modes of saved dirs), memory (returning freed heap to the OS), speed
(compiled front ends, attention by shape, bf16 checks), presets and scratch (randomly initialised models with
real processors, `model.init: scratch`), whisper_vocab, whisper_import and ct2 (real Whisper weights in). The floor under data, tasks, training and inference:
it imports only errors and config.
"""
