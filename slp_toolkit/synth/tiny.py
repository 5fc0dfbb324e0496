"""Tiny random checkpoints with real processors (`slp tiny OUT`): what tests load offline with plain
``from_pretrained(dir)``, built by the scratch builders of slp_toolkit/runtime/scratch.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from slp_toolkit.runtime.scratch import build_audio_classifier, build_ctc, build_hifigan, build_speecht5, build_whisper
from slp_toolkit.runtime.storage import save_pretrained

EMOTIONS = ["angry", "happy", "neutral", "sad"]

# Harvard sentences (IEEE 1969), lists 1-3: public domain, phonetically balanced.
DEFAULT_TEXTS = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
]


def write_tiny_checkpoints(out_dir: str | Path, texts: list[str] | None = None) -> dict[str, Path]:
    """Save each tiny checkpoint (model and its processor or feature extractor) to out_dir/<name>.
    Deterministic: each is built after ``torch.manual_seed(0)``."""
    texts = list(texts or DEFAULT_TEXTS)
    vocab = sorted(set("abcdefghijklmnopqrstuvwxyz' ") | set(" ".join(texts).lower()))
    builders: dict[str, Callable[[], tuple]] = {
        "wav2vec2-ctc": lambda: build_ctc(vocab),
        "whisper": lambda: build_whisper(),
        "speecht5-tts": lambda: build_speecht5(texts),
        "speecht5-hifigan": lambda: (build_hifigan(), None),
        "wav2vec2-emotion": lambda: build_audio_classifier(EMOTIONS),
        "whisper-emotion": lambda: build_audio_classifier(EMOTIONS, family="whisper"),
    }
    paths = {}
    for name, build in builders.items():
        torch.manual_seed(0)
        model, processor = build()
        path = Path(out_dir) / name
        save_pretrained(path, model, processor)
        paths[name] = path
    return paths
