"""Faults and bad input (#15). R1: every mutation of a shipped recipe ends valid or in one line naming the
file and key (exit 2), never a traceback. R3: runs killed at any moment, torn checkpoints and a full disk
lose nothing: `--resume` ends equal to the uninterrupted run."""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import SLP, losses, write_recipe

from slp_toolkit.cli import main
from slp_toolkit.training.checkpoint import SEAL, broken, checkpoints, seal

RECIPES = sorted(p for p in Path("recipes").glob("*/*.yaml") if p.parent.name != "accelerate")
MUTATIONS_PER_RECIPE = 60
ODD_VALUES = ["abc", 123, -5, 0, 1e30, -1e-9, [], {}, True, None, "", "1e-3", [1, "x"], {"a": 1}, "../../etc"]


def leaves(tree: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in tree.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out += leaves(value, (*prefix, key))
    return out


def parent_of(tree: dict, path: tuple) -> dict:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def mutate(text: str, rng: random.Random) -> str:
    """One random mutation: drop, rename, retype or re-enum a key, a missing path, or broken YAML."""
    kind = rng.choice(["drop", "rename", "retype", "retype", "enum", "path", "syntax", "duplicate"])
    if kind == "syntax":
        cut = rng.randrange(len(text))
        return rng.choice([text[:cut], text[:cut] + "{" + text[cut:], text[:cut] + "\t: :" + text[cut:],
                           text[:cut] + "\n  - x\n" + text[cut:]])  # fmt: skip
    if kind == "duplicate":
        section = rng.choice([line for line in text.splitlines() if line and line[0].isalpha()])
        return text + "\n" + section + "\n"
    tree = yaml.safe_load(text)
    path = rng.choice(leaves(tree))
    parent, key = parent_of(tree, path), path[-1]
    if kind == "drop":
        del parent[key]
    elif kind == "rename":
        i = rng.randrange(len(key))
        parent[key[:i] + rng.choice("xz_") + key[i + 1 :]] = parent.pop(key)
    elif kind == "retype":
        parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif kind == "enum":
        parent[key] = rng.choice(["fp32", "Scratch", "wav2vec3", "yes please", "SMALL"])
    else:
        tree.setdefault("data", {})["train"] = "/no/such/dir/train"
    return yaml.safe_dump(tree, sort_keys=False)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_mutation_of_a_shipped_recipe_is_valid_or_one_line(recipe, tmp_path, capsys):
    rng = random.Random(recipe.name)
    outcomes = {0: 0, 2: 0}
    original = recipe.read_text()
    for i in range(MUTATIONS_PER_RECIPE):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(mutate(original, rng))
        code = main(["validate", str(path)])
        out, err = capsys.readouterr()
        assert code in outcomes and "Traceback" not in out + err, (path.read_text(), err)
        outcomes[code] += 1
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), (path.read_text(), err)
    assert outcomes[2] >= MUTATIONS_PER_RECIPE // 4, outcomes  # most mutations are errors to catch


# ---------------------------------------------------------------- R3: kills, torn checkpoints, a full disk
KILL_TRIALS = 3  # in `make test`; the slow variant runs 20


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> dict:
    """The uninterrupted run every interrupted one must end equal to (40 steps, a checkpoint every 10)."""
    root = tmp_path_factory.mktemp("reference")
    began = time.perf_counter()
    subprocess.run([*SLP, "train", str(write_recipe(root, corpus))], check=True, capture_output=True, env=_env(root))
    out = root / "out"
    return {
        "out": out,
        "seconds": time.perf_counter() - began,
        "metrics": json.loads((out / "metrics.json").read_text()),
    }


def _env(root: Path) -> dict:
    # a cache of its own per run, so that kills also land while the decode cache is being written
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SLP_CACHE": str(root / "cache")}


def _kill_when(recipe: Path, env: dict, ready, timeout: float = 180) -> bool:
    """Start `slp train recipe` and SIGKILL it once `ready()` holds; False if it finished first."""
    proc = subprocess.Popen([*SLP, "train", str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while proc.poll() is None and not ready():
        assert time.time() < deadline, "the run neither finished nor reached the moment to kill it"
        time.sleep(0.002)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


def _resume(recipe: Path, env: dict) -> str:
    done = subprocess.run([*SLP, "train", str(recipe), "--resume"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def _assert_same_run(out: Path, reference: dict) -> None:
    a, b = reference["metrics"], json.loads((out / "metrics.json").read_text())
    assert a["step"] == b["step"] == 40
    assert b["cer"] == pytest.approx(a["cer"], abs=1e-6) and b["wer"] == pytest.approx(a["wer"], abs=1e-6)
    assert losses(out) == pytest.approx(losses(reference["out"]), rel=1e-4)
    assert not list(out.glob("**/.tmp-*"))


def test_sigkill_at_random_moments_always_resumes_to_the_same_run(tmp_path, corpus, reference):
    """Kills drawn uniformly over the whole run (start-up, decoding the cache, steps, evaluations,
    checkpoint writes, the final export), then `--resume`: the result equals the uninterrupted run."""
    _random_kills(tmp_path, corpus, reference, KILL_TRIALS)


@pytest.mark.slow
def test_twenty_random_sigkills(tmp_path, corpus, reference):
    """The long variant (about 10 minutes on 2 cores)."""
    _random_kills(tmp_path, corpus, reference, 20)


def _random_kills(tmp_path: Path, corpus: Path, reference: dict, trials: int) -> None:
    rng = random.Random(15)
    for trial in range(trials):
        root = tmp_path / f"t{trial}"
        root.mkdir()
        recipe, at = write_recipe(root, corpus), rng.uniform(0, reference["seconds"])
        began = time.perf_counter()
        _kill_when(recipe, _env(root), lambda: time.perf_counter() - began > at)  # noqa: B023
        _resume(recipe, _env(root))
        _assert_same_run(root / "out", reference)


def test_sigkill_during_a_checkpoint_write_resumes_from_the_one_before(tmp_path, corpus, reference):
    recipe, env, out = write_recipe(tmp_path, corpus), _env(tmp_path), tmp_path / "out"
    writing = out / "checkpoints" / ".tmp-step-0000020"
    assert _kill_when(recipe, env, writing.is_dir)
    assert [p.name for p in checkpoints(out)] == ["step-0000010"]  # the half-written one is not a checkpoint
    _resume(recipe, env)
    _assert_same_run(out, reference)


def test_sigkill_while_the_decode_cache_is_written_loses_nothing(tmp_path, corpus, reference):
    """Killed as soon as the decode cache's temp dir (or, if that was too quick to see, the cache) appears."""
    recipe, env, out = write_recipe(tmp_path, corpus), _env(tmp_path), tmp_path / "out"
    cache = tmp_path / "cache"
    assert _kill_when(recipe, env, lambda: cache.is_dir() and any(cache.rglob("*.arrow")))
    _resume(recipe, env)  # no checkpoint yet: --resume starts over, rebuilding or reusing the cache
    assert not list(cache.rglob(".tmp-*"))  # what the killed run half-wrote is gone, not read
    _assert_same_run(out, reference)


def test_a_torn_checkpoint_is_named_and_the_one_before_resumed(tmp_path, corpus, reference):
    recipe, env, out = write_recipe(tmp_path, corpus), _env(tmp_path), tmp_path / "out"
    newest = out / "checkpoints" / "step-0000020"
    assert _kill_when(recipe, env, lambda: (newest / SEAL).is_file() and newest.name in os.listdir(newest.parent))
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    log = _resume(recipe, env)
    assert f"{newest}: model.safetensors has" in log and "resuming from the checkpoint before it" in log
    _assert_same_run(out, reference)


def test_torn_checkpoints_are_told_apart_from_whole_ones(tmp_path):
    ckpt = tmp_path / "step-0000001"
    ckpt.mkdir()
    (ckpt / "state.json").write_text(json.dumps({"step": 1}))
    (ckpt / "model.safetensors").write_bytes(b"x" * 100)
    seal(ckpt)
    assert broken(ckpt) is None
    (ckpt / "model.safetensors").write_bytes(b"x" * 99)
    assert broken(ckpt) == "model.safetensors has 99 bytes, 100 were written"
    (ckpt / "model.safetensors").unlink()
    assert broken(ckpt) == "model.safetensors is missing"
    (ckpt / "state.json").write_text('{"step": 1')
    assert broken(ckpt).startswith("state.json unreadable")


def test_a_full_disk_at_a_checkpoint_is_one_line_and_loses_nothing(tmp_path, corpus, reference):
    """Output dir on a small tmpfs, filled up after checkpoint 10: checkpoint 20 cannot be written. One
    line says so, checkpoint 10 stays whole, nothing half-written is left, and `--resume` after freeing
    space ends equal to the uninterrupted run."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        recipe, env, out = write_recipe(disk, corpus), _env(tmp_path), disk / "out"
        first = out / "checkpoints" / "step-0000010"
        assert _kill_when(recipe, env, lambda: first.is_dir())
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        with filler.open("wb") as f:  # leave less room than one model file
            f.write(b"\0" * max(0, free - (out / "best" / "model.safetensors").stat().st_size // 2))
        done = subprocess.run([*SLP, "train", str(recipe), "--resume"], capture_output=True, text=True, env=env)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "step-0000010 is intact" in errors[0]
        assert broken(first) is None and not list(out.glob("**/.tmp-*"))
        filler.unlink()
        _resume(recipe, env)
        _assert_same_run(out, reference)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ---------------------------------------------------------------- R2: a zoo of bad audio and bad rows
GOOD = 8  # corpus clips that lead the zoo's metadata


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, corpus) -> Path:
    """An audiofolder of 8 good clips plus every kind of bad or odd file and row a user's data holds."""
    import csv

    import numpy as np
    import soundfile as sf

    d = tmp_path_factory.mktemp("zoo")
    with (corpus / "train" / "metadata.csv").open(newline="") as f:
        good = list(csv.DictReader(f))[:GOOD]
    rows = []
    for r in good:
        shutil.copy(corpus / "train" / r["file_name"], d / r["file_name"])
        rows.append((r["file_name"], r["transcription"]))
    wave, rate = sf.read(d / good[0]["file_name"], dtype="float32")
    rng = np.random.default_rng(0)
    odd = {  # file -> how to write it
        "empty.wav": lambda p: p.write_bytes(b""),
        "truncated.flac": lambda p: p.write_bytes((d / good[1]["file_name"]).read_bytes()[:300]),
        "wav_named.mp3": lambda p: sf.write(p, wave, rate, format="WAV"),
        "notes.wav": lambda p: p.write_text("these are meeting notes, not audio\n" * 50),
        "silent.wav": lambda p: sf.write(p, np.zeros(2 * rate, np.float32), rate),
        "nan.wav": lambda p: sf.write(p, np.full(rate, np.nan, np.float32), rate, subtype="FLOAT"),
        "u8.wav": lambda p: sf.write(p, wave, rate, subtype="PCM_U8"),
        "s24.wav": lambda p: sf.write(p, wave, rate, subtype="PCM_24"),
        "f64.wav": lambda p: sf.write(p, wave.astype(np.float64), rate, subtype="DOUBLE"),
        "8k.wav": lambda p: sf.write(p, wave[::2], 8000),
        "48k.flac": lambda p: sf.write(p, np.repeat(wave, 3), 48000),
        "six_channels.wav": lambda p: sf.write(p, np.stack([wave] * 6, axis=1), rate),
        "ten_minutes.flac": lambda p: sf.write(p, 0.01 * rng.standard_normal(600 * rate).astype(np.float32), rate),
        "no_permission.wav": lambda p: (sf.write(p, wave, rate), p.chmod(0)),
    }
    for name, write in odd.items():
        write(d / name)
        rows.append((name, good[0]["transcription"]))
    first = good[0]["file_name"]
    rows += [("missing.wav", "a file that is not there"), (first, ""), (first, "   "), (first, "naïve café, déjà vu"),
             (first, "🙂🙂🙂"), (first, "word " * 1000), rows[1]]  # fmt: skip
    with (d / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "transcription"])
        writer.writerows(rows)
    return d


UNREADABLE = {"empty.wav", "truncated.flac", "notes.wav", "nan.wav", "missing.wav"}
UNREADABLE_ROOT = UNREADABLE if os.geteuid() == 0 else UNREADABLE | {"no_permission.wav"}  # root reads anything


def test_training_on_the_zoo_skips_and_counts_every_bad_row(zoo, tmp_path, capsys, caplog):
    recipe = write_recipe(tmp_path, zoo, max_steps=6, eval_every=6)
    overrides = [f"data.train={zoo}", f"data.eval={zoo}", "data.max_seconds=20", "data.max_train_samples=100",
                 "data.max_eval_samples=100"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="slp"):
        assert main(["train", str(recipe), *overrides]) == 0
    assert "Traceback" not in capsys.readouterr().err
    log = [r.getMessage() for r in caplog.records]
    skipped = next(line for line in log if "metadata.csv: skipped" in line)
    counts = {"missing file": 1, "empty text": 3, "empty file (0 bytes)": 1, "NaN or infinite samples": 1,
              "unreadable audio": 2}  # fmt: skip
    for reason, n in counts.items():
        assert f"{n} {reason}" in skipped or f"{n} audio has {reason}" in skipped, skipped
    assert f"skipped {sum(counts.values())} of " in skipped and f"{zoo}/metadata.csv:" in skipped  # file:line
    assert any("1 rows repeat an earlier row (kept)" in line and "(same as line 3)" in line for line in log)
    assert any("and 1 longer than data.max_seconds" in line for line in log)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["step"] == 6


def test_eval_transcribe_and_classify_take_the_zoo(zoo, ctc_run, tmp_path, capsys):
    import torch

    from slp_toolkit.runtime.scratch import build_audio_classifier

    assert main(["eval", str(ctc_run), "--data", str(zoo), "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] >= GOOD and "Traceback" not in capsys.readouterr().err
    torch.manual_seed(0)
    model, extractor = build_audio_classifier(["angry", "happy", "neutral", "sad"])
    model.save_pretrained(tmp_path / "emotion"), extractor.save_pretrained(tmp_path / "emotion")
    audio = sorted(p for p in zoo.iterdir() if p.name != "metadata.csv")
    for command in (["transcribe", str(ctc_run)], ["classify", str(tmp_path / "emotion")]):
        assert main([*command, *map(str, audio), str(zoo / "missing.wav"), "--json"]) == 0
        out, err = capsys.readouterr()
        printed = [Path(json.loads(line)["path"]).name for line in out.splitlines()]
        assert printed == [p.name for p in audio if p.name not in UNREADABLE_ROOT], err  # input order, rest done
        for name in UNREADABLE_ROOT:
            assert sum(line.startswith(str(zoo / name)) and "skipped" in line for line in err.splitlines()) == 1
        assert "Traceback" not in err
        assert main([*command, str(zoo / "notes.wav"), str(audio[0]), "--strict"]) == 1
        capsys.readouterr()


def test_the_demo_answers_every_zoo_file(zoo, ctc_run):
    from slp_toolkit.serve import demo

    served, _ = demo.load_models({"asr": str(ctc_run)})
    answer = demo._answer("", lambda path: demo.transcribe(served["asr"], demo.Limits(), path))
    for path in sorted(p for p in zoo.iterdir() if p.name != "metadata.csv"):
        text, message = answer(str(path))
        assert not message.startswith("Error"), (path.name, message)  # every case is a known one
        assert message.startswith("Transcribed") == (path.name not in UNREADABLE_ROOT | {"ten_minutes.flac"})


# ---------------------------------------------------------------- R5: no code or pickle runs from a model dir
def test_a_model_dir_asking_for_remote_code_is_refused_in_one_line(tmp_path, corpus, capsys):
    """config.json with an auto_map to a .py beside it: nothing of it runs (trust_remote_code stays off)."""
    model = tmp_path / "evil_model"
    model.mkdir()
    marker = tmp_path / "code_ran"
    (model / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilForCTC"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCTC": "evil.EvilForCTC"},
    }))  # fmt: skip
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    for command in (["eval", str(model), "--data", str(corpus / "test")], ["transcribe", str(model), str(corpus)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and str(model) in err, err
    assert not marker.exists()
