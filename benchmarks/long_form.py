"""Long-form decoding against the same clips decoded one by one: clips of a split joined into one file of
>= 3 minutes (with silence, or noise, between them), decoded by `slp transcribe`'s long-form path, and
scored against the joined references; the clips alone (with the same noise) are the yardstick.

    python benchmarks/long_form.py [--model outputs/ctc_quickstart] [--split data/synth/test_unseen]

Prints one row per condition: gap between clips (s, or "rand" for 0.1-1.5 s), SNR of white noise over the
whole file (none: clean), clips, CER long-form, CER clip by clip and their difference (goal <= 0.02).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf

CONDITIONS = [(0.0, None), (0.3, None), (1.0, None), (0.3, 20), (0.3, 10), ("rand", 15)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="outputs/ctc_quickstart", help="a trained CTC or Whisper model dir")
    p.add_argument("--split", default="data/synth/test_unseen", help="a split with metadata.csv")
    p.add_argument("--minutes", type=float, default=3.0)
    args = p.parse_args()

    from slp_toolkit.data.text import normalize_text as norm
    from slp_toolkit.metrics import error_rates
    from slp_toolkit.tasks import detect_task

    task = detect_task(args.model)
    model, processor = task.load(args.model)
    rate = processor.feature_extractor.sampling_rate
    split = Path(args.split)
    with (split / "metadata.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    print("| gap s | SNR dB | clips | CER long-form | CER clip by clip | difference |\n|---|---|---|---|---|---|")
    for gap, snr in CONDITIONS:
        parts, clips, refs = [], [], []
        for row in rows:
            wave, clip_rate = sf.read(split / row["file_name"], dtype="float32")
            assert clip_rate == rate, f"{row['file_name']}: {clip_rate} Hz, the model hears {rate} Hz"
            seconds = rng.uniform(0.1, 1.5) if gap == "rand" else gap
            parts += [wave, np.zeros(int(seconds * rate), np.float32)]
            clips.append(wave)
            refs.append(row["transcription"])
            if sum(len(x) for x in parts) >= args.minutes * 60 * rate:
                break
        sigma = 0.0 if snr is None else float(np.sqrt(np.mean(np.concatenate(clips) ** 2) / 10 ** (snr / 10)))

        def noisy(x: np.ndarray, sigma: float = sigma) -> np.ndarray:
            return (x + sigma * rng.standard_normal(len(x))).astype(np.float32) if sigma else x

        reference = norm(" ".join(refs))
        [joined] = task.predict(model, processor, [{"audio": noisy(np.concatenate(parts))}])
        alone = task.predict(model, processor, [{"audio": noisy(c)} for c in clips])
        long_cer = error_rates([norm(joined)], [reference])["cer"]
        clip_cer = error_rates([norm(" ".join(alone))], [reference])["cer"]
        print(
            f"| {gap} | {snr or 'none'} | {len(clips)} | {long_cer:.4f} | {clip_cer:.4f} | {long_cer - clip_cer:+.4f} |"
        )


if __name__ == "__main__":
    main()
