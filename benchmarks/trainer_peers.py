"""The peer side of train_throughput.py: each task trained by `transformers.Trainer` the way its own
example script does it (run_speech_recognition_ctc.py, run_speech_recognition_seq2seq.py,
run_audio_classification.py), configured as the docs recommend: features computed once by
`Dataset.map`, `group_by_length` on a precomputed length column, the Trainer's own (fused) AdamW.

Only the model comes from slp_toolkit (the task's `build`, right after seeding), so both sides start
from the same weights; the script hashes them to check.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

RATE = 16000


# ---------------------------------------------------------------- collators, as in the examples
@dataclasses.dataclass
class CTCCollator:
    """run_speech_recognition_ctc.py's DataCollatorCTCWithPadding (not in the library in v5)."""

    processor: Any

    def __call__(self, features: list[dict]) -> dict:
        import torch

        inputs = [{"input_values": f["input_values"]} for f in features]
        label_features = [{"input_ids": f["labels"]} for f in features]
        batch = self.processor.feature_extractor.pad(inputs, padding=True, return_tensors="pt")
        labels = self.processor.tokenizer.pad(label_features, padding=True, return_tensors="pt")
        batch["labels"] = labels["input_ids"].masked_fill(labels.attention_mask.ne(1), -100)
        if "attention_mask" in batch:
            batch["attention_mask"] = batch["attention_mask"].to(torch.long)
        return batch


@dataclasses.dataclass
class Seq2SeqCollator:
    """run_speech_recognition_seq2seq.py's DataCollatorSpeechSeq2SeqWithPadding."""

    processor: Any
    decoder_start_token_id: int

    def __call__(self, features: list[dict]) -> dict:
        inputs = [{"input_features": f["input_features"]} for f in features]
        batch = self.processor.feature_extractor.pad(inputs, return_tensors="pt")
        label_features = [{"input_ids": f["labels"]} for f in features]
        labels_batch = self.processor.tokenizer.pad(label_features, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


@dataclasses.dataclass
class ClassifierCollator:
    """What the Trainer uses for run_audio_classification.py: DataCollatorWithPadding over the extractor."""

    extractor: Any

    def __call__(self, features: list[dict]) -> dict:
        import torch

        inputs = [{"input_values": f["input_values"]} for f in features]
        batch = self.extractor.pad(inputs, padding=True, return_tensors="pt")
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch


class CountingCollator:
    """Wraps a collator to note the real and padded audio seconds of the batch it just made."""

    def __init__(self, collator) -> None:
        self.collator, self.last_real, self.last_padded = collator, 0.0, 0.0

    def __call__(self, features: list[dict]) -> dict:
        lengths = [int(f["input_length"]) for f in features]
        self.last_real, self.last_padded = sum(lengths) / RATE, max(lengths) * len(lengths) / RATE
        return self.collator(features)


# ---------------------------------------------------------------- per task: features and collator
def _ctc(processor, model):
    def prepare(batch):
        batch["input_values"] = processor(audio=batch["audio"], sampling_rate=RATE).input_values[0]
        batch["labels"] = processor(text=batch["text"]).input_ids
        return batch

    return prepare, CTCCollator(processor)


def _seq2seq(processor, model):
    def prepare(batch):
        batch["input_features"] = processor.feature_extractor(batch["audio"], sampling_rate=RATE).input_features[0]
        batch["labels"] = processor.tokenizer(batch["text"]).input_ids
        return batch

    return prepare, Seq2SeqCollator(processor, model.config.decoder_start_token_id)


def _emotion(extractor, model):
    label2id = model.config.label2id

    def prepare(batch):
        batch["input_values"] = extractor(batch["audio"], sampling_rate=RATE).input_values[0]
        batch["label"] = label2id[batch["label"]]
        return batch

    return prepare, ClassifierCollator(extractor)


PEERS = {"asr_ctc": _ctc, "asr_seq2seq": _seq2seq, "emotion": _emotion}


def read_clips(recipe, needs: tuple[str, ...]):
    """The same clips and targets as our side: our text normaliser, our length limits, the first
    `data.max_train_samples` rows."""
    from slp_toolkit.data.splits import read_audio
    from slp_toolkit.data.text import normalize_text

    split, limits = Path(recipe.data.train), recipe.data
    with (split / "metadata.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[: limits.max_train_samples]
    for row in rows:
        audio = read_audio(split / row["file_name"], RATE)
        if not limits.min_seconds <= len(audio) / RATE <= limits.max_seconds:
            continue
        item = {"audio": audio, "input_length": len(audio)}
        if "text" in needs:
            item["text"] = normalize_text(row["transcription"])
            if not item["text"]:
                continue
        if "label" in needs:
            item["label"] = row["label"]
        yield item


def trainer_classes(task: str):
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments

    return (Seq2SeqTrainer, Seq2SeqTrainingArguments) if task == "asr_seq2seq" else (Trainer, TrainingArguments)
