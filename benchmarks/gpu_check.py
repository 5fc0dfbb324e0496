"""GPU check: full-size whisper-small LoRA and wav2vec2-base CTC, bf16 on CUDA, our loop vs the Trainer.

    bash benchmarks/gpu_check.sh            # on the GPU machine (prepare here first: --prepare)
    python benchmarks/gpu_check.py --device cpu --steps 3 --scale 0.1 --whisper openai/whisper-tiny  # smoke

Each recipe (`asr/whisper_small_lora.yaml`, `asr/wav2vec2_base_ctc.yaml`) runs through `slp train` on its
full-size twin for --steps steps with `train.mixed_precision=bf16`; the peer is the script the
transformers docs give for the same job: `Seq2SeqTrainer` + peft LoRA (same r/alpha/targets, gradient
checkpointing as the recipe) and `Trainer` for CTC, both `bf16=True` with `group_by_length`, a batch
of the same mean audio seconds, same learning rate, on the same decoded clips. Each side runs in its
own process; throughput counts steps after the first 10% (compile/warm-up). Then every inference command
(`--jobs inference`: eval, transcribe greedy and beam, classify, synthesize) runs with `--device cuda`, each
checked to have logged its model on the GPU, with its wall time and real-time factor; on a machine with two
GPUs also `slp eval` sharded over both. One JSON and two tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
JOBS = {  # name -> recipe, twin, train.batch_seconds (whisper: 30-s windows, a clip each: 960 s = 32 clips)
    "whisper_lora": ("asr/whisper_small_lora.yaml", "openai/whisper-small", 960),
    "wav2vec2_ctc": ("asr/wav2vec2_base_ctc.yaml", "facebook/wav2vec2-base", 200),
    # the shipped FSDP config on the one GPU (world size 1 still wraps and shards the model): it trains, saves
    # a full state dict and the output loads; no Trainer side. Not exercised on CPU: there Accelerate turns
    # ACCELERATE_USE_CPU into plain multi-CPU DDP whatever the config says.
    "wav2vec2_ctc_fsdp": ("asr/wav2vec2_base_ctc.yaml", "facebook/wav2vec2-base", 200),
}
INFERENCE = "inference"  # not a training job: every inference command on the device (see `inference`)
LAUNCHERS = {"wav2vec2_ctc_fsdp": ["-m", "accelerate.commands.launch", "--config_file",
                                   str(ROOT / "recipes/accelerate/fsdp.yaml"), "--num_processes", "1"]}  # fmt: skip


def ours(job: str, twin: Path, spec: dict) -> dict:
    recipe, _, batch_seconds = JOBS[job]
    batch_seconds *= spec["scale"]
    out = Path(spec["work"]) / f"ours-{job}"
    corpus = Path(spec["corpus"])
    cmd = [sys.executable, *LAUNCHERS.get(job, []), "-m", "slp_toolkit", "train", str(ROOT / "recipes" / recipe), f"model.name_or_path={twin}",
           f"data.train={corpus / 'train'}", f"data.eval={corpus / 'validation'}", "data.max_eval_samples=8",
           f"train.max_steps={spec['steps']}", f"train.eval_every={spec['steps']}", "train.log_every=1",
           f"train.batch_seconds={batch_seconds}", f"train.mixed_precision={spec['precision']}", f"output_dir={out}"]  # fmt: skip
    if job == "whisper_lora":
        cmd.append("model.max_new_tokens=16")  # random weights never stop: keep the closing eval short
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(spec))
    if done.returncode:
        return {"side": "ours", "job": job, "error": done.stderr[-1500:]}
    history = [h for h in json.loads((out / "history.json").read_text()) if "loss" in h]
    metrics = json.loads((out / "metrics.json").read_text())
    skip = max(1, len(history) // 10)
    steps, seconds = (
        history[-1]["step"] - history[skip - 1]["step"],
        history[-1]["elapsed"] - history[skip - 1]["elapsed"],
    )
    return {"side": "ours", "job": job, "s_per_step": round(seconds / max(steps, 1), 4),
            "audio_s_per_s": metrics["audio_seconds_per_second"], "peak_gpu_mib": metrics.get("peak_gpu_memory_mib"),
            "final_loss": round(history[-1]["loss"], 4)}  # fmt: skip


def _env(spec: dict) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if spec["device"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def clips(corpus: Path, max_seconds: float) -> list[dict]:
    """The train split decoded as our data layer decodes it (same reader, same normaliser, same limits)."""
    from slp_toolkit.data.splits import read_audio

    split = corpus / "train"
    with (split / "metadata.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        audio = read_audio(split / row["file_name"], RATE)
        if 0.5 <= len(audio) / RATE <= max_seconds:
            out.append({"audio": audio, "text": row["transcription"], "seconds": len(audio) / RATE})
    return out


def peer(job: str, twin: Path, spec: dict) -> dict:
    """The Trainer side, in this process (run as a child of main)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    recipe_file, _, batch_seconds = JOBS[job]
    batch_seconds *= spec["scale"]
    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / recipe_file).read_text())
    data = clips(Path(spec["corpus"]), recipe["data"]["max_seconds"])
    from slp_toolkit.data.batches import clip_costs

    # as many clips as our batches hold on average (Whisper: batch_seconds count a window per clip)
    window = 30.0 if job == "whisper_lora" else None
    costs = clip_costs([c["seconds"] for c in data], window)
    batch_size = max(1, round(batch_seconds / float(np.mean(costs))))
    build = _whisper_peer if job == "whisper_lora" else _ctc_peer
    model, processor, prepare, collator, trainer_cls, extra = build(twin, recipe)
    ds = Dataset.from_list([{"audio": c["audio"], "text": c["text"]} for c in data]).map(
        prepare, remove_columns=["audio", "text"]
    )
    marks: dict[str, float] = {}
    skip = max(1, spec["steps"] // 10)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == skip:
                marks["start"] = time.perf_counter()
            marks["end"] = time.perf_counter()

    from transformers import Seq2SeqTrainingArguments

    args = Seq2SeqTrainingArguments(
        output_dir=str(Path(spec["work"]) / f"peer-{job}"), per_device_train_batch_size=batch_size,
        learning_rate=recipe["train"]["learning_rate"], warmup_steps=max(1, spec["steps"] // 10), max_steps=spec["steps"],
        bf16=spec["precision"] == "bf16", logging_steps=10, save_strategy="no", eval_strategy="no", report_to=[],
        train_sampling_strategy="group_by_length", length_column_name="input_length", remove_unused_columns=False,
        dataloader_num_workers=4, use_cpu=spec["device"] == "cpu", **extra,
    )  # fmt: skip
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = trainer_cls(model=model, args=args, train_dataset=ds, data_collator=collator, callbacks=[Clock()])
    result = trainer.train()
    steps = spec["steps"] - skip
    seconds = marks["end"] - marks["start"]
    audio_per_step = batch_size * float(np.mean([c["seconds"] for c in data]))  # audio, not windows
    return {"side": "peer", "job": job, "s_per_step": round(seconds / max(steps, 1), 4),
            "audio_s_per_s": round(audio_per_step * steps / seconds, 2),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
            "final_loss": round(result.training_loss, 4)}  # fmt: skip


def _whisper_peer(twin: Path, recipe: dict):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Seq2SeqTrainer, WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(twin, language="english", task="transcribe")
    model = WhisperForConditionalGeneration.from_pretrained(twin)
    model.config.use_cache = False
    lora = recipe["lora"]
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             target_modules=lora["target_modules"]))  # fmt: skip

    def prepare(row):
        feats = processor.feature_extractor(row["audio"], sampling_rate=RATE).input_features[0]
        return {"input_features": feats, "labels": processor.tokenizer(row["text"]).input_ids,
                "input_length": len(row["audio"])}  # fmt: skip

    def collate(rows):
        feats = torch.tensor([r["input_features"] for r in rows], dtype=torch.float32)
        labels = processor.tokenizer.pad({"input_ids": [r["labels"] for r in rows]}, return_tensors="pt")
        ids = labels["input_ids"].masked_fill(labels["attention_mask"].ne(1), -100)
        if (ids[:, 0] == model.config.decoder_start_token_id).all():
            ids = ids[:, 1:]
        return {"input_features": feats, "labels": ids}

    extra = {"gradient_checkpointing": bool(recipe["model"].get("gradient_checkpointing")),
             "gradient_checkpointing_kwargs": {"use_reentrant": False}}  # fmt: skip
    return model, processor, prepare, collate, Seq2SeqTrainer, extra


def _ctc_peer(twin: Path, recipe: dict):
    import torch
    from transformers import Trainer, Wav2Vec2ForCTC

    from slp_toolkit.data.text import ctc_vocab, normalize_text
    from slp_toolkit.runtime.scratch import ctc_processor

    texts = [normalize_text(c["text"]) for c in clips(Path(SPEC["corpus"]), recipe["data"]["max_seconds"])]
    vocab, _ = ctc_vocab(texts)
    processor = ctc_processor(vocab)
    m = recipe["model"]
    model = Wav2Vec2ForCTC.from_pretrained(
        twin, vocab_size=len(processor.tokenizer), pad_token_id=processor.tokenizer.pad_token_id,
        ctc_loss_reduction="mean", mask_time_prob=m["mask_time_prob"], hidden_dropout=m["dropout"],
        attention_dropout=m["dropout"], activation_dropout=m["dropout"], feat_proj_dropout=m["dropout"],
        final_dropout=m["dropout"], layerdrop=0.0, ignore_mismatched_sizes=True,
    )  # fmt: skip
    if m.get("freeze_feature_encoder"):
        model.freeze_feature_encoder()

    def prepare(row):
        values = processor(audio=row["audio"], sampling_rate=RATE).input_values[0]
        return {"input_values": values, "input_length": len(values),
                "labels": processor(text=normalize_text(row["text"])).input_ids}  # fmt: skip

    def collate(rows):
        batch = processor.feature_extractor.pad(
            [{"input_values": r["input_values"]} for r in rows], return_tensors="pt"
        )
        labels = processor.tokenizer.pad({"input_ids": [r["labels"] for r in rows]}, return_tensors="pt")
        batch["labels"] = labels["input_ids"].masked_fill(labels["attention_mask"].ne(1), -100)
        return {k: torch.as_tensor(v) for k, v in batch.items()}

    return model, processor, prepare, collate, Trainer, {}


SPEC: dict = {}


def inference(spec: dict, models: dict[str, Path]) -> list[dict]:
    """Every inference command on the device: where the model ran (its own log line), wall time and real-time
    factor over the test split. CTC and Whisper are the trained full-size outputs when those jobs ran, else tiny
    checkpoints (as are emotion and TTS, whose quality is not the point here)."""
    from slp_toolkit.synth.tiny import write_tiny_checkpoints

    tiny = write_tiny_checkpoints(Path(spec["work"]) / "tiny")
    test = Path(spec["corpus"]) / "test"
    audio = sum(float(r["duration"]) for r in _durations(test))
    ctc, whisper = models.get("wav2vec2_ctc", tiny["wav2vec2-ctc"]), models.get("whisper_lora", tiny["whisper"])
    device = "cuda" if spec["device"] == "cuda" else "cpu"
    out = Path(spec["work"]) / "inference"
    out.mkdir(parents=True, exist_ok=True)
    import numpy as np

    dim = json.loads((tiny["speecht5-tts"] / "config.json").read_text())["speaker_embedding_dim"]
    np.save(out / "speaker.npy", np.zeros(dim, dtype=np.float32))  # the tiny model has no speaker table
    commands = {
        "eval ctc": ["eval", str(ctc), "--data", str(test), "--output-dir", str(out / "eval_ctc")],
        "transcribe ctc": ["transcribe", str(ctc), str(test)],
        "transcribe ctc beam": ["transcribe", str(ctc), str(test), "--decoder", "beam"],
        "eval whisper": ["eval", str(whisper), "--data", str(test), "--output-dir", str(out / "eval_whisper")],
        "classify emotion": ["classify", str(tiny["wav2vec2-emotion"]), str(test)],
        "synthesize tts": [
            "synthesize",
            str(tiny["speecht5-tts"]),
            "hello there",
            "-o",
            str(out / "tts.wav"),
            "--vocoder",
            str(tiny["speecht5-hifigan"]),
            "--speaker",
            str(out / "speaker.npy"),
        ],  # fmt: skip
    }
    slp = [sys.executable, "-m", "slp_toolkit"]
    runs = {name: [*slp, *args] for name, args in commands.items()}
    import torch

    if spec["device"] == "cuda" and torch.cuda.device_count() >= 2:  # a process per GPU, each a shard of the split
        runs["eval ctc, 2 GPUs"] = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                                    str(ROOT / "recipes/accelerate/ddp.yaml"), "--num_processes", "2",
                                    "-m", "slp_toolkit", *commands["eval ctc"]]  # fmt: skip
    rows = []
    for name, argv in runs.items():
        began = time.perf_counter()
        done = subprocess.run([*argv, "--device", device], capture_output=True, text=True, env=_env(spec))
        wall = time.perf_counter() - began
        placed = [line.rsplit(" on ", 1)[-1] for line in done.stderr.splitlines() if ": running on " in line]
        row = {"side": "inference", "job": name, "device": placed[-1] if placed else None, "wall_s": round(wall, 2)}
        if done.returncode or not placed or not placed[-1].startswith(device):
            row["error"] = (done.stderr or "the model's device was not logged")[-1500:]
        elif name != "synthesize tts":
            row["rtf"] = round(wall / max(audio, 1e-9), 4)  # the whole command: start-up and loading included
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _durations(split: Path) -> list[dict]:
    import soundfile as sf

    return [{"duration": sf.info(f).duration} for f in sorted(split.glob("*.flac"))]


def table(rows: list[dict]) -> str:
    runs = [r for r in rows if r["side"] == "inference"]
    rows = [r for r in rows if r["side"] != "inference"]
    lines = ["| job | side | s/step | audio-s/s | peak GPU MiB | final loss | ours / peer |", "|" + "---|" * 7]
    for r in rows:
        other = next((p for p in rows if p["job"] == r["job"] and p["side"] == "peer"), None)
        ratio = "" if r["side"] == "peer" or not other or "error" in r or "error" in other else \
            f"{r['audio_s_per_s'] / other['audio_s_per_s']:.2f}x"  # fmt: skip
        if "error" in r:
            lines.append(f"| {r['job']} | {r['side']} | error: {r['error'].splitlines()[-1][:80]} | | | | |")
            continue
        lines.append(f"| {r['job']} | {r['side']} | {r['s_per_step']} | {r['audio_s_per_s']} | {r['peak_gpu_mib']} "
                     f"| {r['final_loss']} | {ratio} |")  # fmt: skip
    if runs:
        lines += ["", "| command | model on | wall s (process) | real-time factor |", "|---|---|---|---|"]
        for r in runs:
            said = f"error: {r['error'].splitlines()[-1][:80]}" if "error" in r else r.get("rtf", "")
            lines.append(f"| slp {r['job']} | {r['device']} | {r['wall_s']} | {said} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--precision", choices=("bf16", "no"), default="bf16")
    p.add_argument("--corpus", type=Path, default=ROOT / ".gpu_carry" / "synth")
    p.add_argument("--work", type=Path, default=Path("/tmp/slp_gpu_check"))
    p.add_argument("--whisper", default="openai/whisper-small", help="twin for the LoRA job (tiny for smoke tests)")
    p.add_argument("--out", type=Path, default=None, help="JSON result (default WORK/gpu_check.json)")
    p.add_argument("--jobs", nargs="+", choices=[*JOBS, INFERENCE], default=[*JOBS, INFERENCE])
    p.add_argument("--scale", type=float, default=1.0, help="batch audio seconds x this (0.1 for a CPU smoke test)")
    p.add_argument("--peer", choices=list(JOBS), help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    spec = {"steps": args.steps, "device": args.device, "precision": args.precision, "corpus": str(args.corpus),
            "work": str(args.work), "scale": args.scale}  # fmt: skip
    SPEC.update(spec)
    from slp_toolkit.synth.twins import write_twin

    twins = {job: write_twin(args.whisper if job == "whisper_lora" else name, args.work / "twins")
             for job, (_, name, _) in JOBS.items() if job in args.jobs or job == args.peer}  # fmt: skip
    if args.peer:  # child: one Trainer side
        args.result.write_text(json.dumps(peer(args.peer, twins[args.peer], spec)))
        return
    rows = []
    for job in (j for j in args.jobs if j != INFERENCE):
        rows.append(ours(job, twins[job], spec))
        print(json.dumps(rows[-1]), flush=True)
        if job in LAUNCHERS:
            continue
        result = args.work / f"peer-{job}.json"
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--peer", job, "--result", str(result)],
                              capture_output=True, text=True, env=_env(spec))  # fmt: skip
        rows.append(json.loads(result.read_text()) if done.returncode == 0 else
                    {"side": "peer", "job": job, "error": done.stderr[-1500:]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    if INFERENCE in args.jobs:
        trained = {r["job"]: args.work / f"ours-{r['job']}" for r in rows if r["side"] == "ours" and "error" not in r}
        rows += inference(spec, trained)
    import torch

    device = torch.cuda.get_device_name() if args.device == "cuda" and torch.cuda.is_available() else "cpu"
    print(f"\n{time.strftime('%Y-%m-%d')}, {device}, {args.steps} steps, {args.precision}\n\n{table(rows)}")
    (args.out or args.work / "gpu_check.json").write_text(
        json.dumps({"spec": spec, "device": device, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
