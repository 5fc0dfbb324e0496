"""`slp`: a thin argparse front. User errors print one line and exit 2; no tracebacks."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from slp_toolkit.config import ConfigError, DataConfig, UserError, load_recipe, missing_paths, recipe_description
from slp_toolkit.inference.commands import add_model_commands, cmd_eval, split_name

EXIT_USER_ERROR = 2
log = logging.getLogger("slp")


def recipes_dir() -> Path:
    """Shipped recipes: the repo's `recipes/` next to the package (editable installs and clones)."""
    return Path(__file__).resolve().parent.parent / "recipes"


def find_recipe(name: str) -> Path:
    """A recipe path, or a shipped recipe's name as `slp ls` prints it (e.g. asr/ctc_quickstart)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (recipes_dir() / name, recipes_dir() / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{name}: recipe file not found (see `slp ls` for shipped recipes)")


def shipped_recipes() -> list[Path]:
    root = recipes_dir()
    return sorted(p for p in root.rglob("*.yaml") if p.parent.name != "accelerate") if root.is_dir() else []


# ---------------------------------------------------------------- commands
def cmd_ls(args) -> int:
    root = recipes_dir()
    rows = [(str(p.relative_to(root).with_suffix("")), recipe_description(p)) for p in shipped_recipes()]
    width = max((len(n) for n, _ in rows), default=0)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_cp(args) -> int:
    src = find_recipe(args.name)
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / src.name
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest}: already exists (pass --force to overwrite)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    print(f"copied {src} -> {dest}")
    return 0


def cmd_validate(args) -> int:
    path = find_recipe(args.recipe)
    recipe = load_recipe(path, args.overrides, check_paths=args.strict)
    print(f"{path}: ok (task {recipe.task}, output_dir {recipe.output_dir})")
    for problem in missing_paths(recipe, str(path)):
        print(f"note: {problem} (create it before `slp train`)")
    return 0


def cmd_train(args) -> int:
    recipe = load_recipe(find_recipe(args.recipe), args.overrides)  # validated before torch is imported
    from slp_toolkit.inference.evaluate import format_table
    from slp_toolkit.training.loop import train

    metrics = train(recipe, resume=args.resume)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(format_table(metrics))
        print(f"model saved to {recipe.output_dir}")
    return 0


def cmd_synth(args) -> int:
    from slp_toolkit.synth.corpus import make_corpus

    try:
        summary = make_corpus(
            args.out,
            n=args.n,
            voices=args.voices,
            unseen_voices=args.unseen_voices,
            seed=args.seed,
            noise_snr_db=args.noise_snr,
            reverb=args.reverb,
            sampling_rate=args.sampling_rate,
            task=args.task,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    except ValueError as err:
        raise ConfigError(f"slp data synth: {err}") from None
    from slp_toolkit.synth.corpus import summary_lines

    print("\n".join(summary_lines(summary)))
    return 0


def _data_cfg(args) -> DataConfig:
    from slp_toolkit.config import DataConfig

    return DataConfig(
        text_column=args.text_column,
        audio_column=args.audio_column,
        format=args.format,
        max_seconds=args.max_seconds,
        num_workers=args.workers,
    )


def cmd_inspect(args) -> int:
    from slp_toolkit.data.report import format_inspect, inspect_split

    png = Path(args.plot or f"{split_name(args.split)}_durations.png")
    info = inspect_split(args.split, _data_cfg(args), args.sampling_rate, png)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_inspect(info))
    return 0


def cmd_manifest(args) -> int:
    from slp_toolkit.data.report import to_manifest

    n = to_manifest(args.split, _data_cfg(args), Path(args.out))
    print(f"wrote {n} rows to {args.out} (use it as data.train / data.eval)")
    return 0


def cmd_merge(args) -> int:
    from slp_toolkit.training.lora import merge

    summary = merge(args.adapter, args.out)
    print(json.dumps(summary, indent=2))
    print(f"merged model saved to {args.out} (adapter {summary['adapter_mb']} MB, merged {summary['merged_mb']} MB)")
    return 0


def cmd_import(args) -> int:
    from slp_toolkit.runtime.whisper_import import import_model

    summary = import_model(args.sources, args.out, force=args.force)
    kind = "a multilingual" if summary["multilingual"] else "an English-only"
    print(f"imported {kind} Whisper ({summary['parameters']:,} parameters, {summary['format']}) into {args.out}")
    return 0


def cmd_export(args) -> int:
    from slp_toolkit.serve.export import export_ct2

    summary = export_ct2(args.model, args.out, quantization=args.quantization, force=args.force)
    print(
        f"exported {args.model} to {args.out} ({summary['format']}, {summary['mb']} MB); "
        f"serve it with faster-whisper: WhisperModel({args.out!r})"
    )
    return 0


def cmd_compare(args) -> int:
    from slp_toolkit.inference.evaluate import compare_table

    runs = []
    for item in args.runs:
        label, _, where = item.rpartition("=")
        path = Path(where)
        path = path / "metrics.json" if path.is_dir() else path
        try:
            runs.append((label or where, json.loads(path.read_text())))
        except (OSError, ValueError) as err:
            raise UserError(
                f"{path}: no readable metrics.json ({err.__class__.__name__}); run slp eval first"
            ) from None
    print(compare_table(runs))
    return 0


def cmd_tiny(args) -> int:
    from slp_toolkit.synth import checkpoints

    try:
        for line in checkpoints(args.out, args.full_size, args.family):
            print(line, flush=True)
    except ValueError as err:
        raise UserError(str(err)) from None
    return 0


def cmd_demo(args) -> int:
    from slp_toolkit.serve.demo import route, serve

    serve(route(args.models), args)
    return 0


def cmd_push(args) -> int:
    from slp_toolkit.serve import hub

    if args.dry_run:
        files = hub.stage(args.output_dir, args.dry_run, args.repo_id, space=args.space)
        for f in files:
            print(f"{Path(args.dry_run) / f}\t{(Path(args.dry_run) / f).stat().st_size} bytes")
        print(f"staged {len(files)} files in {args.dry_run} for {args.repo_id}; nothing uploaded (--dry-run)")
        return 0
    done = hub.push(args.output_dir, args.repo_id, private=args.private, space=args.space)
    print(f"pushed {len(done['files'])} files: " + "  ".join(done["urls"]))
    return 0


def _eval_or_folds(args) -> int:
    if args.folds:
        from slp_toolkit.training.folds import cmd_folds

        return cmd_folds(args)
    return cmd_eval(args)


# ---------------------------------------------------------------- helpers
def _quiet_libraries(verbose: bool) -> None:
    """Our own log lines say what happens; the libraries' per-call bars and INFO lines drown them."""
    if verbose:
        return
    for name in ("accelerate", "datasets", "transformers", "httpx", "matplotlib", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers 5's per-load "Loading weights" bars
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slp", description="Fine-tune speech models from recipes.")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="more logging (also the libraries')")
    noise.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="warnings and errors only (SLP_LOG_LEVEL sets the level too: DEBUG, INFO, WARNING, ERROR)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    _recipe_commands(sub)
    add_model_commands(sub, run_eval=_eval_or_folds)
    _tool_commands(sub)
    return parser


def _recipe_commands(sub) -> None:
    """ls, cp, validate, train."""
    p = sub.add_parser("ls", help="list shipped recipes with what they do")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("cp", help="copy a shipped recipe to edit it")
    p.add_argument("name", help="recipe name as `slp ls` prints it, e.g. asr/ctc_quickstart")
    p.add_argument("dest", help="file or directory to copy to")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_cp)
    for name, func, text in (
        ("validate", cmd_validate, "check a recipe (and overrides) without running it"),
        ("train", cmd_train, "train a recipe"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("recipe", help="recipe file or shipped recipe name")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.learning_rate=1e-4")
        if name == "train":
            p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
        else:
            p.add_argument("--strict", action="store_true", help="paths that do not exist yet are errors")
        p.set_defaults(func=func)


def _tool_commands(sub) -> None:
    """data (see _data_commands), merge, tiny, demo, push."""
    _data_commands(sub)
    p = sub.add_parser("merge", help="fold a LoRA adapter into its base -> a plain model dir for pipeline()")
    p.add_argument("adapter", help="adapter dir (output of a recipe with a lora: section)")
    p.add_argument("out", help="directory for the merged model")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("compare", help="metrics of several slp eval runs side by side (e.g. before and after)")
    p.add_argument("runs", nargs="+", metavar="[LABEL=]DIR", help="an eval output dir (or its metrics.json)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "import",
        help="a Whisper from CTranslate2 (faster-whisper) dirs or an openai-whisper .pt "
        "file -> a transformers dir for slp train / eval and pipeline()",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help="CTranslate2 model dir (model.bin or model.bin.part1, .part2... spread over one or more "
        "dirs), or one openai-whisper .pt checkpoint",
    )
    p.add_argument("out", help="directory to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace OUT")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="a trained Whisper (LoRA merged first) -> CTranslate2, for faster-whisper")
    p.add_argument("model", help="output dir of `slp train` (adapter dirs are merged), or any Whisper dir")
    p.add_argument("out", help="directory to write (refused if it exists, unless --force)")
    p.add_argument("--format", choices=["ct2"], default="ct2", help="ct2: CTranslate2 (needs pip install ctranslate2)")
    p.add_argument(
        "--quantization",
        choices=["float32", "float16", "int8", "int8_float32", "int8_float16", "int16"],
        default=None,
        help="weight type in the exported model (default: as the model is, float32)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("tiny", help="write tiny random-init checkpoints (for tests and offline trials)")
    p.add_argument("out")
    p.add_argument(
        "--full-size",
        action="append",
        metavar="NAME",
        help="instead: a full-size twin (published architecture, random weights) of a Hub checkpoint, e.g. "
        "openai/whisper-small, written to OUT/<basename>; repeatable, or `all`",
    )
    p.add_argument(
        "--family",
        action="append",
        metavar="TYPE",
        help="instead: a tiny random checkpoint of a transformers model type (wav2vec2-bert, parakeet_ctc, "
        "moonshine...) for each head it has (ctc, classification, seq2seq), as its Hub base ships; "
        "repeatable, or `all`",
    )
    p.set_defaults(func=cmd_tiny)

    from slp_toolkit.serve.demo import add_launch_args  # light: gradio is imported only when serving

    p = sub.add_parser("demo", help="Gradio demo: each model's task picks its tab (Transcribe, Synthesize, Emotion)")
    p.add_argument("models", nargs="+", help="output dirs, adapter dirs or Hub names; one per tab")
    add_launch_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("push", help="upload a run (weights, processor, recipe, metrics, plots, model card) to the Hub")
    p.add_argument("output_dir", help="output dir of `slp train`")
    p.add_argument("--repo-id", required=True, help="NAME or OWNER/NAME of the model repo")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--dry-run", default=None, metavar="STAGE_DIR", help="only stage the upload into STAGE_DIR")
    p.add_argument("--space", action="store_true", help="also a Gradio Space serving the model (STAGE_DIR/space)")
    p.set_defaults(func=cmd_push)


def _data_commands(sub) -> None:
    """slp data synth | inspect | ...: corpus tools."""
    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("synth", help="write a synthetic espeak-ng speech corpus (audiofolder splits)")
    p.add_argument("out", help="output directory")
    p.add_argument("--n", type=int, default=3000, help="number of utterances in all splits")
    p.add_argument("--voices", nargs="+", default=None, help="espeak-ng voices for train/validation/test")
    p.add_argument("--unseen-voices", nargs="+", default=None, help="voices for test_unseen only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-snr", type=float, default=None, help="add noise at this SNR in dB")
    p.add_argument("--reverb", type=float, default=0.0, help="share of clips put through a generated room (0-1)")
    p.add_argument("--sampling-rate", type=int, default=16000)
    p.add_argument("--task", choices=["asr", "emotion"], default="asr")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace a corpus already in OUT")
    p.set_defaults(func=cmd_synth)

    for name, func, text in (
        ("inspect", cmd_inspect, "rows, hours, durations (PNG), skipped rows, speakers and characters of a split"),
        ("manifest", cmd_manifest, "write a JSONL manifest from a local split (e.g. a LibriSpeech folder)"),
    ):
        p = data.add_parser(name, help=text)
        p.add_argument(
            "split",
            help="audiofolder, manifest, LibriSpeech folder" + (" or hf:NAME@SPLIT" if name == "inspect" else ""),
        )
        if name == "manifest":
            p.add_argument("out", help="the .jsonl file to write")
        else:
            p.add_argument("--sampling-rate", type=int, default=16000, help="decode at this rate (the model's)")
            p.add_argument("--plot", default=None, help="histogram PNG path (default: SPLIT_durations.png)")
            p.add_argument("--json", action="store_true", help="print the summary as JSON")
        p.add_argument("--format", choices=["auto", "librispeech"], default="auto")
        p.add_argument("--text-column", default=None)
        p.add_argument("--audio-column", default=None)
        p.add_argument("--max-seconds", type=float, default=20.0, help="longer clips count as filtered")
        p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1)")
        p.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "DEBUG" if args.verbose else "WARNING" if args.quiet else os.environ.get("SLP_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        print(f"error: SLP_LOG_LEVEL={level}: use DEBUG, INFO, WARNING or ERROR", file=sys.stderr)
        return EXIT_USER_ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    _quiet_libraries(args.verbose)
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `slp transcribe ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
