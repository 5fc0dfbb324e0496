"""`slp push`: stage exactly what a run puts on the Hub, then upload it (or stop there with --dry-run).

Staged from an output dir of `slp train`:
- weights: model*.safetensors (+ index) and config.json; for a LoRA run only the adapter
  (adapter_model.safetensors + adapter_config.json), with the base named in the card's base_model;
- processor and tokenizer files, generation_config.json;
- recipe.yaml (resolved), metrics.json, plots (*.png), and eval/<split>/metrics.json + plots;
- README.md: a model card whose metadata carries library_name, pipeline_tag, tags, datasets, base_model
  and a model-index with every headline metric of every metrics.json (per-speaker and per-class
  breakdowns go in the card's tables).
Never staged: checkpoints/, best/, base/, tensorboard/, history.json (curves.png plots it) and
predictions.jsonl (local paths and data). With --space, STAGE/space holds a Gradio Space (app.py,
requirements.txt, README.md) that serves the model repo with plain transformers.

The token comes from `huggingface_hub.get_token()` (HF_TOKEN, or `hf auth login`) and goes to the
client only: it is never printed, logged or written.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from slp_toolkit.config import Recipe, UserError, load_recipe

WEIGHT_FILES = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json", "config.json")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
PROCESSOR_FILES = (
    "processor_config.json", "preprocessor_config.json", "tokenizer_config.json", "tokenizer.json",
    "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json", "normalizer.json",
    "*.model", "*.tiktoken", "generation_config.json", "tts_config.json", "speaker_embeddings/*",
)  # fmt: skip
RUN_FILES = ("recipe.yaml", "metrics.json", "*.png", "eval/*/metrics.json", "eval/*/*.png")
BOOKKEEPING = {"step", "best_step", "elapsed_s", "audio_seconds_per_second", "n", "epoch"}  # not model-index metrics
METRIC_NAMES = {
    "wer": "WER (normalised text)",
    "cer": "CER (normalised text)",
    "wer_raw": "WER (raw text)",
    "cer_raw": "CER (raw text)",
    "wa": "WA (accuracy)",
    "accuracy": "Accuracy",
    "ua": "UA (unweighted accuracy)",
    "macro_f1": "Macro F1",
    "mcd": "MCD (dB)",
    "mcd_sl": "MCD-DTW-SL (dB)",
    "length_ratio": "Length ratio (synthesised / recorded)",
    "roundtrip_cer": "Round-trip CER",
    "roundtrip_wer": "Round-trip WER",
}
SPACE_FILES = ("app.py", "requirements.txt", "README.md")


class HubError(UserError):
    """A push that cannot happen (offline, no token, Hub refused); one line says why."""


@dataclass(frozen=True)
class Run:
    """What an output dir holds, as far as the Hub is concerned."""

    out: Path
    task: object  # slp_toolkit.tasks.Task
    recipe: Recipe | None
    adapter_base: str | None  # the base model named in adapter_config.json (LoRA runs only)

    @property
    def is_adapter(self) -> bool:
        return (self.out / "adapter_config.json").is_file()


def read_run(output_dir: str | Path) -> Run:
    from slp_toolkit.tasks import detect_task

    out = Path(output_dir)
    if not out.is_dir():
        raise HubError(f"{out}: no such output dir")
    recipe = load_recipe(out / "recipe.yaml", check_paths=False) if (out / "recipe.yaml").is_file() else None
    adapter = out / "adapter_config.json"
    base = json.loads(adapter.read_text()).get("base_model_name_or_path") if adapter.is_file() else None
    return Run(out, detect_task(str(out)), recipe, base)


def _is_hub_name(name: str | None) -> bool:
    return bool(name) and not name.startswith(("/", ".", "~")) and name.count("/") <= 1 and not Path(name).exists()


def select_files(run: Run) -> list[str]:
    """The paths (relative to the output dir) that go to the model repo, README.md aside."""
    weights = ADAPTER_FILES if run.is_adapter else WEIGHT_FILES
    found = sorted({p for pattern in (*weights, *PROCESSOR_FILES, *RUN_FILES) for p in run.out.glob(pattern)})
    files = [str(p.relative_to(run.out)) for p in found if p.is_file()]
    if not any(f.endswith(".safetensors") for f in files):
        raise HubError(f"{run.out}: no safetensors weights (expected the output dir of `slp train`)")
    return files


# ---------------------------------------------------------------- the model card
def _dataset(spec: str | None, fallback: str) -> dict:
    """EvalResult dataset fields for a split spec: Hub datasets by id, local data by folder name."""
    if spec and spec.startswith("hf:"):
        body, _, split = spec[3:].partition("@")
        name, _, config = body.partition(":")
        return dict(dataset_type=name, dataset_name=name, dataset_config=config or None, dataset_split=split or None)
    name = Path(spec).name if spec else fallback  # also the split: the Hub groups results by type/config/split
    return dict(dataset_type="local", dataset_name=name, dataset_split=name)


def metric_sources(run: Run) -> list[tuple[str, dict, dict]]:
    """(file, metrics, dataset fields) for metrics.json (the eval split during training) and each
    eval/<split>/metrics.json written by `slp eval`."""
    sources = []
    if (run.out / "metrics.json").is_file():
        spec = run.recipe.data.eval if run.recipe else None
        sources.append(("metrics.json", _dataset(spec, "eval")))
    sources += [
        (f"eval/{p.parent.name}/metrics.json", _dataset(None, p.parent.name))
        for p in sorted(run.out.glob("eval/*/metrics.json"))
    ]
    return [(f, json.loads((run.out / f).read_text()), ds) for f, ds in sources]


def headline(metrics: dict) -> dict[str, float]:
    """The model-index metrics of one metrics.json: numbers, not bookkeeping, not per-group keys."""
    return {
        k: v
        for k, v in metrics.items()
        if "/" not in k and k not in BOOKKEEPING and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def card_data(run: Run, repo_id: str):
    from huggingface_hub import EvalResult, ModelCardData

    tag = run.task.pipeline_tag
    results = [
        EvalResult(
            task_type=tag,
            dataset_type=ds["dataset_type"],
            dataset_name=ds["dataset_name"],
            dataset_config=ds.get("dataset_config"),
            dataset_split=ds.get("dataset_split"),
            metric_type=key,
            metric_name=METRIC_NAMES.get(key, key),
            metric_value=value,
        )
        for _, metrics, ds in metric_sources(run)
        for key, value in headline(metrics).items()
    ]
    specs = [run.recipe.data.train, run.recipe.data.eval] if run.recipe else []
    datasets = sorted({_dataset(s, "")["dataset_type"] for s in specs if s and s.startswith("hf:")})
    config = run.out / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.is_file() and not run.is_adapter else None
    tags = ["slp_toolkit", run.task.name, "audio", *([model_type] if model_type else [])]
    tags += ["lora"] if run.is_adapter else []
    return ModelCardData(
        model_name=repo_id.split("/")[-1],
        library_name="peft" if run.is_adapter else "transformers",
        pipeline_tag=tag,
        tags=tags,
        datasets=datasets or None,
        base_model=_base_model(run),
        eval_results=results or None,
    )


def _base_model(run: Run) -> str | None:
    if run.is_adapter:
        return run.adapter_base if _is_hub_name(run.adapter_base) else None
    m = run.recipe.model if run.recipe else None
    return m.name_or_path if m and m.init == "pretrained" and _is_hub_name(m.name_or_path) else None


def _origin(run: Run) -> str:
    base, m = _base_model(run), run.recipe.model if run.recipe else None
    twin = _twin_of(run.adapter_base if run.is_adapter else m.name_or_path if m else None)
    if twin:
        return f"Trained on a full-size twin of {twin} (random weights, `slp tiny --full-size`): a test model only."
    if run.is_adapter:
        where = f"[{base}](https://huggingface.co/{base})" if base else f"a local base model (`{run.adapter_base}`)"
        note = "" if base else " Push that base to the Hub and point `adapter_config.json` at it before using this."
        return f"A LoRA adapter (peft) on {where}.{note}"
    if base:
        return f"Fine-tuned from [{base}](https://huggingface.co/{base})."
    if m and m.init == "scratch":
        return f"Trained from scratch (preset `{m.preset}`)."
    return "Fine-tuned from a local checkpoint." if m else "Trained with slp_toolkit."


def _twin_of(base: str | None) -> str | None:
    """The Hub checkpoint a local base dir is a random-weight twin of (its twin.json), if it is one."""
    marker = Path(base) / "twin.json" if base else None
    if marker is None or not marker.is_file():
        return None
    return json.loads(marker.read_text()).get("twin_of")


def _usage(run: Run, repo_id: str) -> str:
    tag, call = run.task.pipeline_tag, run.task.caps.usage
    lines = [
        "```python",
        "from transformers import pipeline",
        "",
        f'pipe = pipeline("{tag}", model="{repo_id}")',
        f"print({call})  # file paths need ffmpeg; a dict of raw/sampling_rate does not",
        "```",
    ]
    if run.is_adapter:
        lines.append("\nLoading an adapter needs `pip install peft`; `slp merge` folds it into a plain model.")
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _tables(sources: list[tuple[str, dict, dict]]) -> str:
    """Headline metrics (and n, the clip count) per split; per-group keys and confusion matrices after."""
    from slp_toolkit.metrics import confusion_from_metrics

    fmt = _fmt
    rows = [
        f"| {ds['dataset_name']} | {k} | {fmt(v)} |"
        for _, m, ds in sources
        for k, v in {**headline(m), **({"n": m["n"]} if "n" in m else {})}.items()
    ]
    parts = ["| split | metric | value |", "| --- | --- | --- |", *rows] if rows else ["No metrics recorded."]
    groups = [
        (ds["dataset_name"], k, v)
        for _, m, ds in sources
        for k, v in m.items()
        if "/" in k and not k.startswith("confusion/")
    ]
    if groups:
        parts += ["", "### Per speaker / per class", "", "| split | key | value |", "| --- | --- | --- |"]
        parts += [f"| {split} | {k} | {fmt(v)} |" for split, k, v in groups]
    for _, m, ds in sources:
        if (confusion := confusion_from_metrics(m)) is not None:
            labels, matrix = confusion
            parts += [
                "",
                f"Confusion on {ds['dataset_name']} (rows: reference, columns: prediction)",
                "",
                "| | " + " | ".join(labels) + " |",
                "|---" * (len(labels) + 1) + "|",
            ]
            parts += [f"| {ref} | " + " | ".join(map(str, row)) + " |" for ref, row in zip(labels, matrix)]
    return "\n".join(parts)


def model_card(run: Run, repo_id: str, files: list[str]) -> str:
    data = card_data(run, repo_id)
    sources = metric_sources(run)
    r, first = run.recipe, (sources[0][1] if sources and sources[0][0] == "metrics.json" else {})
    training = []
    if r:
        training.append(
            f"- data: train `{Path(r.data.train or '').name or r.data.train}`, eval `{Path(r.data.eval).name if r.data.eval else '-'}`"
        )
    if first:
        training.append(
            f"- {first.get('step', '?')} steps (best at {first.get('best_step', '?')}), {first.get('elapsed_s', '?')} s, "
            f"{first.get('audio_seconds_per_second', '?')} audio-seconds per second"
        )
    training.append("- the resolved recipe is `recipe.yaml`: `slp train recipe.yaml` trains it again")
    plots = [f"![{Path(f).stem}]({f})" for f in files if f.endswith(".png")]
    body = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"Task `{run.task.name}` ({run.task.pipeline_tag}), trained with slp_toolkit. {_origin(run)}",
        "",
        "## Use",
        "",
        _usage(run, repo_id),
        "",
        "## Results",
        "",
        _tables(sources),
        *(["", *plots] if plots else []),
        "",
        "## Training",
        "",
        *training,
        "",
        "## Files",
        "",
        *[f"- `{f}`" for f in files],
        "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)


# ---------------------------------------------------------------- staging and pushing
def stage(output_dir: str | Path, stage_dir: str | Path, repo_id: str, space: bool = False) -> list[str]:
    """Copy what the push uploads into `stage_dir` (which must be empty or new); returns its files."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"--repo-id {repo_id!r}: {str(err).splitlines()[0]}") from None
    run = read_run(output_dir)
    target = Path(stage_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise HubError(f"{target}: exists and is not an empty directory (remove it or pick another)")
    files = select_files(run)
    for f in files:
        (target / f).parent.mkdir(parents=True, exist_ok=True)
        try:  # a hard link stages a 1 GB checkpoint instantly; the upload reads it as a file either way
            os.link(run.out / f, target / f)
        except OSError:
            shutil.copy2(run.out / f, target / f)
    (target / "README.md").write_text(model_card(run, repo_id, files))
    staged = sorted([*files, "README.md"])
    if space:
        stage_space(run, repo_id, target / "space")
        staged += [f"space/{f}" for f in SPACE_FILES]
    return staged


def stage_space(run: Run, repo_id: str, target: Path) -> None:
    """A Gradio Space serving `repo_id` with plain transformers (ASR and audio classification)."""
    from huggingface_hub import SpaceCardData

    tag = run.task.pipeline_tag
    if not run.task.caps.space:
        raise HubError(f"--space: no Space template for {tag} models yet")
    template = (Path(__file__).parents[1] / "resources" / "space_app.py").read_text()
    app = template.replace('"__MODEL_ID__"', json.dumps(repo_id)).replace('"__PIPELINE_TAG__"', json.dumps(tag))
    version = importlib.metadata.version
    needs = [f"transformers=={version('transformers')}", "torch", "torchaudio", "numpy"]  # torchaudio: resampling
    needs += [f"peft=={version('peft')}"] if run.is_adapter else []
    data = SpaceCardData(
        title=repo_id.split("/")[-1],
        sdk="gradio",
        sdk_version=version("gradio"),
        app_file="app.py",
        models=[repo_id],
        tags=["slp_toolkit", tag],
    )
    readme = f"---\n{data.to_yaml()}\n---\n\nA demo of [{repo_id}](https://huggingface.co/{repo_id}), written by `slp push --space`.\n"
    target.mkdir(parents=True)
    for name, text in zip(SPACE_FILES, (app, "\n".join(needs) + "\n", readme)):
        (target / name).write_text(text)


def _token() -> str:
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise HubError("cannot push while offline (HF_HUB_OFFLINE is set); `--dry-run DIR` stages the upload locally")
    token = get_token()
    if not token:
        raise HubError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    return token


def push(output_dir: str | Path, repo_id: str, private: bool = False, space: bool = False) -> dict:
    """Stage into a temporary dir and upload: the model repo, and with `space` a Space of the same name."""
    token = _token()
    with tempfile.TemporaryDirectory() as tmp:
        files = stage(output_dir, tmp, repo_id, space)
        urls = _upload(Path(tmp), repo_id, private, space, token)
    return {"repo_id": repo_id, "files": files, "urls": urls}


def _upload(stage_dir: Path, repo_id: str, private: bool, space: bool, token: str) -> list[str]:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        urls = [str(api.create_repo(repo_id, private=private, exist_ok=True))]
        api.upload_folder(
            folder_path=stage_dir, repo_id=repo_id, ignore_patterns=["space/*"], commit_message="Upload with slp push"
        )
        if space:
            urls.append(
                str(api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True))
            )
            api.upload_folder(
                folder_path=stage_dir / "space",
                repo_id=repo_id,
                repo_type="space",
                commit_message="Demo Space from slp push",
            )
    except Exception as err:  # noqa: BLE001 - HTTP, DNS, auth, quota: one line, not a traceback
        first = (str(err).strip().splitlines() or [""])[0].replace(token, "***")
        raise HubError(f"push to {repo_id} failed: {type(err).__name__}: {first[:300]}") from None
    return urls
