"""Training throughput: slp_toolkit's loop against `transformers.Trainer` configured as its docs recommend,
for asr_ctc (wav2vec2 CTC), asr_seq2seq (Whisper, vs `Seq2SeqTrainer`) and emotion (wav2vec2 classifier).

    python benchmarks/train_throughput.py [--tasks asr_ctc,asr_seq2seq,emotion] [--seconds 150] [--wait-idle 1200]
    python benchmarks/train_throughput.py --tasks whisper_lora --corpus data/synth --seconds 300   # real weights

For each task both sides train the same from-scratch `small` model (same seed; the initial weights are
hashed and compared) on the same synthetic clips, with the same audio per batch, learning-rate curve and
thread count, for the same wall time, one after the other, each in its own process. Throughput is audio
seconds of real clips per second of training (first step to last, data preparation excluded); each
final model is then scored on the corpus `test` split. `whisper_lora` is the quickstart instead: the real
whisper-tiny.en (`make weights`) with the quickstart's LoRA on both sides (the peer wraps it with the same
peft config), scored on `test_unseen`. The peers are in trainer_peers.py. See README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED_CORPUS = Path("/tmp/corpus3000")  # made by `slp data synth /tmp/corpus3000 --n 3000`, if present
RATE = 16000
SEED = 0
GOAL = 1.5
TASKS = ("asr_ctc", "asr_seq2seq", "emotion", "whisper_lora")
# The model section of each side's recipe (both sides build the model through it) and what differs per
# task: learning rate (the scratch recipes'), corpus kind, clips scored, length limits, clips used.
SETUPS: dict[str, dict] = {
    "asr_ctc": {
        "model": {"init": "scratch", "preset": "small", "sampling_rate": RATE, "mask_time_prob": 0.05},
        "learning_rate": 1e-3, "corpus": "asr", "eval_clips": 200, "data": {},
    },
    "asr_seq2seq": {  # the small preset's window is 15 s; a random Whisper decodes slowly: fewer clips scored
        "model": {"init": "scratch", "preset": "small", "language": "english", "task": "transcribe",
                  "num_beams": 1, "max_new_tokens": 60},
        "learning_rate": 1e-3, "corpus": "asr", "eval_clips": 40,
        "data": {"max_seconds": 15, "max_train_samples": 1500},  # the peer's map stores 480 KB per clip
        "ours_data": {"pack": True},  # clips joined into full windows (--no-pack: each clip padded alone)
    },
    "emotion": {
        "model": {"init": "scratch", "family": "wav2vec2", "preset": "small", "sampling_rate": RATE,
                  "freeze_feature_encoder": False, "class_weights": "none"},  # the peer's loss is unweighted
        "learning_rate": 1e-3, "corpus": "emotion", "eval_clips": 200, "data": {},
    },
    "whisper_lora": {  # recipes/asr/whisper_quickstart.yaml's model, LoRA and learning rate
        "task": "asr_seq2seq",
        "model": {"name_or_path": str(ROOT / "models" / "whisper-tiny.en"), "num_beams": 1, "max_new_tokens": 128},
        "lora": {"r": 32, "alpha": 64, "dropout": 0.05,
                 "target_modules": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]},
        "learning_rate": 1e-3, "corpus": "asr", "eval_clips": 120, "eval_split": "test_unseen",
        "data": {"max_seconds": 30}, "ours_data": {"pack": True},
    },
}  # fmt: skip


# ---------------------------------------------------------------- measuring, inside a child
def _proc_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def busy_cores() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (zeros elsewhere)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def cores_used(before: tuple[float, float], after: tuple[float, float]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * (os.cpu_count() or 1) if total > 0 else 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """The training window of one side: wall and CPU time, and peak RSS before and during it."""

    def __init__(self) -> None:
        self.t_start: float | None = None
        self.result: dict[str, Any] = {}

    def begin(self) -> None:
        import torch

        self.result["threads_in_training"] = torch.get_num_threads()
        self.result["prep_peak_rss_mib"] = _proc_mib("VmHWM")
        try:  # "5" resets the peak-RSS watermark (Linux), so the training peak is its own
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.machine0, self.cpu0, self.t_start = busy_cores(), _cpu_seconds(), time.perf_counter()

    def elapsed(self) -> float:
        return 0.0 if self.t_start is None else time.perf_counter() - self.t_start

    def stop(self) -> None:
        if "wall_s" in self.result or self.t_start is None:
            return
        wall = self.elapsed()
        peak = _proc_mib("VmHWM")
        self.result.update(wall_s=wall, cpu_util=(_cpu_seconds() - self.cpu0) / max(wall, 1e-9))
        # cores that other processes kept busy meanwhile: anything well above 0 skews the timing
        self.result["other_cores"] = max(0.0, cores_used(self.machine0, busy_cores()) - self.result["cpu_util"])
        self.result["train_peak_rss_mib"] = peak if self.reset else None
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        self.result["peak_rss_mib"] = max(x for x in (maxrss, peak, self.result["prep_peak_rss_mib"]) if x)


def fingerprint(model) -> str:
    """Hash of the weights and config, to check both sides start from the same model."""
    h = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def batch_stats(real: list[float], padded: list[float]) -> dict:
    n = max(len(real), 1)
    return {
        "real_audio_s_per_batch": round(sum(real) / n, 2),
        "padded_audio_s_per_batch": round(sum(padded) / n, 2),
        "padding_fraction": round(1 - sum(real) / max(sum(padded), 1e-9), 3),
    }


def score(spec: dict, model_dir: Path) -> dict:
    """The task's metrics of a saved model on the first clips of the corpus' test split (the setup's)."""
    from slp_toolkit.config import DataConfig
    from slp_toolkit.data.splits import load_split
    from slp_toolkit.inference.evaluate import evaluate_split
    from slp_toolkit.tasks import get_task

    setup, task = SETUPS[spec["setup"]], get_task(spec["task"])
    split = str(Path(spec["corpus"]) / setup.get("eval_split", "test"))
    test = load_split(split, DataConfig(), RATE, task.needs, setup["eval_clips"])
    model, processor = task.load(str(model_dir))
    metrics, _ = evaluate_split(task, model, processor, test, spec["batch_seconds"])
    return {"metric": task.main_metric, "score": metrics[task.main_metric], "eval_clips": len(test)}


def _profiled(spec: dict, side: str, fn):
    if not spec["profile"]:
        return fn()
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(fn)
    finally:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        Path(spec["out"]).parent.joinpath(f"{side}_profile.txt").write_text(text.getvalue())


# ---------------------------------------------------------------- our side
def recipe_for(spec: dict, side: str):
    """The recipe of one side: ours trains from it; the peer builds its model and reads its limits."""
    import yaml

    from slp_toolkit.config import load_recipe

    setup = SETUPS[spec["setup"]]
    train = {
        "seed": SEED, "learning_rate": setup["learning_rate"], "batch_seconds": spec["batch_seconds"],
        "max_minutes": spec["seconds"] / 60, "num_threads": spec["threads"],
        "eval_every": 10**9,  # no mid-run checkpoint: the Trainer side saves nothing either
    }  # fmt: skip
    data = {"train": str(Path(spec["corpus"]) / "train"), **setup["data"]}
    if side == "ours":
        train.update(spec["ours"])
        data.update(setup.get("ours_data", {}) if spec["pack"] else {})
    recipe = {
        "task": spec["task"], "model": setup["model"], "data": data,
        "train": train, "output_dir": str(Path(spec["work"]) / side),
    } | ({"lora": setup["lora"]} if "lora" in setup else {})  # fmt: skip
    path = Path(spec["work"]) / f"{side}_recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return load_recipe(path)


def run_prep(spec: dict) -> dict:
    """Decode (or read back from the cache) the train split the way `train()` will, in its own process,
    so that the one-time decoding is neither in our training window nor in our peak RSS."""
    from slp_toolkit.data.splits import load_split
    from slp_toolkit.tasks import get_task

    recipe, t = recipe_for(spec, "ours"), time.perf_counter()
    d = recipe.data
    ds = load_split(d.train, d, RATE, get_task(spec["task"]).needs, d.max_train_samples)
    return {"decode_s": time.perf_counter() - t, "clips": len(ds), "peak_rss_mib": _proc_mib("VmHWM")}


def run_ours(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    import slp_toolkit.data.batches as batching
    import slp_toolkit.training.loop as loop
    from slp_toolkit.tasks import TASKS, get_task
    from slp_toolkit.training.run import Run

    recipe, task = recipe_for(spec, "ours"), get_task(spec["task"])
    out = Path(recipe.output_dir)
    # Observation only: note when the loop starts (its first length_batches call, right after the
    # loop's own clock starts) and ends (Run.finish), which batches it drew, and the initial weights.
    meter, drawn, init = Meter(), {"durations": None, "batches": []}, {}
    real_length_batches, real_finish = batching.length_batches, Run.finish

    def length_batches(durations, *args, **kwargs):
        if meter.t_start is None:
            meter.begin()
        batches = real_length_batches(durations, *args, **kwargs)
        drawn["durations"], drawn["batches"] = durations, drawn["batches"] + batches
        return batches

    def finish(run):
        meter.stop()
        return real_finish(run)

    def build(recipe, train_ds):
        model, processor = task.build(recipe, train_ds)
        init["fingerprint"] = fingerprint(model)
        return model, processor

    batching.length_batches, Run.finish = length_batches, finish
    TASKS[task.name] = dataclasses.replace(task, build=build)

    t_call = time.perf_counter()
    _profiled(spec, "ours", lambda: loop.train(recipe))
    metrics = json.loads((out / "metrics.json").read_text())
    steps = int(metrics["step"])
    d, used = drawn["durations"], drawn["batches"][:steps]
    real = [float(np.sum(d[b])) for b in used]
    padded = [float(np.max(d[b]) * len(b)) for b in used]
    r = meter.result
    return {
        "audio_s_per_s": float(metrics["audio_seconds_per_second"]),  # the loop's own number
        "audio_s_per_s_check": sum(real) / r["wall_s"],  # the same, from our own clock
        "steps": steps,
        "train_s": float(metrics["elapsed_s"]),
        "audio_s": sum(real),
        "clips_per_batch": round(float(np.mean([len(b) for b in used])), 2),
        **batch_stats(real, padded),
        **r,
        "prep": {"setup_s": round(meter.t_start - t_call, 2)},
        "settings": spec["ours"] | {"optimizer": "torch.optim.AdamW(fused=True)"},
        "init_fingerprint": init.get("fingerprint"),
        **score(spec, out),
    }


# ---------------------------------------------------------------- the Trainer side
def run_trainer(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from torch.optim.lr_scheduler import LambdaLR
    from trainer_peers import PEERS, CountingCollator, read_clips, trainer_classes
    from transformers import TrainerCallback, set_seed

    from slp_toolkit.config import TrainConfig
    from slp_toolkit.tasks import get_task
    from slp_toolkit.training.loop import lr_factor

    recipe, task, work = recipe_for(spec, "trainer"), get_task(spec["task"]), Path(spec["work"])
    t0 = time.perf_counter()
    raw = Dataset.from_generator(lambda: read_clips(recipe, task.needs), cache_dir=str(work / "hf_datasets"))
    t1 = time.perf_counter()
    set_seed(SEED)
    model, processor = task.build(recipe, raw.select_columns([c for c in task.needs if c in raw.column_names]))
    init = fingerprint(model)
    if recipe.lora is not None:  # the same peft config as ours (our helper builds it), as a peer user would write
        from slp_toolkit.training.lora import apply_lora

        model = apply_lora(model, recipe.lora, task)
    prepare, collator = PEERS[spec["task"]](processor, model)
    audio_as_numpy = raw.with_format("numpy", columns=["audio"], output_all_columns=True)
    train_ds = audio_as_numpy.map(prepare, remove_columns=["audio"], desc="preprocess")
    t2 = time.perf_counter()

    seconds = spec["seconds"]
    # as many clips as our batches hold on average: seconds of audio, or a window per clip for an unpacked Whisper
    from slp_toolkit.data.batches import clip_costs
    from slp_toolkit.tasks import window_seconds

    costs = clip_costs(np.asarray(train_ds["input_length"]) / RATE, None if spec["pack"] else window_seconds(processor))
    batch_size = max(1, round(spec["batch_seconds"] / float(np.mean(costs))))
    trainer_cls, args_cls = trainer_classes(spec["task"])
    args = args_cls(
        output_dir=str(work / "trainer_out"),
        per_device_train_batch_size=batch_size,
        learning_rate=recipe.train.learning_rate,
        max_steps=10**6,  # the wall clock stops the run
        logging_steps=10,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        use_cpu=True,
        seed=SEED,
        bf16=spec["trainer_bf16"],
        remove_unused_columns=False,  # the collators pick their columns; CountingCollator reads input_length
        train_sampling_strategy="group_by_length",
        length_column_name="input_length",
    )
    meter, counting = Meter(), CountingCollator(collator)
    # A steps-based warmup/decay cannot know how many steps fit in a time budget; follow ours instead:
    # the same function of the fraction of wall time used (10% linear warmup, linear decay).
    schedule = TrainConfig(learning_rate=recipe.train.learning_rate, max_minutes=seconds / 60)
    optimizer_cls, optimizer_kwargs = trainer_cls.get_optimizer_cls_and_kwargs(args, model)
    optimizer = optimizer_cls([p for p in model.parameters() if p.requires_grad], **optimizer_kwargs)
    scheduler = LambdaLR(optimizer, lambda _: lr_factor(schedule, meter.elapsed() / seconds))
    real: list[float] = []
    padded: list[float] = []

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            meter.begin()

        def on_step_end(self, args, state, control, **kwargs):
            real.append(counting.last_real)
            padded.append(counting.last_padded)
            if meter.elapsed() >= seconds:
                meter.stop()
                control.should_training_stop = True

    trainer = trainer_cls(
        model=model, args=args, train_dataset=train_ds, data_collator=counting, processing_class=processor,
        optimizers=(optimizer, scheduler), callbacks=[StopAfter()],
    )  # fmt: skip
    _profiled(spec, "trainer", trainer.train)
    meter.stop()
    if recipe.lora is not None:
        trainer.model.merge_and_unload().save_pretrained(str(work / "trainer"))
        processor.save_pretrained(str(work / "trainer"))
    else:
        trainer.save_model(str(work / "trainer"))
    r = meter.result
    return {
        "audio_s_per_s": sum(real) / r["wall_s"],
        "steps": len(real),
        "train_s": round(r["wall_s"], 1),
        "audio_s": sum(real),
        "clips_per_batch": batch_size,
        **batch_stats(real, padded),
        **r,
        "prep": {"decode_s": round(t1 - t0, 2), "map_s": round(t2 - t1, 2), "setup_s": round(meter.t_start - t2, 2)},
        "settings": {
            "optimizer": f"{optimizer_cls.__module__}.{optimizer_cls.__name__} {optimizer_kwargs}",
            "bf16": spec["trainer_bf16"],
            "group_by_length": True,
        },  # fmt: skip
        "init_fingerprint": init,
        **score(spec, work / "trainer"),
    }


# ---------------------------------------------------------------- the parent
def find_corpus(arg: str | None, kind: str) -> Path:
    """--corpus / --emotion-corpus, else /tmp/corpus3000 (speech), else a corpus made once in the cache."""
    if arg:
        corpus = Path(arg)
    elif kind == "asr" and (SHARED_CORPUS / "train" / "metadata.csv").is_file():
        corpus = SHARED_CORPUS
    else:
        from slp_toolkit.data.splits import cache_root

        n = 3000 if kind == "asr" else 2000
        corpus = cache_root() / "bench" / ("corpus3000" if kind == "asr" else "emotion2000")
        if not (corpus / "test" / "metadata.csv").is_file():
            from slp_toolkit.synth.corpus import make_corpus

            print(f"synthesising a {n}-utterance {kind} corpus into {corpus} (once; ~1 min on 2 cores)", flush=True)
            make_corpus(corpus, n=n, seed=0, overwrite=True, task="asr" if kind == "asr" else "emotion")
    for split in ("train", "test"):
        if not (corpus / split / "metadata.csv").is_file():
            sys.exit(f"error: {corpus / split}: no metadata.csv (pass a `slp data synth` output dir)")
    return corpus


def run_child(side: str, spec: dict) -> dict:
    """Run one side in a fresh process (never two at once) and return what it measured."""
    work = Path(spec["work"])
    result_file, log_file = work / f"{side}.json", work / f"{side}.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["OMP_NUM_THREADS"] = str(spec["threads"])
    t = time.perf_counter()
    with log_file.open("w") as log:
        cmd = [sys.executable, __file__, "--child", side, "--spec", json.dumps(spec), "--result", str(result_file)]
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if code != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-30:]
        sys.exit(f"error: the '{side}' side failed (exit {code}); end of {log_file}:\n" + "\n".join(tail))
    result = json.loads(result_file.read_text())
    result.update(process_s=round(time.perf_counter() - t, 1), log=str(log_file))
    if result.get("other_cores", 0.0) > 0.2:
        print(f"  warning: other processes used {result['other_cores']:.2f} cores during '{side}' training", flush=True)
    return result


def wait_idle(limit: float, side: str) -> float:
    """Wait up to `limit` seconds for the machine to be idle (< 0.2 cores busy over 3 s); return the
    cores busy in the last sample and warn when it is not idle."""
    deadline = time.monotonic() + limit
    while True:
        before = busy_cores()
        time.sleep(3)
        busy = cores_used(before, busy_cores())
        if busy < 0.2 or time.monotonic() >= deadline:
            break
        print(f"  waiting for an idle machine ({busy:.1f} cores busy) ...", flush=True)
        time.sleep(27)
    if busy >= 0.2:
        print(f"  warning: {busy:.1f} cores busy before '{side}': timings will be skewed", flush=True)
    return busy


def table(results: dict[str, dict]) -> str:
    head = (f"{'task':<12} {'side':<8} {'audio-s/s':>9} {'steps':>6} {'peak RSS MiB':>12} {'(training)':>10} "
            f"{'metric':>10} {'ratio':>6}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for task, r in results.items():
        for name, side in r["sides"].items():
            train_peak = side["train_peak_rss_mib"] or float("nan")
            ratio = f"{r['ratio']:>6.2f}" if name == "ours" else ""
            lines.append(
                f"{task:<12} {name:<8} {side['audio_s_per_s']:>9.1f} {side['steps']:>6d} {side['peak_rss_mib']:>12.0f}"
                f" {train_peak:>10.0f} {side['metric'][:4]:>4} {side['score']:.3f} {ratio}"
            )
    return "\n".join(lines)


def bench_task(task: str, args, corpus: Path, work: Path, out: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ours = {"mixed_precision": args.precision, "compile": not args.no_compile,
            "trim_memory_mb": args.trim_memory_mb}  # fmt: skip
    spec = {
        "setup": task, "task": SETUPS[task].get("task", task), "corpus": str(corpus.resolve()), "seconds": args.seconds, "batch_seconds": args.batch_seconds,
        "threads": args.threads, "work": str(work), "out": str(out), "profile": args.profile, "ours": ours,
        "trainer_bf16": args.trainer_bf16, "pack": not args.no_pack and "ours_data" in SETUPS[task],
    }  # fmt: skip
    print(f"[{task}] corpus {corpus}; {args.seconds:.0f} s per side; ours {ours}, pack {spec['pack']}; work dir {work}",
          flush=True)  # fmt: skip
    prep = run_child("prep", spec)
    print(f"  our data: {prep['clips']} train clips decoded or read back in {prep['decode_s']:.1f} s", flush=True)
    sides = {}
    for side in ("ours", "trainer"):
        busy = wait_idle(args.wait_idle, side)
        print(f"  training '{side}' for {args.seconds:.0f} s ...", flush=True)
        sides[side] = run_child(side, spec) | {"busy_cores_before": round(busy, 2)}
    sides["ours"]["prep"]["decode_s"] = round(prep["decode_s"], 2)
    ratio = sides["ours"]["audio_s_per_s"] / sides["trainer"]["audio_s_per_s"]
    for name, r in sides.items():
        prep_text = ", ".join(f"{k} {v:.1f} s" for k, v in r["prep"].items())
        print(
            f"  {name:<8} {r['audio_s_per_s']:.1f} audio-s/s; prep ({prep_text}); {r['clips_per_batch']} clips/batch, "
            f"{r['real_audio_s_per_batch']} s real / {r['padded_audio_s_per_batch']} s padded per batch; "
            f"CPU {r['cpu_util']:.2f} cores (others {r['other_cores']:.2f})", flush=True)  # fmt: skip
    return {
        "sides": sides,
        "ratio": ratio,
        "same_init": sides["ours"]["init_fingerprint"] == sides["trainer"]["init_fingerprint"],
        "disturbed": [name for name, r in sides.items() if r["other_cores"] > 0.2],
        "config": {
            k: spec[k] for k in ("corpus", "seconds", "batch_seconds", "threads", "ours", "trainer_bf16", "pack")
        }
        | {"model": SETUPS[task]["model"], "learning_rate": SETUPS[task]["learning_rate"], "seed": SEED}
        | {"lora": SETUPS[task].get("lora")},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, from " + ", ".join(TASKS))
    p.add_argument("--seconds", type=float, default=150.0, help="training wall time of each side")
    p.add_argument("--batch-seconds", type=float, default=40.0, help="audio seconds per batch")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on both sides")
    p.add_argument("--corpus", help=f"a `slp data synth` dir for the ASR tasks (default {SHARED_CORPUS} if present)")
    p.add_argument("--emotion-corpus", help="a `slp data synth --task emotion` dir (default: made once, cached)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    p.add_argument("--profile", action="store_true", help="cProfile each side (slows both; not for timings)")
    p.add_argument("--wait-idle", type=float, default=0, help="wait up to this many seconds for an idle machine")
    p.add_argument("--precision", choices=("no", "bf16"), default="bf16", help="our train.mixed_precision")
    p.add_argument("--no-compile", action="store_true", help="our side without train.compile")
    p.add_argument("--trim-memory-mb", type=int, default=None, help="our train.trim_memory_mb (default: off)")
    p.add_argument("--no-pack", action="store_true", help="our Whisper side without data.pack (each clip alone)")
    p.add_argument("--trainer-bf16", action="store_true", help="the Trainer side with bf16=True too (ablation)")
    p.add_argument("--child", choices=("prep", "ours", "trainer"), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        spec = json.loads(args.spec)
        result = {"prep": run_prep, "ours": run_ours, "trainer": run_trainer}[args.child](spec)
        Path(args.result).write_text(json.dumps(result))
        return 0

    from slp_toolkit.data.splits import cache_root

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        sys.exit(f"error: --tasks: unknown {unknown}; choose from {', '.join(TASKS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    for task in tasks:
        kind = SETUPS[task]["corpus"]
        corpus = find_corpus(args.corpus if kind == "asr" else args.emotion_corpus, kind)
        results[task] = bench_task(task, args, corpus, cache_root() / "bench" / "train_throughput" / task, out)
    print()
    print(table(results))
    for task, r in results.items():
        met = "met" if r["ratio"] >= GOAL else "NOT met"
        same = "same initial model" if r["same_init"] else "DIFFERENT initial models"
        print(
            f"{task}: ratio ours/Trainer {r['ratio']:.2f} (goal >= {GOAL}: {met}); {same}"
            + (f"; DISTURBED ({', '.join(r['disturbed'])}): rerun on an idle machine" if r["disturbed"] else "")
        )
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "tasks": results,
        "goal": GOAL,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
