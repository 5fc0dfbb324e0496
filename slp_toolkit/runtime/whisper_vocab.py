"""The real multilingual Whisper tokenizer without the Hub: converted from the tiktoken file of the
``openai-whisper`` package (ids match openai/whisper-tiny), cached under ``$XDG_CACHE_HOME/slp_toolkit``.
The file ships gzipped in resources/ (MIT, see resources/README.md), so runtime installs need nothing more.
"""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import tempfile
from pathlib import Path

import transformers
from tokenizers import AddedToken
from transformers import WhisperTokenizer
from transformers.models.whisper.tokenization_whisper import LANGUAGES

TIKTOKEN_FILE = Path(__file__).parents[1] / "resources" / "whisper_multilingual.tiktoken.gz"
WHISPER_VOCAB_SIZE = 51865
WHISPER_LANGUAGES = list(LANGUAGES)[:99]  # whisper-tiny..large-v2; v3 adds a 100th (yue)


def _specials(languages: int = 99) -> list[str]:
    """The special tokens after the text vocabulary: large-v3 (and its turbo) has a 100th language, <|yue|>,
    which moves every id after the languages up by one (vocab 51866)."""
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in list(LANGUAGES)[:languages]],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


_WHISPER_SPECIALS = _specials()
_WHISPER_TIMESTAMPS = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
WHISPER_EOT_ID = WHISPER_VOCAB_SIZE - len(_WHISPER_TIMESTAMPS) - len(_WHISPER_SPECIALS)  # 50257, <|endoftext|>


def cache_dir() -> Path:
    """Where converted tokenizer files live: $XDG_CACHE_HOME/slp_toolkit (default ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slp_toolkit"


def _tiktoken_text() -> str:
    try:
        return gzip.decompress(TIKTOKEN_FILE.read_bytes()).decode("ascii")
    except (OSError, EOFError) as err:
        raise FileNotFoundError(
            f"Whisper vocabulary {TIKTOKEN_FILE} unreadable ({err}): reinstall slp_toolkit"
        ) from None


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, the alphabet of byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}


def _last_merge(ranks: dict[bytes, int], token: bytes) -> list[bytes]:
    """Byte-level BPE of ``token`` with the merges ranked below it: the two halves of its own merge."""
    parts = [bytes([b]) for b in token]
    while True:
        pairs = [(ranks.get(a + b), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        best = min(((r, i) for r, i in pairs if r is not None and r < ranks[token]), default=None)
        if best is None:
            return parts
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


def _convert_tiktoken(content: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """tiktoken text (base64 token, rank per line) -> byte-level BPE vocab and merges in rank order."""
    lines = (line.split() for line in content.splitlines() if line)
    ranks = {base64.b64decode(token): int(rank) for token, rank in lines}
    byte_chars = _bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(byte_chars[b] for b in token)

    vocab, merges = {}, []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        vocab[text(token)] = rank  # rank 50256 is an empty token: kept so later ids stay in place
        if len(token) > 1:
            left, right = _last_merge(ranks, token)  # exactly two halves in a valid file
            merges.append((text(left), text(right)))
    return vocab, merges


def build_tokenizer(
    vocab: dict[str, int], merges: list[tuple[str, str]], specials: list[str], timestamps: int
) -> WhisperTokenizer:
    """A Whisper tokenizer from its byte-level BPE (vocab and merges), the special tokens in id order after
    the text vocabulary (<|endoftext|> first: its id follows the vocab when the vocab lacks it) and
    `timestamps` timestamp tokens <|0.00|>, <|0.02|>, ... after them."""
    vocab = dict(vocab)
    vocab.setdefault(specials[0], len(vocab))
    # pad = <|endoftext|> as on the Hub, so DataCollatorSpeechSeq2SeqWithPadding-style `tokenizer.pad` works
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, pad_token=specials[0])
    tokenizer.add_special_tokens(
        {"extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in specials]}
    )
    # Not special: the tokenizer takes ids above its last special id (<|notimestamps|>) as timestamps.
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(timestamps)]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in stamps])
    return tokenizer


def whisper_tokenizer_dir(languages: int = 99) -> Path:
    """The converted multilingual Whisper tokenizer (`languages` 100: large-v3's), built on first use and
    cached (~1 s, ~4 MB) per transformers version, whose tokenizer files older versions may not read."""
    v3 = "-v3" if languages == 100 else ""
    out = cache_dir() / f"whisper_tokenizer-2{v3}-transformers{transformers.__version__}"  # 2: pad token set
    if (out / "tokenizer.json").is_file():
        return out
    vocab, merges = _convert_tiktoken(_tiktoken_text())
    tokenizer = build_tokenizer(vocab, merges, _specials(languages), len(_WHISPER_TIMESTAMPS))
    expected = WHISPER_VOCAB_SIZE + languages - 99
    if len(tokenizer) != expected:
        raise RuntimeError(f"converted Whisper vocab has {len(tokenizer)} tokens, expected {expected}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent))
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, out)  # atomic, so a concurrent builder never sees half a directory
    except OSError:  # another process got there first
        shutil.rmtree(staging)
    return out
