"""The Gradio demo: one tab per kind of model (each task's `Tab`: Transcribe, Synthesize, Emotion, or a
task registered from outside the package). It loads, never trains.

    slp demo OUTPUT_DIR [OUTPUT_DIR ...]        each model's task (recipe.yaml, adapter config or
                                                architecture) picks its tab
    python app.py --asr DIR --emotion DIR       the same, one flag per tab

A model is an output dir of `slp train`, a LoRA adapter dir or a Hub name. A tab appears only when a
model is given for it and its task exists in this version of the package; otherwise a note at the top
of the page says why it is missing. Transcription takes the path `slp transcribe` takes (read_audio at
the processor's rate, then predict_split -> task.predict), so both give the same text.

A synthesize tab talks to its task through the Task interface only: `task.predict(model, processor,
[{"text", "speaker", "vocoder"}])` returns one {"audio", "sampling_rate", ...} per example; speaker and
vocoder choices come from `task.caps.speakers(model, processor)` and `task.caps.vocoders`.

Bad input (no audio, an empty, unreadable, too large or too long file) is answered with a message in
the tab's Message box; the app keeps serving.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from slp_toolkit.config import DataConfig, UserError

log = logging.getLogger("slp")

KINDS = ("transcribe", "synthesize", "classify")
MAX_TEXT_CHARS = 400
MAX_EXAMPLES = 4
# System fonts: the default theme fetches Google Fonts, which an offline or private demo cannot reach.
FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


class DemoError(UserError):
    """The demo cannot start (no model, a model for the wrong tab...); one line says why."""


class InputProblem(Exception):
    """A request the demo declines; its message is shown in the tab."""


@dataclass(frozen=True)
class Limits:
    max_mb: float = 10.0
    max_seconds: float = 30.0


@dataclass(frozen=True)
class Served:
    """A loaded model behind one tab."""

    tab: str
    source: str
    task: Any  # slp_toolkit.tasks.Task
    model: Any
    processor: Any

    @property
    def rate(self) -> int:
        from slp_toolkit.data.splits import sampling_rate

        return sampling_rate(self.processor)


# ---------------------------------------------------------------- which model goes to which tab
def tabs() -> dict[str, Any]:
    """Tab key (also the app.py flag) -> its `Tab`, from every task's `tab` (tasks may share one); ordered
    transcribe, synthesize, classify, then by registration."""
    from slp_toolkit.tasks import all_tasks

    found: dict[str, Any] = {}
    for task in sorted(all_tasks(), key=lambda t: KINDS.index(t.caps.tab.kind) if t.caps.tab else len(KINDS)):
        if task.caps.tab is not None:
            found.setdefault(task.caps.tab.key, task.caps.tab)
    return found


def route(models: list[str]) -> dict[str, str]:
    """`slp demo DIR...`: the tab of each model, from its task's pipeline_tag."""
    routed: dict[str, str] = {}
    for spec in models:
        tab = _tab_of(spec)
        if tab in routed:
            raise DemoError(f"{routed[tab]} and {spec} are both {tabs()[tab].title} models; give one per tab")
        routed[tab] = spec
    return routed


def _tab_of(spec: str) -> str:
    from slp_toolkit.tasks import TaskNotImplementedError, detect_task

    try:
        task = detect_task(spec)
    except TaskNotImplementedError as err:
        if err.task in tabs():  # a tab named after its task; load_models notes that it is missing
            return err.task
        raise
    if task.caps.tab is None:
        raise DemoError(f"{spec}: the demo has no tab for {task.name} models")
    return task.caps.tab.key


def load_models(specs: dict[str, str | None], device: str = "auto", precision: str = "auto") -> tuple[dict, list[str]]:
    """Load the model of each tab onto `device`, predicting in `precision` (slp eval's rule); a tab whose task this
    version lacks gets a note instead."""
    from slp_toolkit.runtime.device import load_placed, resolve, with_precision
    from slp_toolkit.tasks import TaskNotImplementedError, detect_task

    resolve(device)  # a device this machine lacks fails before any loading
    tasks, notes, known = {}, [], tabs()
    for tab, spec in specs.items():  # every model's task first: a wrong path fails before any loading
        if not spec:
            continue
        title = known[tab].title if tab in known else tab
        try:
            tasks[tab] = detect_task(spec)
        except TaskNotImplementedError as err:
            notes.append(f"{title}: not available: {err}, so {spec} is not served.")
            continue
        if tasks[tab].caps.tab is None or tasks[tab].caps.tab.key != tab:
            raise DemoError(f"--{tab} {spec}: a {tasks[tab].name} ({tasks[tab].pipeline_tag}) model, not a {title} one")
    served = {}
    for tab, task in tasks.items():
        log.info("%s tab: loading %s (task %s)", known[tab].title, specs[tab], task.name)
        model, processor = load_placed(task, specs[tab], device)
        served[tab] = Served(tab, specs[tab], with_precision(task, model, precision, specs[tab]), model, processor)
    return served, notes


# ---------------------------------------------------------------- requests
def read_clip(path: str | None, rate: int, limits: Limits):
    """The uploaded or recorded clip as mono float32 at `rate`, or InputProblem saying why not."""
    from slp_toolkit.data.splits import AudioError, read_audio

    if not path:
        raise InputProblem("No audio: record a clip or upload a file first.")
    size = Path(path).stat().st_size if Path(path).is_file() else -1
    if size < 0:
        raise InputProblem("The upload did not arrive; try again.")
    if size == 0:
        raise InputProblem("The file is empty (0 bytes).")
    if size > limits.max_mb * 1e6:
        raise InputProblem(f"The file is {size / 1e6:.2f} MB; this demo accepts files up to {limits.max_mb:g} MB.")
    try:
        wave = read_audio(path, rate)
    except AudioError as err:
        raise InputProblem(f"Not usable audio ({err}): upload a wav, flac, ogg or mp3 file.") from None
    seconds = len(wave) / rate
    if seconds > limits.max_seconds:
        raise InputProblem(f"The clip is {seconds:.1f} s long; this demo accepts up to {limits.max_seconds:g} s.")
    return wave


def predict(served: Served, waves: list, task=None) -> list:
    """`slp transcribe`'s path: a numpy-formatted dataset of clips through predict_split."""
    import datasets

    from slp_toolkit.inference.evaluate import predict_split

    rows = [{"audio": w, "duration": len(w) / served.rate, "path": ""} for w in waves]
    ds = datasets.Dataset.from_list(rows).with_format("numpy")
    return predict_split(
        task or served.task, served.model, served.processor, ds, None
    )  # `slp transcribe`'s batches, so padding matches


def _answer(empty: Any, fn: Callable) -> Callable:
    """Turn InputProblem (and any unexpected error) into (empty output, message): the app keeps serving."""

    def run(*args):
        try:
            return fn(*args)
        except (InputProblem, UserError) as problem:  # bad text, unknown speaker...: the user can fix it
            return empty, str(problem)
        except Exception as err:  # noqa: BLE001 - one bad request must not look like a dead app
            log.exception("demo request failed")
            return empty, f"Error: {type(err).__name__}: {str(err)[:300]}"

    return run


def transcribe(served: Served, limits: Limits, audio: str | None) -> tuple[str, str]:
    wave = read_clip(audio, served.rate, limits)
    text = predict(served, [wave])[0]
    return text, f"Transcribed {len(wave) / served.rate:.1f} s of audio."


def classify(served: Served, limits: Limits, audio: str | None) -> tuple[dict[str, float], str]:
    """Every label with its probability (`slp classify`'s ranking with k = all labels)."""
    wave = read_clip(audio, served.rate, limits)
    labels = served.model.config.id2label
    ranking = dataclasses.replace(served.task, predict=partial(served.task.caps.ranked, k=len(labels)))
    best = predict(served, [wave], ranking)[0]
    return {label: score for label, score in best}, f"Classified {len(wave) / served.rate:.1f} s of audio."


def synthesize(served: Served, text: str, speaker: str | None, vocoder: str | None) -> tuple[Any, str]:
    import numpy as np

    text = (text or "").strip()
    if not text:
        raise InputProblem("No text: type a sentence first.")
    if len(text) > MAX_TEXT_CHARS:
        raise InputProblem(f"The text has {len(text)} characters; this demo reads up to {MAX_TEXT_CHARS}.")
    example = {"text": text, "speaker": speaker or "", "vocoder": vocoder or ""}
    result = served.task.predict(served.model, served.processor, [example])[0]
    wave = np.asarray(result["audio"], dtype=np.float32)
    rate = int(result["sampling_rate"])
    return (rate, wave), f"Synthesised {len(wave) / rate:.1f} s of speech."


def _tts_choices(served: Served) -> tuple[list[str], list[str]]:
    task = served.task
    return (
        list(task.caps.speakers(served.model, served.processor)) if task.caps.speakers else [],
        list(task.caps.vocoders),
    )


# ---------------------------------------------------------------- the page
def example_inputs(folder: str | None) -> tuple[list[str], list[str]]:
    """A few clips (and sentences, when there is a text column) of an audiofolder, for the Examples rows."""
    if not folder:
        return [], []
    from slp_toolkit.data.splits import iter_rows

    try:
        rows, _ = iter_rows(folder, DataConfig(), ("text",))
    except UserError:
        rows, _ = iter_rows(folder, DataConfig(), ())
    rows = [r for r in rows if isinstance(r.source, Path) and r.source.is_file()][:MAX_EXAMPLES]
    return [str(r.source.resolve()) for r in rows], [r.fields["text"] for r in rows if r.fields.get("text")]


def _audio_tab(gr, served: Served, limits: Limits, examples: list[str], api_name: str) -> None:
    """Upload first: it is what most visitors do (and its file input is what the browser test fills)."""
    key = served.tab
    if served.task.caps.tab.kind == "transcribe":
        verb, run, empty = "Transcribe", transcribe, ""
        output = gr.Textbox(label="Transcript", lines=3, elem_id=f"{key}-output", render=False)
    else:
        verb, run, empty = "Classify", classify, None
        output = gr.Label(label="Label probabilities", elem_id=f"{key}-output", render=False)
    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech: upload or record")
    button = gr.Button(verb, variant="primary", elem_id=f"{key}-run")
    output.render()
    message = gr.Textbox(label="Message", interactive=False, elem_id=f"{key}-message")
    button.click(
        _answer(empty, partial(run, served, limits)), inputs=audio, outputs=[output, message], api_name=api_name
    )
    if examples:
        gr.Examples(examples=[[p] for p in examples], inputs=audio, label="Examples")


def build_app(served: dict[str, Served], notes: list[str], limits: Limits, examples: tuple = ((), ())):
    """The Blocks app: a header naming each tab's model, then one tab per served model. Each tab's API
    is named after its kind (/transcribe, /classify, /synthesize), or tab_kind when two share a kind."""
    import gradio as gr

    clips, texts = list(examples[0]), list(examples[1])
    lines = [f"- **{s.task.caps.tab.title}**: `{s.source}` (task `{s.task.name}`)" for s in served.values()]
    lines += [f"- {note}" for note in notes]
    lines.append(f"- Uploads: up to {limits.max_mb:g} MB and {limits.max_seconds:g} s of audio.")
    kinds = [s.task.caps.tab.kind for s in served.values()]
    with gr.Blocks(title="slp_toolkit demo", analytics_enabled=False) as app:
        gr.Markdown("# slp_toolkit demo\n" + "\n".join(lines))
        with gr.Tabs():
            for tab, s in served.items():
                kind = s.task.caps.tab.kind
                api_name = kind if kinds.count(kind) == 1 else f"{tab}_{kind}"
                with gr.Tab(s.task.caps.tab.title, id=tab):
                    if kind == "synthesize":
                        _tts_tab(gr, s, texts, api_name)
                    else:
                        _audio_tab(gr, s, limits, clips, api_name)
    return app


def _tts_tab(gr, served: Served, texts: list[str], api_name: str) -> None:
    speakers, vocoders = _tts_choices(served)
    key = served.tab
    text = gr.Textbox(label="Text", lines=2, max_length=MAX_TEXT_CHARS)
    speaker = gr.Dropdown(speakers, value=speakers[0] if speakers else None, label="Speaker", allow_custom_value=True)
    vocoder = gr.Dropdown(vocoders, value=vocoders[0] if vocoders else None, label="Vocoder", allow_custom_value=True)
    button = gr.Button("Synthesize", variant="primary", elem_id=f"{key}-run")
    audio = gr.Audio(label="Speech", type="numpy", interactive=False, elem_id=f"{key}-output")
    message = gr.Textbox(label="Message", interactive=False, elem_id=f"{key}-message")
    fn = _answer(None, partial(synthesize, served))
    button.click(fn, inputs=[text, speaker, vocoder], outputs=[audio, message], api_name=api_name)
    if texts:
        gr.Examples(examples=[[t] for t in texts], inputs=text, label="Examples")


def launch(app, args: argparse.Namespace, block: bool = True):
    """Queue (with a concurrency limit) and serve on args.host:args.port; `block=False` returns at once."""
    import gradio as gr

    app.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        # Our own check answers over-limit files with a message; gradio's hard cap, well above it, only
        # stops absurd uploads from filling the disk.
        max_file_size=int(4 * args.max_mb * 1e6) + 1_000_000,
        allowed_paths=[str(Path(args.examples).resolve())] if args.examples else None,
        theme=gr.themes.Default(**FONTS),
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return app


# ---------------------------------------------------------------- command lines
def add_launch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--max-mb", type=float, default=10.0, help="largest upload accepted, in MB")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="longest clip accepted, in seconds")
    parser.add_argument("--concurrency", type=int, default=1, help="requests run at once (the rest queue)")
    parser.add_argument("--queue-size", type=int, default=32, help="most requests waiting in the queue")
    parser.add_argument("--examples", default=None, metavar="DIR", help="audiofolder whose first clips are examples")
    from slp_toolkit.runtime.device import add_device_arg, add_precision_arg

    add_device_arg(parser)
    add_precision_arg(parser)


def serve(specs: dict[str, str | None], args: argparse.Namespace, block: bool = True):
    """Load the models, build the page and launch it; returns the running app when `block` is False."""
    if not any(specs.values()):
        *most, last = [f"--{key}" for key in specs]
        flags = f"{', '.join(most)} or {last}" if most else last
        raise DemoError(f"no model given: pass {flags} DIR (or `slp demo DIR...`)")
    if args.max_mb <= 0 or args.max_seconds <= 0 or args.concurrency < 1:
        raise DemoError("--max-mb and --max-seconds must be > 0 and --concurrency >= 1")
    if args.examples and not Path(args.examples).is_dir():
        raise DemoError(f"--examples {args.examples}: not a directory (expected an audiofolder)")
    served, notes = load_models(specs, args.device, getattr(args, "precision", "auto"))
    if not served:
        raise DemoError("no tab to show: " + " ".join(notes))
    limits = Limits(args.max_mb, args.max_seconds)
    app = build_app(served, notes, limits, example_inputs(args.examples))
    return launch(app, args, block)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="Gradio demo of slp_toolkit models.")
    for key, tab in tabs().items():
        parser.add_argument(f"--{key}", default=None, metavar="MODEL", help=f"{tab.title} tab: a model dir or Hub name")
    add_launch_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        serve({key: getattr(args, key) for key in tabs()}, args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
