"""Speaker-independent K-fold evaluation: `slp eval MODEL --data SPLIT --folds K`.

The speakers of SPLIT are dealt into K groups of similar size. Fold i retrains the model's own recipe
(MODEL/recipe.yaml, with the data swapped for manifests of the other K-1 groups) into
MODEL/folds/fold-i and tests it on group i, which no fold model heard in training. The report is the
mean and standard deviation over folds of every headline metric (UA and macro-F1 for emotion).

No split is held out for model selection: each fold trains for the recipe's budget and the final
weights are tested (picking the best step on the test group would flatter the result). A rerun reuses
a fold whose recipe and manifests are unchanged, and resumes one that stopped mid-training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from slp_toolkit.config import DataConfig, Recipe, UserError, load_recipe

log = logging.getLogger("slp")


class FoldsError(UserError):
    """K-fold evaluation cannot run on this model or data; the message says why."""


def speaker_groups(speakers: list[str], k: int) -> list[list[str]]:
    """Deal speakers into k groups of similar clip counts: the speaker with most clips goes to the
    group with fewest so far. Deterministic; each group sorted."""
    groups: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for speaker, n in sorted(Counter(speakers).items(), key=lambda item: (-item[1], item[0])):
        i = min(range(k), key=lambda j: (sizes[j], j))
        groups[i].append(speaker)
        sizes[i] += n
    return [sorted(g) for g in groups]


def run_folds(
    model_dir: str | Path,
    data: str,
    k: int,
    overrides: list[str] | None = None,
    data_cfg: DataConfig | None = None,
    batch_seconds: float | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> dict:
    """Train and test K speaker-independent folds of the recipe saved in `model_dir`; returns the
    summary also written to MODEL/folds/metrics.json. `overrides` (key=value) change the recipe of
    every fold (e.g. a shorter train.max_minutes); `data_cfg` says how to read `data` (columns) and
    how long a test clip may be; `device` and `precision` how each fold's model is tested (training places
    itself)."""
    from slp_toolkit.tasks import get_task

    model_dir, data_cfg = Path(model_dir), data_cfg or DataConfig(min_seconds=0.0, max_seconds=60.0)
    saved = model_dir / "recipe.yaml"
    if not saved.is_file():
        raise FoldsError(f"{model_dir}: no recipe.yaml; --folds retrains the recipe of a model made by `slp train`")
    recipe = load_recipe(saved, overrides, check_paths=False)
    task = get_task(recipe.task)
    rows = _rows(data, data_cfg, task.needs)
    speakers = [r["speaker"] for r in rows]
    if k < 2 or k > len(set(speakers)):
        raise FoldsError(
            f"{data}: --folds must be between 2 and the number of speakers ({len(set(speakers))}), got {k}"
        )
    if any(f.name == "labels" for f in dataclasses.fields(recipe.model)) and recipe.model.labels is None:
        # one label set for every fold, even where a fold's training speakers lack a rare class
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, labels=_labels(rows)))
    results = []
    for i, group in enumerate(speaker_groups(speakers, k), 1):
        held = set(group)
        fold_dir = model_dir / "folds" / f"fold-{i}"
        log.info("fold %d/%d: testing on %s", i, k, ", ".join(group))
        train_rows = [r for r in rows if r["speaker"] not in held]
        test_rows = [r for r in rows if r["speaker"] in held]
        fold = _fold_recipe(recipe, fold_dir, task.needs)
        _train_fold(fold, fold_dir, train_rows, test_rows)
        results.append(_test_fold(task, fold, fold_dir, data_cfg, (batch_seconds, device, precision), group))
    summary = summarize(results)
    out = model_dir / "folds"
    from slp_toolkit.inference.evaluate import write_metrics

    write_metrics(summary, out / "metrics.json")
    _plot(summary, out / "confusion.png")
    return summary


def _rows(spec: str, cfg: DataConfig, needs: tuple[str, ...]) -> list[dict]:
    from slp_toolkit.data.splits import iter_rows

    if spec.startswith("hf:"):
        raise FoldsError(f"{spec}: --folds needs a local audiofolder or manifest (fold manifests list audio files)")
    rows, src = iter_rows(spec, cfg, needs)
    if "speaker" not in rows[0].fields:
        raise FoldsError(f"{src}: --folds splits by speaker, but the data has no {cfg.speaker_column!r} column")
    out = []
    for row in rows:
        audio = str(Path(row.source).resolve()) if row.source else ""
        out.append({"audio": audio, **{k: row.fields[k] for k in (*needs, "speaker")}})
    return out


def _labels(rows: list[dict]) -> list[str]:
    return sorted({r["label"] for r in rows if r["label"].strip()})


def _fold_recipe(recipe: Recipe, fold_dir: Path, needs: tuple[str, ...]) -> Recipe:
    data = dataclasses.replace(
        recipe.data,
        train=str(fold_dir / "train.jsonl"),
        eval=None,
        audio_column="audio",
        text_column="text" if "text" in needs else None,
        label_column="label",
        speaker_column="speaker",
    )
    return dataclasses.replace(recipe, data=data, output_dir=str(fold_dir))


def _manifest(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _train_fold(fold: Recipe, fold_dir: Path, train_rows: list[dict], test_rows: list[dict]) -> None:
    """Train unless an identical fold already finished; resume one that stopped; start over otherwise."""
    from slp_toolkit.training.checkpoint import checkpoints
    from slp_toolkit.training.loop import train

    texts = {"train.jsonl": _manifest(train_rows), "test.jsonl": _manifest(test_rows)}
    same = (fold_dir / "recipe.yaml").is_file() and all(
        (fold_dir / name).is_file() and (fold_dir / name).read_text(encoding="utf-8") == text
        for name, text in texts.items()
    )
    if same and load_recipe(fold_dir / "recipe.yaml", check_paths=False) != fold:
        same = False
    if not same:
        shutil.rmtree(fold_dir, ignore_errors=True)
    fold_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (fold_dir / name).write_text(text, encoding="utf-8")
    if same and (fold_dir / "metrics.json").is_file():
        log.info("%s: already trained with this recipe and data; reusing it", fold_dir)
        return
    train(fold, resume=bool(checkpoints(fold_dir)))


def _test_fold(task, fold: Recipe, fold_dir: Path, data_cfg: DataConfig, how: tuple, group) -> dict:
    """The fold's model tested on its held-out speakers; `how` is (batch_seconds, device)."""
    from slp_toolkit.inference.evaluate import evaluate_split, load_for_eval, write_metrics
    from slp_toolkit.runtime.device import with_precision

    batch_seconds, device, precision = how
    cfg = dataclasses.replace(
        data_cfg,
        audio_column="audio",
        text_column=fold.data.text_column,
        label_column="label",
        speaker_column="speaker",
    )
    model, processor, ds = load_for_eval(task, str(fold_dir), str(fold_dir / "test.jsonl"), cfg, device=device)
    metrics, _ = evaluate_split(
        with_precision(task, model, precision, str(fold_dir)), model, processor, ds, batch_seconds
    )
    out = fold_dir / "eval"
    out.mkdir(exist_ok=True)
    write_metrics({**metrics, "speakers": ", ".join(group)}, out / "metrics.json")
    _plot(metrics, out / "confusion.png")
    return metrics


def summarize(results: list[dict]) -> dict:
    """Mean and standard deviation (ddof=1) over folds of each headline metric, the per-fold values,
    and the confusion counts summed over folds."""
    head = [k for k, v in results[0].items() if "/" not in k and k != "n" and isinstance(v, (int, float))]
    summary: dict = {"folds": len(results), "n": int(sum(r.get("n", 0) for r in results))}
    for key in head:
        values = np.asarray([r[key] for r in results], dtype=np.float64)
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    for i, r in enumerate(results, 1):
        summary.update({f"fold-{i}/{key}": r[key] for key in head})
    labels = sorted({k[len("support/") :] for r in results for k in r if k.startswith("support/")})
    summed = [f"support/{a}" for a in labels] + [f"confusion/{a}/{b}" for a in labels for b in labels]
    summary.update({k: int(sum(r.get(k, 0) for r in results)) for k in summed})
    return summary


def headline(summary: dict, keys: tuple[str, ...] = ("ua", "macro_f1", "wa", "cer", "wer")) -> str:
    """'ua 0.8120 ± 0.0340, macro_f1 ...' for the keys the summary has."""
    parts = [f"{k} {summary[k + '_mean']:.4f} ± {summary[k + '_std']:.4f}" for k in keys if k + "_mean" in summary]
    return f"{summary['folds']} speaker-independent folds: " + ", ".join(parts)


def _plot(metrics: dict, path: Path) -> None:
    from slp_toolkit.metrics import confusion_from_metrics

    found = confusion_from_metrics(metrics)
    if found is not None:
        from slp_toolkit.plots import plot_confusion

        plot_confusion(found[1], found[0], path)


def cmd_folds(args) -> int:
    """`slp eval MODEL --data SPLIT --folds K`: retrain the model's recipe on K speaker-independent folds."""
    from slp_toolkit.inference.commands import eval_data_config
    from slp_toolkit.inference.evaluate import format_table

    summary = run_folds(
        args.model,
        args.data,
        args.folds,
        args.fold_override,
        eval_data_config(args),
        args.batch_seconds,
        args.device,
        args.precision,
    )
    print(format_table({k: v for k, v in summary.items() if not k.startswith(("confusion/", "support/"))}))
    print(headline(summary))
    print(f"metrics written to {Path(args.model) / 'folds' / 'metrics.json'}")
    return 0
