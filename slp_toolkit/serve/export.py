"""`slp export`: a Whisper trained here into CTranslate2, so that faster-whisper serves it.

The conversion is ctranslate2's own (`TransformersConverter`, the optional `ctranslate2` package); a LoRA
output dir is merged into its base first. faster-whisper reads `tokenizer.json` and the feature extractor's
settings (`preprocessor_config.json`: mel bins, window) from the model dir, so both go beside `model.bin`.
The result is written beside OUT and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from slp_toolkit.errors import UserError
from slp_toolkit.runtime.adapters import adapter_base

QUANTIZATIONS = ("float32", "float16", "int8", "int8_float32", "int8_float16", "int16")
# the WhisperFeatureExtractor settings faster-whisper's own extractor takes
EXTRACTOR_KEYS = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft")


def export_ct2(model_dir: str | Path, out: str | Path, quantization: str | None = None, force: bool = False) -> dict:
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise UserError(
            "slp export --format ct2 needs ctranslate2: pip install ctranslate2 (or slp_toolkit[ct2])"
        ) from None
    model_dir, out = Path(model_dir), Path(out)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization {quantization}: use one of {', '.join(QUANTIZATIONS)}")
    if out.exists() and not force:
        raise UserError(f"{out}: already exists (pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        source = _plain_model(model_dir, staging / "merged")
        processor = _whisper_processor(source, model_dir)
        extras = staging / "extras"
        processor.save_pretrained(extras)
        settings = {k: getattr(processor.feature_extractor, k) for k in EXTRACTOR_KEYS}
        (extras / "preprocessor_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        # absolute: the converter joins each name to the model dir, which keeps an absolute path as it is
        files = [str((extras / name).resolve()) for name in ("tokenizer.json", "preprocessor_config.json")]
        converted = staging / "ct2"
        TransformersConverter(str(source), copy_files=files, load_as_float16=False).convert(
            str(converted), quantization=quantization, force=True
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(converted, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return {"format": f"CTranslate2, {quantization or 'float32'} weights", "mb": round(size / 1e6, 1)}


def _plain_model(model_dir: Path, merged: Path) -> Path:
    """The model dir itself, or its LoRA adapter merged into the base."""
    if not (model_dir / "config.json").is_file() and adapter_base(model_dir) is None:
        raise UserError(f"{model_dir}: no config.json or adapter_config.json: not a model dir")
    if adapter_base(model_dir) is None:
        return model_dir
    from slp_toolkit.training.lora import merge

    merge(model_dir, merged)
    return merged


def _whisper_processor(source: Path, model_dir: Path):
    from transformers import AutoConfig, AutoProcessor

    model_type = getattr(AutoConfig.from_pretrained(source), "model_type", None)
    if model_type != "whisper":
        raise UserError(f"{model_dir}: a {model_type} model; slp export --format ct2 converts Whisper models")
    return AutoProcessor.from_pretrained(source)
