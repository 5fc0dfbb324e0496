"""Data: from audio files and manifests to the batches a model trains on, shared by every task.

splits (decode a split once into the on-disk Arrow cache, resampled, filtered, rows skipped with their file:line),
manifest (audiofolders, CSV/JSONL manifests, LibriSpeech folders, Hub datasets, read as rows), prepare (each task's
per-example features, cached beside the audio), batches (length-bucketed batches, map-style or streamed, with
the position to resume from), augment (on-the-fly noise, reverb, speed...), packing (clips joined into Whisper
windows), segment (long audio cut at its pauses), whisper_mel (Whisper's log-mel computed once), text
(transcript normalisation and CTC vocabularies), report (`slp data inspect` / `manifest`). It imports errors,
config and runtime, never tasks, training, inference or the fronts.
"""
