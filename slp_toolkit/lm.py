"""CTC beam search with an optional character n-gram language model.

    slp lm build MODEL --text data/synth/train [--order 6]     -> MODEL/language_model/lm.arpa
    slp eval MODEL --data SPLIT --decoder beam                  greedy and beam (+LM) scores side by side
    slp transcribe MODEL FILES --decoder beam [--lm PATH]

The LM is over the model's own CTC tokens (characters, `|` between words), built from training
transcripts: a character LM keeps the vocabulary open (a word never seen in the text can still be
spelt) while it prefers the spellings the text holds. It is an ARPA file (interpolated absolute
discounting, Ney's discount per order), read by KenLM inside torchaudio's `ctc_decoder` (flashlight-text)
in lexicon-free mode. transformers' own LM path (Wav2Vec2ProcessorWithLM) needs pyctcdecode, which pins
numpy<2 and cannot be installed beside this stack; `pipeline()` on a model dir decodes greedily.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slp_toolkit.errors import UserError

START, END, UNK = "<s>", "</s>", "<unk>"
LM_FILE = Path("language_model") / "lm.arpa"


class DecoderError(UserError):
    """The beam decoder cannot be set up (no flashlight-text, no LM file...); one line says why."""


@dataclass(frozen=True)
class BeamSettings:
    lm: str | None = None
    beam_size: int = 32
    lm_weight: float = 1.0
    word_bonus: float = 0.0  # added at every word boundary: offsets the LM's pull towards fewer words


# ---------------------------------------------------------------- building the LM
def token_sentences(texts: Iterable[str], vocab: dict[str, int], delimiter: str = "|") -> Iterable[list[str]]:
    """Each text as the model's tokens: characters of its vocabulary (case fitted), spaces as `delimiter`."""
    upper = sum(t.isupper() for t in vocab if len(t) == 1 and t.isalpha()) > len(vocab) / 4
    for text in texts:
        text = " ".join((text.upper() if upper else text.lower()).split())
        tokens = [delimiter if c == " " else c for c in text if c == " " or c in vocab]
        if tokens:
            yield tokens


def build_arpa(sentences: Iterable[list[str]], order: int) -> str:
    """An interpolated absolute-discounting n-gram model of `sentences`, in ARPA format."""
    counts: list[Counter] = [Counter() for _ in range(order + 1)]
    for tokens in sentences:
        padded = [START, *tokens, END]
        for k in range(1, order + 1):
            for i in range(1 if k == 1 else 0, len(padded) - k + 1):  # <s> is a history, never a unigram
                counts[k][tuple(padded[i : i + k])] += 1
    if not counts[1]:
        raise DecoderError("no text to build a language model from")
    prob: list[dict] = [{} for _ in range(order + 1)]
    total = sum(counts[1].values()) + 0.5  # <unk> gets half a count; <s> is never predicted
    prob[1] = {g: c / total for g, c in counts[1].items()}
    prob[1][(START,)], prob[1][(UNK,)] = 0.0, 0.5 / total
    backoff: list[dict] = [{} for _ in range(order + 1)]
    for k in range(2, order + 1):
        prob[k], backoff[k - 1] = _interpolate(counts[k], prob[k - 1], _discount(counts[k]))
    return _arpa(prob, backoff, order)


def _discount(counts: Counter) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return min(0.9, max(0.1, n1 / (n1 + 2 * n2))) if n1 + n2 else 0.5


def _interpolate(counts: Counter, lower: dict, d: float) -> tuple[dict, dict]:
    """p(w|h) for every seen (h, w), and the backoff weight of every history h."""
    by_history: dict[tuple, list] = defaultdict(list)
    for gram, c in counts.items():
        by_history[gram[:-1]].append((gram[-1], c))
    prob, backoff = {}, {}
    for h, followers in by_history.items():
        total = sum(c for _, c in followers)
        left = d * len(followers) / total
        seen_p, seen_lower = 0.0, 0.0
        for w, c in followers:
            p_lower = lower.get((*h[1:], w), 0.0)
            prob[(*h, w)] = max(c - d, 0.0) / total + left * p_lower
            seen_p += prob[(*h, w)]
            seen_lower += p_lower
        backoff[h] = max(1.0 - seen_p, 1e-12) / max(1.0 - seen_lower, 1e-12)
    return prob, backoff


def _arpa(prob: list[dict], backoff: list[dict], order: int) -> str:
    lines = ["\\data\\"] + [f"ngram {k}={len(prob[k])}" for k in range(1, order + 1)] + [""]
    for k in range(1, order + 1):
        lines.append(f"\\{k}-grams:")
        for gram, p in sorted(prob[k].items()):
            logp = -99.0 if p <= 0 else math.log10(p)
            entry = f"{logp:.6f}\t{' '.join(gram)}"
            if k < order:
                entry += f"\t{math.log10(backoff[k].get(gram, 1.0)):.6f}"
            lines.append(entry)
        lines.append("")
    lines.append("\\end\\")
    return "\n".join(lines) + "\n"


def texts_of(spec: str) -> list[str]:
    """Transcripts of a split (audiofolder, manifest, LibriSpeech folder), or the lines of a .txt file."""
    from slp_toolkit.config import DataConfig
    from slp_toolkit.data.splits import iter_rows
    from slp_toolkit.data.text import normalize_text

    if spec.endswith(".txt"):
        if not Path(spec).is_file():
            raise DecoderError(f"{spec}: no such file")
        return [line for line in Path(spec).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows, _ = iter_rows(spec, DataConfig(), ("text",))
    return [normalize_text(r.fields["text"]) for r in rows]


def write_lm(texts: Iterable[str], vocab: dict[str, int], out: Path, order: int = 6) -> Path:
    """Build the LM of `texts` over `vocab` and write it atomically to `out`."""
    text = build_arpa(token_sentences(texts, vocab), order)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out


# ---------------------------------------------------------------- decoding
def beam_decoder(processor, settings: BeamSettings):
    """torchaudio's lexicon-free CTC beam search over the model's tokens, with the LM when one is given."""
    try:
        from torchaudio.models.decoder import ctc_decoder
    except ImportError as err:  # flashlight-text missing
        raise DecoderError(f"beam search needs flashlight-text (pip install flashlight-text): {err}") from None
    if settings.lm and not Path(settings.lm).is_file():
        raise DecoderError(f"--lm {settings.lm}: no such file (build one with `slp lm build MODEL --text SPLIT`)")
    tok = processor.tokenizer
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    lm_dict = None
    if settings.lm:
        # Without lm_dict, torchaudio builds the LM's word list with flashlight's create_word_dict, which
        # reorders it: token i is then scored as another token (measured: "c" scored as "k", and the LM
        # did nothing). A list in token order keeps LM index == token index.
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join([*tokens, UNK]) + "\n")
        lm_dict = f.name
    try:
        return ctc_decoder(
            lexicon=None,
            tokens=tokens,
            lm=settings.lm,
            lm_dict=lm_dict,
            beam_size=settings.beam_size,
            lm_weight=settings.lm_weight,
            sil_score=settings.word_bonus,
            blank_token=tok.pad_token,
            sil_token=tok.word_delimiter_token,
            unk_word=UNK,  # the LM's own unknown (KenLM looks it up by this name)
        )
    finally:
        if lm_dict:
            Path(lm_dict).unlink(missing_ok=True)  # read when the decoder is made


def beam_texts(decoder, processor, emissions: list) -> list[str]:
    """The best hypothesis of each (frames x vocab) log-probability array, as text."""
    import torch

    texts = []
    for e in emissions:
        e = torch.as_tensor(np.asarray(e), dtype=torch.float32).log_softmax(-1).unsqueeze(0).contiguous()
        best = decoder(e)[0][0]
        ids = [int(i) for i in best.tokens if int(i) != processor.tokenizer.pad_token_id]
        texts.append(" ".join(processor.tokenizer.decode(ids, group_tokens=False).split()))
    return texts
