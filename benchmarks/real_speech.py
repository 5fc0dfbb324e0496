"""Real human speech in four languages: Debian's Asterisk prompts (one studio voice per language, CC-BY-SA-3.0)
as audiofolders, and whisper-base zero-shot vs LoRA vs full fine-tune on them, with forgetting.

    apt-get install asterisk-core-sounds-{es,fr,it,ru}-g722 ffmpeg     # 16 kHz wideband, transcripts in /usr/share/doc
    python benchmarks/real_speech.py build                    # -> data/asterisk/<lang>/{train,test}
    python benchmarks/real_speech.py run es                   # zero-shot, LoRA, full; each scored on all four tests
    python benchmarks/real_speech.py table                    # the markdown table of benchmarks/README.md

Prompts are split by name (a stable hash: ~1 in 4 to test), so no test sentence is heard in training. Left out:
digits, letters and phonetic-alphabet folders, bracketed sound descriptions ("[tono simple]"), and prompts with
no letters. WER is Whisper's basic normaliser (lower case, no punctuation); `folded` also strips diacritics,
since the Spanish transcripts are written without accents ("numero", "contrasena") while Whisper writes them.
Every `slp` call is printed before it runs, so each row can be reproduced alone.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

SOUNDS, DOCS = Path("/usr/share/asterisk/sounds"), Path("/usr/share/doc")
LANGUAGES = {"es": "spanish", "fr": "french", "it": "italian", "ru": "russian"}
SKIP_DIRS = ("digits/", "letters/", "phonetic/", "silence/", "ha/")
OUT = Path("data/asterisk")
RUNS = Path("outputs/real_speech")
RESULTS = Path("benchmarks/results/real_speech.json")
SLP = [sys.executable, "-m", "slp_toolkit"]


def transcripts(lang: str) -> dict[str, str]:
    """prompt name -> text, from the package's core-sounds-<lang>.txt.gz (`name: text` lines, `;` comments)."""
    found = {}
    with gzip.open(DOCS / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz", "rt", encoding="utf-8") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if not sep or line.startswith(";"):
                continue
            name, text = name.strip(), text.strip()
            text = re.sub(rf"^{re.escape(name)}:\s*", "", text)  # a few Russian lines repeat their name
            if usable(name, text):
                found[name] = text
    return found


def usable(name: str, text: str) -> bool:
    return (
        bool(text) and not name.startswith(SKIP_DIRS) and "[" not in text and re.search(r"[^\W\d_]", text) is not None
    )


def is_test(name: str) -> bool:
    return zlib.crc32(name.encode()) % 4 == 0


def build(langs: list[str]) -> None:
    for lang in langs:
        texts, rows = transcripts(lang), {"train": [], "test": []}
        for name, text in sorted(texts.items()):
            src = SOUNDS / lang / f"{name}.g722"
            if not src.is_file():
                continue
            split = "test" if is_test(name) else "train"
            wav = OUT / lang / split / f"{name.replace('/', '__')}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            if not wav.is_file():
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "g722", "-i", str(src), "-ar", "16000", "-ac", "1",
                                str(wav)], check=True)  # fmt: skip
            rows[split].append({"file_name": wav.name, "transcription": text, "speaker": f"asterisk-{lang}"})
        for split, found in rows.items():
            with open(OUT / lang / split / "metadata.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=["file_name", "transcription", "speaker"])
                writer.writeheader()
                writer.writerows(found)
        print(f"{lang}: {len(rows['train'])} train / {len(rows['test'])} test prompts -> {OUT / lang}")


def slp(*args: str) -> float:
    print("+ slp " + " ".join(args), flush=True)
    began = time.perf_counter()
    subprocess.run([*SLP, *args], check=True)
    return time.perf_counter() - began


def score(model: str, lang: str, out: Path) -> dict:
    """`slp eval` on a language's test split, then WER/CER with diacritics folded from its predictions."""
    import jiwer
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    seconds = slp("eval", model, "--data", str(OUT / lang / "test"), "--language", LANGUAGES[lang],
                  "--output-dir", str(out))  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in open(out / "predictions.jsonl", encoding="utf-8")]
    fold = BasicTextNormalizer(remove_diacritics=True)
    refs, hyps = [fold(r["reference"]) for r in rows], [fold(r["prediction"]) for r in rows]
    keep = [i for i, r in enumerate(refs) if r.strip()]
    refs, hyps = [refs[i] for i in keep], [hyps[i] for i in keep]
    from slp_toolkit.metrics import loop_rate

    return {"wer": metrics["wer"], "cer": metrics["cer"], "wer_folded": jiwer.wer(refs, hyps),
            "loops": loop_rate(hyps, refs),
            "cer_folded": jiwer.cer(refs, hyps), "n": len(rows), "eval_seconds": round(seconds, 1)}  # fmt: skip


def run(lang: str, base: str, kinds: list[str], overrides: list[str], tag: str = "") -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    key = f"zero-shot/{lang}"
    if "zero-shot" in kinds and key not in results:
        results[key] = {"command": f"slp eval {base} --data {OUT / lang / 'test'} --language {LANGUAGES[lang]}",
                        "scores": {lang: score(base, lang, RUNS / "zero-shot" / lang)}}  # fmt: skip
        save(results)
    for kind in [k for k in kinds if k != "zero-shot"]:
        recipe, out = f"recipes/asr/whisper_base_{kind}.yaml", RUNS / f"{kind}{tag}-{lang}"
        args = [f"data.train={OUT / lang / 'train'}", f"data.eval={OUT / lang / 'test'}",
                f"model.language={LANGUAGES[lang]}", f"model.name_or_path={base}", f"output_dir={out}", *overrides]  # fmt: skip
        minutes = slp("train", recipe, *args) / 60
        scores = {
            other: score(str(out), other, out / "eval" / other) for other in [lang, *sorted(set(LANGUAGES) - {lang})]
        }
        results[f"{kind}{tag}/{lang}"] = {"command": f"slp train {recipe} " + " ".join(args),
                                     "train_minutes": round(minutes, 1), "scores": scores}  # fmt: skip
        save(results)


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    tmp.replace(RESULTS)


def table() -> None:
    results = json.loads(RESULTS.read_text())
    print(
        "| language | model | WER (folded) | CER (folded) | WER | loops | train min | others' folded WER after (zero-shot) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for lang in LANGUAGES:
        zero = {k.split("/")[1]: v["scores"][k.split("/")[1]] for k, v in results.items() if k.startswith("zero-shot/")}
        kinds = sorted(
            {k.split("/")[0] for k in results if k.endswith("/" + lang)},
            key=lambda k: (k != "zero-shot", k not in ("lora", "full"), k),
        )
        for kind in kinds:
            row = results.get(f"{kind}/{lang}")
            if row is None:
                continue
            s = row["scores"][lang]
            others = ", ".join(f"{o} {v['wer_folded']:.3f} ({zero[o]['wer_folded']:.3f})" if o in zero else
                               f"{o} {v['wer_folded']:.3f}" for o, v in row["scores"].items() if o != lang)  # fmt: skip
            loops = f"{s['loops']:.2f}" if "loops" in s else "-"
            print(f"| {lang} | {kind} | {s['wer_folded']:.3f} | {s['cer_folded']:.3f} | {s['wer']:.3f} | {loops} | "
                  f"{row.get('train_minutes', '-')} | {others or '-'} |")  # fmt: skip
    print()
    for line in verdicts(results):
        print(line)


FORGETTING = 0.10  # the bar: another language's folded WER at most 10 % (relative) above its zero-shot


def verdicts(results: dict) -> list[str]:
    """Per language and shipped recipe (`lora`, `full`): better than zero-shot on its own test, and each other
    language within FORGETTING of its zero-shot WER."""
    zero = {k.split("/")[1]: v["scores"][k.split("/")[1]]["wer_folded"] for k, v in results.items()
            if k.startswith("zero-shot/")}  # fmt: skip
    lines = []
    for lang in LANGUAGES:
        for kind in ("lora", "full"):
            row = results.get(f"{kind}/{lang}")
            if row is None or lang not in zero:
                lines.append(f"{lang} {kind}: not run")
                continue
            own = row["scores"][lang]["wer_folded"]
            worst = max(((v["wer_folded"] / zero[o] - 1, o) for o, v in row["scores"].items() if o != lang and o in zero),
                        default=(0.0, "-"))  # fmt: skip
            ok = own < zero[lang] and worst[0] <= FORGETTING
            lines.append(f"{lang} {kind}: {'met' if ok else 'NOT met'} (own {zero[lang]:.3f} -> {own:.3f}; "
                         f"most forgotten {worst[1]} {worst[0]:+.0%})")  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build")
    p.add_argument("langs", nargs="*", default=list(LANGUAGES))
    p = sub.add_parser("run")
    p.add_argument("lang", choices=list(LANGUAGES))
    p.add_argument("--base", default="models/whisper-base")
    p.add_argument("--kinds", default="zero-shot,lora,full")
    p.add_argument("--override", action="append", default=[], help="recipe override for both fine-tunes")
    p.add_argument("--tag", default="", help="a variant's name suffix (its results beside the recipe's own)")
    sub.add_parser("table")
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.langs)
    elif args.cmd == "run":
        run(args.lang, args.base, args.kinds.split(","), args.override, args.tag)
    else:
        table()


if __name__ == "__main__":
    main()
