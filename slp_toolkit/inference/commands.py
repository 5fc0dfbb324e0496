"""The inference commands of `slp`: eval, transcribe, classify, synthesize and lm build. Each reads its
model through its Task and prints or writes what it found; user errors are ConfigError (one line)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from slp_toolkit.config import ConfigError, DataConfig
from slp_toolkit.data.splits import sampling_rate
from slp_toolkit.inference.evaluate import BATCH_SECONDS
from slp_toolkit.runtime.device import add_device_arg, with_precision

log = logging.getLogger("slp")


def cmd_eval(args) -> int:
    from slp_toolkit.data.splits import column
    from slp_toolkit.inference.evaluate import evaluate_split, format_table, load_for_eval, write_metrics
    from slp_toolkit.runtime.device import process_state
    from slp_toolkit.tasks import detect_task

    data_cfg = eval_data_config(args)

    task = detect_task(args.model)
    # under `accelerate launch` each process takes its GPU and a shard of the split; the main one scores
    state = process_state()
    device = str(state.device) if state.num_processes > 1 else args.device
    with state.main_process_first():  # the main process decodes the split into the cache, the others read it
        model, processor, ds = load_for_eval(task, args.model, args.data, data_cfg, args.max_samples, device)
    _language(task, args.model, model, processor, args.language)
    decoding = _decoding(task, args.model, model, processor, args)
    metrics, predictions = evaluate_split(decoding, model, processor, ds, args.batch_seconds, state)
    if decoding is not task:  # beam search: the greedy scores beside it, so the LM's gain is in one table
        greedy, _ = evaluate_split(
            _decoding(task, args.model, model, processor, args, greedy=True),
            model,
            processor,
            ds,
            args.batch_seconds,
            state,
        )
        if greedy is not None:
            metrics.update({f"{k}_greedy": v for k, v in greedy.items() if "/" not in k and k != "n"})
    if not state.is_main_process:
        return 0
    out = Path(args.output_dir or Path(args.model) / "eval" / split_name(args.data))
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, out / "metrics.json")
    from slp_toolkit.metrics import confusion_from_metrics

    if (confusion := confusion_from_metrics(metrics)) is not None:  # classifiers: confusion.png too
        from slp_toolkit.plots import plot_confusion

        plot_confusion(confusion[1], confusion[0], out / "confusion.png")
    if task.caps.report is not None:
        from slp_toolkit.inference.evaluate import examples_at

        task.caps.report(model, processor, predictions[:3], examples_at(ds, [0, 1, 2][: len(ds)]), out / "samples")
    with (out / "predictions.jsonl").open("w") as f:
        for path, ref, pred in zip(column(ds, "path"), _refs(ds), predictions, strict=True):
            f.write(json.dumps({"path": str(path), "reference": ref, "prediction": task.caps.summarize(pred)}) + "\n")
    print(format_table(metrics))
    print(f"metrics written to {out / 'metrics.json'}")
    return 0


def eval_data_config(args) -> DataConfig:
    """How `slp eval` (and `--folds`) reads a test split: its columns, clips up to --max-seconds, text as written."""
    return DataConfig(
        text_column=args.text_column,
        audio_column=args.audio_column,
        min_seconds=0.0,
        max_seconds=args.max_seconds,
        normalize_text=False,
    )


def cmd_transcribe(args) -> int:
    from slp_toolkit.inference.evaluate import predict_split
    from slp_toolkit.runtime.device import load_placed
    from slp_toolkit.tasks import detect_task

    task = detect_task(args.model)
    model, processor = load_placed(task, args.model, args.device)
    began = time.perf_counter()
    rows, ds, failed = _read_inputs(args.inputs, sampling_rate(processor))
    compute: list[float] = []
    if args.json and task.caps.timed is not None and args.decoder == "greedy":  # timestamps come with the greedy path
        import dataclasses

        task = dataclasses.replace(task, predict=task.caps.timed)
    _language(task, args.model, model, processor, args.language)
    decoding = _decoding(task, args.model, model, processor, args)
    predictions = predict_split(decoding, model, processor, ds, args.batch_seconds, compute=compute)
    for row, found, seconds in zip(rows, predictions, compute, strict=True):
        timed = found if isinstance(found, dict) else {"text": found}
        if args.json:
            rtf = seconds / max(row["duration"], 1e-9)
            print(
                json.dumps(
                    {
                        "path": row["path"],
                        **timed,
                        "audio_seconds": round(row["duration"], 3),
                        "compute_seconds": round(seconds, 4),
                        "rtf": round(rtf, 4),
                    },
                    ensure_ascii=False,
                )
            )
        else:
            print(f"{row['path']}\t{timed['text']}")
    audio, wall = sum(r["duration"] for r in rows), time.perf_counter() - began
    print(
        f"transcribed {len(rows)} files ({audio:.1f} s of audio) in {wall:.1f} s: real-time factor "
        f"{wall / max(audio, 1e-9):.3f} ({audio / max(wall, 1e-9):.1f}x real time){f'; {failed} skipped' if failed else ''}",
        file=sys.stderr,
    )
    return 1 if failed and args.strict else 0


def cmd_classify(args) -> int:
    import dataclasses
    from functools import partial

    from slp_toolkit.inference.evaluate import predict_split

    task, model, processor = _load(
        args.model, "audio-classification", "an audio classifier (see `slp transcribe`)", args.device
    )
    rows, ds, failed = _read_inputs(args.inputs, sampling_rate(processor))
    ranking = with_precision(
        dataclasses.replace(task, predict=partial(task.caps.ranked, k=args.top_k)), model, args.precision, args.model
    )
    for row, best in zip(rows, predict_split(ranking, model, processor, ds, args.batch_seconds), strict=True):
        if args.json:
            print(json.dumps({"path": row["path"], "labels": [{"label": lb, "score": s} for lb, s in best]}))
        else:
            print(f"{row['path']}\t" + "  ".join(f"{lb} {s:.3f}" for lb, s in best))
    return 1 if failed and args.strict else 0


def cmd_synthesize(args) -> int:
    import soundfile as sf

    task, model, processor = _load(args.model, "text-to-speech", "a text-to-speech model", args.device)
    example = {"text": args.text, "speaker": args.speaker or "", "vocoder": args.vocoder or ""}
    result = task.predict(model, processor, [example])[0]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, result["audio"], result["sampling_rate"], subtype="PCM_16")
    print(f"{out}\t{len(result['audio']) / result['sampling_rate']:.2f} s at {result['sampling_rate']} Hz")
    return 0


# ---------------------------------------------------------------- helpers
def _load(model_dir: str, tag: str, what: str, device: str) -> tuple:
    """(task, model, processor) of a model dir whose task serves `tag`, the model on `device`; else one line
    saying what it is."""
    from slp_toolkit.runtime.device import load_placed
    from slp_toolkit.tasks import detect_task

    task = detect_task(model_dir)
    if task.pipeline_tag != tag:
        raise ConfigError(f"{model_dir}: a {task.name} model, not {what}")
    return task, *load_placed(task, model_dir, device)


def _language(task, model_dir: str, model, processor, language: str | None) -> None:
    if language is None:
        return
    if task.caps.set_language is None:
        raise ConfigError(f"{model_dir}: --language is for Whisper models, not {task.name}")
    task.caps.set_language(model, processor, language)


def _decoding(task, model_dir: str, model, processor, args, greedy: bool = False):
    """The task as is (greedy), or with the beam-search predict `--decoder beam` asks for, under bf16
    autocast when `--precision` asks for it (auto: on a GPU with bf16)."""
    import dataclasses

    task = with_precision(task, model, args.precision, model_dir)
    if args.decoder == "greedy" or greedy:
        if args.lm:
            raise ConfigError("--lm needs --decoder beam")
        return task
    if task.caps.beam is None:
        raise ConfigError(f"{model_dir}: --decoder beam is for CTC models, not {task.name}")
    from slp_toolkit.lm import LM_FILE, BeamSettings

    lm = args.lm or (str(Path(model_dir) / LM_FILE) if (Path(model_dir) / LM_FILE).is_file() else None)
    log.info("beam search (beam %d) %s", args.beam_size, f"with LM {lm} (weight {args.lm_weight:g})" if lm else "")
    settings = BeamSettings(lm=lm, beam_size=args.beam_size, lm_weight=args.lm_weight, word_bonus=args.word_bonus)
    return dataclasses.replace(task, predict=task.caps.beam(processor, settings))


def cmd_lm_build(args) -> int:
    from slp_toolkit.lm import LM_FILE, texts_of, write_lm
    from slp_toolkit.tasks import detect_task

    task = detect_task(args.model)
    if task.caps.beam is None:
        raise ConfigError(f"{args.model}: a {task.name} model; an LM is for CTC models' beam search")
    _, processor = task.load(args.model)
    out = write_lm(
        texts_of(args.text), processor.tokenizer.get_vocab(), Path(args.out or Path(args.model) / LM_FILE), args.order
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, order {args.order}); use it with --decoder beam")
    return 0


def add_decoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=["greedy", "beam"], default="greedy", help="CTC decoding")
    p.add_argument("--lm", default=None, help="ARPA LM for beam search (default: MODEL/language_model/lm.arpa)")
    p.add_argument("--beam-size", type=int, default=32)
    p.add_argument("--lm-weight", type=float, default=1.0, help="LM weight (beam search; tune on validation)")
    p.add_argument("--word-bonus", type=float, default=0.0, help="score added per word (beam search)")
    p.add_argument(
        "--language",
        default=None,
        help="Whisper: the language to decode in (e.g. spanish, es), instead of the model's own",
    )
    add_precision_args(p)


def add_precision_args(p: argparse.ArgumentParser) -> None:
    """--device and --precision, for every command that runs a model."""
    from slp_toolkit.runtime.device import add_device_arg, add_precision_arg

    add_device_arg(p)
    add_precision_arg(p)


def _read_inputs(inputs: list[str], rate: int):
    """Decode files/dirs for inference; unreadable ones are reported and skipped, not fatal."""
    import datasets

    from slp_toolkit.data.splits import AudioError, read_audio

    rows, failed = [], 0
    for path in _audio_files(inputs):
        try:
            wave = read_audio(path, rate)
        except AudioError as err:
            print(f"{path}: skipped ({err})", file=sys.stderr)
            failed += 1
            continue
        rows.append({"audio": wave, "duration": len(wave) / rate, "path": str(path)})
    if not rows:
        raise ConfigError(f"{' '.join(inputs)}: no readable audio files")
    return rows, datasets.Dataset.from_list(rows).with_format("numpy"), failed


def _refs(ds) -> list[str]:
    from slp_toolkit.data.splits import column

    for name in ("raw_text", "text", "label"):
        if name in ds.column_names:
            return [str(x) for x in column(ds, name)]
    return [""] * len(ds)


def split_name(spec: str) -> str:
    name = Path(spec.split("@")[-1]).name or "data"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _audio_files(inputs: list[str]) -> list[Path]:
    from slp_toolkit.data.splits import AUDIO_EXTENSIONS

    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            files.append(p)
    return files


BATCH_HELP = (
    f"audio seconds per batch (default {BATCH_SECONDS['cpu']:g} on CPU, where small batches run faster, "
    f"{BATCH_SECONDS['other']:g} on a GPU)"
)


def add_model_commands(sub, run_eval) -> None:
    """`slp` subcommands of a trained model: eval (`run_eval`: the CLI's, which also runs --folds), transcribe,
    lm, classify, synthesize."""
    p = sub.add_parser("eval", help="evaluate a trained model on a split -> metrics.json")
    p.add_argument("model", help="output dir of `slp train` (or a Hub name)")
    p.add_argument("--data", required=True, help="audiofolder dir, .csv/.jsonl manifest or hf:NAME[:CONFIG]@SPLIT")
    p.add_argument("--text-column", default=None)
    p.add_argument("--audio-column", default=None)
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument(
        "--max-seconds",
        type=float,
        default=float("inf"),
        help="leave longer clips out of the score (default: none; a test split is scored whole, clips "
        "longer than a model's window decoded long-form)",
    )
    p.add_argument("--batch-seconds", type=float, default=None, help=BATCH_HELP)
    p.add_argument("--output-dir", default=None, help="default: MODEL/eval/<split name>")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="speaker-independent K-fold: retrain the model's recipe on K-1 speaker groups of --data, "
        "test on the held-out one (in MODEL/folds/fold-i); report mean ± std",
    )
    p.add_argument(
        "--fold-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override for every fold's training, e.g. train.max_minutes=2 (repeatable)",
    )
    add_decoder_args(p)
    p.set_defaults(func=run_eval)

    p = sub.add_parser("transcribe", help="transcribe audio files with a trained ASR model")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", help="audio files or directories")
    p.add_argument("--batch-seconds", type=float, default=None, help=BATCH_HELP)
    p.add_argument(
        "--json", action="store_true", help="one JSON object per line, with word (CTC) or chunk (Whisper) timestamps"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any file was unreadable")
    add_decoder_args(p)
    p.set_defaults(func=cmd_transcribe)

    lm = sub.add_parser("lm", help="language models for CTC beam search").add_subparsers(
        dest="lm_command", required=True
    )
    p = lm.add_parser("build", help="a character n-gram LM of a split's transcripts -> MODEL/language_model/lm.arpa")
    p.add_argument("model", help="the CTC model dir whose tokens the LM is over")
    p.add_argument("--text", required=True, help="split (audiofolder, manifest) whose transcripts to use, or a .txt")
    p.add_argument("--order", type=int, default=6, help="n-gram order (characters)")
    p.add_argument("--out", default=None, help="default: MODEL/language_model/lm.arpa")
    p.set_defaults(func=cmd_lm_build)

    p = sub.add_parser("classify", help="top-k labels with probabilities from a trained audio classifier")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", help="audio files or directories")
    p.add_argument("--top-k", type=int, default=3, help="how many labels to print per file")
    p.add_argument("--batch-seconds", type=float, default=None, help=BATCH_HELP)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--strict", action="store_true", help="exit 1 if any file was unreadable")
    add_precision_args(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("synthesize", help="speak a sentence with a trained text-to-speech model -> a wav file")
    p.add_argument("model", help="output dir of a tts recipe")
    p.add_argument("text")
    p.add_argument("--speaker", default=None, help="a speaker of the model's table, or a .npy speaker embedding")
    p.add_argument("-o", "--output", default="out.wav", help="wav file to write (16-bit PCM)")
    p.add_argument("--vocoder", default=None, help="griffin-lim, or a SpeechT5HifiGan dir / Hub name")
    add_device_arg(p)
    p.set_defaults(func=cmd_synthesize)
