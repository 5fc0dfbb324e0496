"""`slp import`: a Whisper from CTranslate2 (faster-whisper) or OpenAI (`openai-whisper` .pt) files into a
transformers directory that `pipeline()`, `slp train` and `slp eval` load.

CTranslate2 fuses self-attention's q/k/v into one projection and cross-attention's k/v into another, and
stores a zero bias for Whisper's bias-free k_proj: split here, the zero checked. The architecture is read from
the weights' shapes, English-only vs multilingual from the vocabulary size (51,864 is an `*.en` model, as
openai-whisper decides), the decoding settings (suppressed tokens, alignment heads) from the CT2 config, the
tokenizer from its `tokenizer.json` with the 1,501 timestamp tokens CT2 leaves out added back. The output is
written beside OUT and renamed into place: an import that fails leaves nothing half-written.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slp_toolkit.runtime.ct2 import Ct2Error, model_files, read_model

ENGLISH_ONLY_VOCAB = 51864  # *.en; 51865 multilingual (tiny..large-v2), 51866 large-v3 (<|yue|>)
SAMPLING_RATE, HOP, WINDOW_FRAMES_PER_POSITION = 16000, 160, 2


@dataclass
class Imported:
    """What both formats give: the shapes, the weights under transformers' names, the tokenizer, decoding
    settings and where it came from."""

    dims: dict
    weights: dict  # transformers name -> float32 array
    tokenizer: object
    suppress: list[int] = field(default_factory=list)
    begin_suppress: list[int] = field(default_factory=list)
    alignment_heads: list | None = None
    provenance: dict = field(default_factory=dict)


# ---------------------------------------------------------------- CTranslate2
def _linear(w: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"] = w[f"{src}/weight"]
    if f"{src}/bias" in w:
        out[f"{dst}.bias"] = w[f"{src}/bias"]


def _norm(w: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = w[f"{src}/gamma"], w[f"{src}/beta"]


def _split(w: dict, src: str, dsts: list[str], out: dict, where: str) -> None:
    """A fused projection into its parts; k_proj has no bias in transformers (CT2 stores zeros)."""
    weights = np.split(w[f"{src}/weight"], len(dsts))
    biases = np.split(w[f"{src}/bias"], len(dsts)) if f"{src}/bias" in w else [None] * len(dsts)
    for dst, weight, bias in zip(dsts, weights, biases, strict=True):
        out[f"{dst}.weight"] = weight
        if dst.endswith("k_proj"):
            if bias is not None and np.abs(bias).max() > 0:
                raise Ct2Error(f"{where}: {src} has a non-zero key bias, which Whisper's k_proj does not have")
        elif bias is not None:
            out[f"{dst}.bias"] = bias


def _layers(w: dict, stack: str) -> int:
    found = {int(m.group(1)) for n in w if (m := re.match(rf"{stack}/layer_(\d+)/", n))}
    if found != set(range(len(found))):
        raise Ct2Error(f"{stack} layers {sorted(found)} are not numbered 0..n-1")
    return len(found)


def _ct2_weights(w: dict, where: str) -> tuple[dict, dict]:
    enc_layers, dec_layers = _layers(w, "encoder"), _layers(w, "decoder")
    out: dict = {}
    for i in (1, 2):
        _linear(w, f"encoder/conv{i}", f"model.encoder.conv{i}", out)
    out["model.encoder.embed_positions.weight"] = w["encoder/position_encodings/encodings"]
    for i in range(enc_layers):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        attn = f"{dst}.self_attn"
        _split(w, f"{src}/self_attention/linear_0", [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], out, where)
        _linear(w, f"{src}/self_attention/linear_1", f"{attn}.out_proj", out)
        _norm(w, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        _ffn(w, src, dst, out)
    _norm(w, "encoder/layer_norm", "model.encoder.layer_norm", out)
    out["model.decoder.embed_tokens.weight"] = w["decoder/embeddings/weight"]
    out["model.decoder.embed_positions.weight"] = w["decoder/position_encodings/encodings"]
    for i in range(dec_layers):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        attn, cross = f"{dst}.self_attn", f"{dst}.encoder_attn"
        _split(w, f"{src}/self_attention/linear_0", [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], out, where)
        _linear(w, f"{src}/self_attention/linear_1", f"{attn}.out_proj", out)
        _norm(w, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        _linear(w, f"{src}/attention/linear_0", f"{cross}.q_proj", out)
        _split(w, f"{src}/attention/linear_1", [f"{cross}.k_proj", f"{cross}.v_proj"], out, where)
        _linear(w, f"{src}/attention/linear_2", f"{cross}.out_proj", out)
        _norm(w, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
        _ffn(w, src, dst, out)
    _norm(w, "decoder/layer_norm", "model.decoder.layer_norm", out)
    out["proj_out.weight"] = w.get("decoder/projection/weight", out["model.decoder.embed_tokens.weight"])
    conv, embed = w["encoder/conv1/weight"], w["decoder/embeddings/weight"]
    dims = dict(
        num_mel_bins=conv.shape[1],
        d_model=conv.shape[0],
        encoder_layers=enc_layers,
        decoder_layers=dec_layers,
        encoder_attention_heads=int(w["encoder/num_heads"]),
        decoder_attention_heads=int(w["decoder/num_heads"]),
        encoder_ffn_dim=w["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=w["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=w["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=w["decoder/position_encodings/encodings"].shape[0],
        vocab_size=embed.shape[0],
    )
    return dims, out


def _ffn(w: dict, src: str, dst: str, out: dict) -> None:
    _linear(w, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(w, f"{src}/ffn/linear_1", f"{dst}.fc2", out)
    _norm(w, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)


def from_ct2(folders: list[Path]) -> Imported:
    """A CTranslate2 Whisper directory (its files may be spread over several, e.g. model.bin parts shipped in
    two packages)."""
    with tempfile.TemporaryDirectory(prefix="slp-import-") as scratch:
        return _from_ct2(_gather(folders, Path(scratch)), str(folders[0]))


def _from_ct2(folder: Path, where: str) -> Imported:
    ct2 = read_model(folder)
    if ct2.spec != "WhisperSpec":
        raise Ct2Error(
            f"{where}: model.bin holds a {ct2.spec or 'nameless'} model, not Whisper; slp import converts Whisper"
        )
    try:
        dims, weights = _ct2_weights(ct2.variables, where)
    except KeyError as err:
        raise Ct2Error(f"{where}: model.bin lacks Whisper's variable {err.args[0]}: not a Whisper conversion") from None
    settings = _json(folder / "config.json", where)
    tokenizer = _ct2_tokenizer(folder, dims["vocab_size"], where)
    provenance = {
        "format": f"CTranslate2 binary v{ct2.version}, {ct2.spec} revision {ct2.revision}",
        "stored_weights": list(ct2.weight_dtypes),
        "sha256": _sha256(model_files(folder)),
    }
    return Imported(
        dims,
        weights,
        tokenizer,
        suppress=list(settings.get("suppress_ids") or []),
        begin_suppress=list(settings.get("suppress_ids_begin") or []),
        alignment_heads=settings.get("alignment_heads"),
        provenance=provenance,
    )


def _gather(folders: list[Path], scratch: Path) -> Path:
    """One folder with every file of `folders` (links in `scratch` when there are several)."""
    for f in folders:
        if not f.is_dir():
            raise Ct2Error(f"{f}: not a directory (slp import takes CTranslate2 model directories or a .pt file)")
    if len(folders) == 1:
        return folders[0]
    joined = scratch
    for folder in folders:
        for file in folder.iterdir():
            if file.is_file() and not (joined / file.name).exists():
                (joined / file.name).symlink_to(file.resolve())
    return joined


def _json(path: Path, where: str) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise Ct2Error(f"{path}: not valid JSON ({err})") from None


def _sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _ct2_tokenizer(folder: Path, vocab_size: int, where: str):
    """The HF tokenizer.json CT2 copies beside the model (without timestamp tokens): its BPE and specials,
    timestamps added up to the model's vocabulary. Without one, a multilingual model takes the shipped
    tiktoken vocabulary (the same ids)."""
    from slp_toolkit.runtime.whisper_vocab import build_tokenizer, whisper_tokenizer_dir

    path = folder / "tokenizer.json"
    if not path.is_file():
        if vocab_size in (51865, 51866):
            from transformers import WhisperTokenizer

            return WhisperTokenizer.from_pretrained(whisper_tokenizer_dir(vocab_size - 51865 + 99))
        raise Ct2Error(f"{where}: no tokenizer.json beside model.bin (an English-only model needs its own)")
    spec = _json(path, where)
    try:
        model = spec["model"]
        vocab, merges = (
            dict(model["vocab"]),
            [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]],
        )
        added = sorted((t["id"], t["content"]) for t in spec.get("added_tokens", []))
    except (KeyError, TypeError, AttributeError):
        raise Ct2Error(f"{path}: not a byte-level BPE tokenizer.json (model.vocab / model.merges missing)") from None
    specials = [content for _, content in added if not re.fullmatch(r"<\|\d+\.\d+\|>", content)]
    text = {t: i for t, i in vocab.items() if t not in specials}
    if not specials or specials[0] != "<|endoftext|>":
        raise Ct2Error(f"{path}: its first added token is {specials[:1]}, not <|endoftext|>: not a Whisper tokenizer")
    tokenizer = build_tokenizer(text, merges, specials, 0)
    stamps = vocab_size - len(tokenizer)
    if stamps < 0:
        raise Ct2Error(f"{path}: {len(tokenizer)} tokens for a model of {vocab_size}: not this model's tokenizer")
    return build_tokenizer(text, merges, specials, stamps)


# ---------------------------------------------------------------- OpenAI .pt
OPENAI_NAMES = [
    (r"^encoder\.positional_embedding$", "model.encoder.embed_positions.weight"),
    (r"^decoder\.positional_embedding$", "model.decoder.embed_positions.weight"),
    (r"^decoder\.token_embedding\.", "model.decoder.embed_tokens."),
    (r"^(encoder|decoder)\.blocks\.", r"model.\1.layers."),
    (r"^(encoder|decoder)\.(conv\d)\.", r"model.\1.\2."),
    (r"^encoder\.ln_post\.", "model.encoder.layer_norm."),
    (r"^decoder\.ln\.", "model.decoder.layer_norm."),
    (r"\.cross_attn_ln\.", ".encoder_attn_layer_norm."),
    (r"\.cross_attn\.", ".encoder_attn."),
    (r"\.attn_ln\.", ".self_attn_layer_norm."),
    (r"\.attn\.", ".self_attn."),
    (r"\.query\.", ".q_proj."),
    (r"\.key\.", ".k_proj."),
    (r"\.value\.", ".v_proj."),
    (r"\.out\.", ".out_proj."),
    (r"\.mlp_ln\.", ".final_layer_norm."),
    (r"\.mlp\.0\.", ".fc1."),
    (r"\.mlp\.2\.", ".fc2."),
]


def from_openai(path: Path) -> Imported:
    """An `openai-whisper` checkpoint ({"dims", "model_state_dict"}), read with torch's weights-only loader
    (no code runs); the tokenizer is the shipped tiktoken one (multilingual) or openai-whisper's gpt2 file."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        dims, state = checkpoint["dims"], checkpoint["model_state_dict"]
    except (RuntimeError, OSError, EOFError, KeyError, TypeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise Ct2Error(f"{path}: not an openai-whisper checkpoint ({first})") from None
    weights = {}
    for name, tensor in state.items():
        if name == "decoder.mask":
            continue
        for pattern, repl in OPENAI_NAMES:
            name = re.sub(pattern, repl, name)
        weights[name] = tensor.float().numpy()
    weights["proj_out.weight"] = weights["model.decoder.embed_tokens.weight"]
    hf_dims = dict(
        num_mel_bins=dims["n_mels"],
        d_model=dims["n_audio_state"],
        encoder_layers=dims["n_audio_layer"],
        decoder_layers=dims["n_text_layer"],
        encoder_attention_heads=dims["n_audio_head"],
        decoder_attention_heads=dims["n_text_head"],
        encoder_ffn_dim=4 * dims["n_audio_state"],
        decoder_ffn_dim=4 * dims["n_text_state"],
        max_source_positions=dims["n_audio_ctx"],
        max_target_positions=dims["n_text_ctx"],
        vocab_size=dims["n_vocab"],
    )
    provenance = {"format": "openai-whisper checkpoint (.pt)", "sha256": _sha256([path])}
    return Imported(hf_dims, weights, _openai_tokenizer(dims["n_vocab"], path), provenance=provenance)


def _openai_tokenizer(vocab_size: int, where: Path):
    from transformers import WhisperTokenizer

    from slp_toolkit.runtime.whisper_vocab import _convert_tiktoken, _specials, build_tokenizer, whisper_tokenizer_dir

    if vocab_size in (51865, 51866):
        return WhisperTokenizer.from_pretrained(whisper_tokenizer_dir(vocab_size - 51865 + 99))
    try:
        import whisper
    except ImportError:
        whisper = None
    vocab_file = Path(whisper.__file__).parent / "assets" / "gpt2.tiktoken" if whisper else None
    if vocab_file is None or not vocab_file.is_file():
        raise Ct2Error(
            f"{where}: an English-only model needs openai-whisper's gpt2 vocabulary: pip install openai-whisper"
        )
    text = vocab_file.read_text()
    vocab, merges = _convert_tiktoken(text)
    specials = _specials()
    return build_tokenizer(vocab, merges, specials, vocab_size - len(vocab) - len(specials))


# ---------------------------------------------------------------- writing
def import_model(sources: list[str | Path], out: str | Path, force: bool = False) -> dict:
    """Import `sources` (CT2 directories, or one .pt file) into the transformers directory `out`."""
    sources = [Path(s) for s in sources]
    out = Path(out)
    if out.exists() and not force:
        raise Ct2Error(f"{out}: already exists (pass --force to replace it)")
    for s in sources:
        if not s.exists():
            raise Ct2Error(f"{s}: no such file or directory")
    if len(sources) == 1 and sources[0].is_file():
        imported = from_openai(sources[0])
    else:
        imported = from_ct2(sources)
    imported.provenance |= {"source": [str(s.resolve()) for s in sources], **_distribution(sources)}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        summary = _write(imported, staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary | {"out": str(out)}


def _write(imported: Imported, out: Path) -> dict:
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from slp_toolkit.runtime.storage import save_pretrained

    tok = imported.tokenizer
    eot, sot = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|startoftranscript|>")
    dims = imported.dims
    tied = np.array_equal(imported.weights["proj_out.weight"], imported.weights["model.decoder.embed_tokens.weight"])
    config = WhisperConfig(
        **dims,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=imported.suppress,
        begin_suppress_tokens=imported.begin_suppress or [220, eot],
        tie_word_embeddings=tied,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in imported.weights.items()}
    expected = set(model.state_dict())
    if tied:
        state.pop("proj_out.weight")
        expected.discard("proj_out.weight")
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise Ct2Error(f"the weights do not make a Whisper: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, value in state.items():
        if tuple(model.state_dict()[name].shape) != tuple(value.shape):
            raise Ct2Error(
                f"{name}: shape {tuple(value.shape)}, a Whisper of these sizes needs {tuple(model.state_dict()[name].shape)}"
            )
    model.load_state_dict(state, strict=False, assign=True)
    if tied:
        model.tie_weights()
    model.generation_config = generation_config(tok, config, imported.alignment_heads)
    chunk = dims["max_source_positions"] * WINDOW_FRAMES_PER_POSITION * HOP // SAMPLING_RATE
    extractor = WhisperFeatureExtractor(
        feature_size=dims["num_mel_bins"], sampling_rate=SAMPLING_RATE, chunk_length=chunk
    )
    save_pretrained(out, model, WhisperProcessor(feature_extractor=extractor, tokenizer=tok))
    params = sum(p.numel() for p in model.parameters())
    multilingual = bool(model.generation_config.is_multilingual)
    provenance = imported.provenance | {
        "parameters": params,
        "multilingual": multilingual,
        "imported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return {
        "parameters": params,
        "multilingual": multilingual,
        "vocab_size": dims["vocab_size"],
        "num_mel_bins": dims["num_mel_bins"],
        "format": provenance["format"],
    }


def generation_config(tokenizer, config, alignment_heads):
    """What `generate` and the pipeline read. A multilingual model gets lang_to_id/task_to_id; an English-only
    one none, since transformers runs language detection whenever lang_to_id exists."""
    from transformers import GenerationConfig
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ids, vocab = tokenizer.convert_tokens_to_ids, tokenizer.get_vocab()
    eot = ids("<|endoftext|>")
    multilingual = config.vocab_size > ENGLISH_ONLY_VOCAB
    layers, heads = config.decoder_layers, config.decoder_attention_heads
    extra = {}
    if multilingual:
        extra = dict(
            lang_to_id={f"<|{c}|>": ids(f"<|{c}|>") for c in LANGUAGES if f"<|{c}|>" in vocab},
            task_to_id={t: ids(f"<|{t}|>") for t in ("transcribe", "translate")},
            language="en",
            task="transcribe",
        )
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=config.max_target_positions,
        suppress_tokens=list(config.suppress_tokens or []),
        begin_suppress_tokens=list(config.begin_suppress_tokens or []),
        alignment_heads=alignment_heads or [[i, h] for i in range(layers // 2, layers) for h in range(heads)],
        is_multilingual=multilingual,
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        **extra,
    )


def _distribution(sources: list[Path]) -> dict:
    """The installed Python package a source sits in (name, version, licence, home page), when it does."""
    from importlib import metadata

    found = []
    tops = metadata.packages_distributions()
    for s in sources:
        parts = s.resolve().parts
        if "site-packages" not in parts:
            continue
        top = parts[parts.index("site-packages") + 1] if parts.index("site-packages") + 1 < len(parts) else ""
        for dist_name in tops.get(top, []):
            meta = metadata.metadata(dist_name)
            found.append(
                {
                    "name": meta["Name"],
                    "version": meta["Version"],
                    "license": meta.get("License-Expression") or meta.get("License"),
                    "urls": meta.get_all("Project-URL") or [],
                }
            )
    return {"packages": found} if found else {}
