"""The recipe's augment: section: each transform does what it says, draws repeat for the same position,
and a bad noise folder is one line naming the key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from helpers import losses

from slp_toolkit.cli import main
from slp_toolkit.config import AugmentConfig, ConfigError, recipe_from_dict
from slp_toolkit.data.augment import Augmenter, mix_at_snr, power, reverberate

RATE = 16000


def speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (
        np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    ).astype(np.float32)


def only(**kw) -> Augmenter:
    return Augmenter(AugmentConfig(**kw), RATE)


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble", "dir"])
def test_noise_is_mixed_at_the_drawn_snr(kind, tmp_path):
    clean = [speech_like(2.0, s) for s in range(4)]
    sf.write(tmp_path / "hum.wav", speech_like(0.7, 9) * 0.3, RATE)  # shorter than the clip: tiled
    aug = only(noise_prob=1.0, noise_types=[kind], noise_dir=str(tmp_path), snr_db=[10.0, 10.0])
    noisy = aug.one(clean[0], clean, 0, np.random.default_rng(0))
    snr = 10 * np.log10(power(clean[0]) / power(noisy - clean[0]))
    assert snr == pytest.approx(10.0, abs=0.5) and len(noisy) == len(clean[0])


def test_mix_at_snr_hits_any_target():
    clean, noise = speech_like(), np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    for target in (0.0, 7.5, 30.0):
        mixed = mix_at_snr(clean, noise, target)
        assert 10 * np.log10(power(clean) / power(mixed - clean)) == pytest.approx(target, abs=0.5)


def test_speed_1_1_shortens_by_1_over_1_1_and_reverb_keeps_length(tmp_path):
    clip = speech_like(3.0)
    fast = only(speed_prob=1.0, speeds=[1.1]).one(clip, [clip], 0, np.random.default_rng(0))
    assert abs(len(fast) - len(clip) / 1.1) <= 2
    wet = only(reverb_prob=1.0).one(clip, [clip], 0, np.random.default_rng(0))
    assert len(wet) == len(clip) and not np.allclose(wet, clip)
    assert power(wet) == pytest.approx(power(clip), rel=1e-3)  # level kept
    sf.write(tmp_path / "rir.wav", np.r_[np.zeros(50), 1.0, 0.5 * np.exp(-np.arange(3000) / 400)], RATE)
    from_dir = only(reverb_prob=1.0, rir_dir=str(tmp_path)).one(clip, [clip], 0, np.random.default_rng(0))
    assert len(from_dir) == len(clip)
    assert np.corrcoef(from_dir, reverberate(clip, np.r_[1.0, 0.5 * np.exp(-np.arange(3000) / 400)]))[0, 1] > 0.99


def test_telephone_gain_and_clipping():
    clip = speech_like() + 0.3 * np.sin(2 * np.pi * 6000 * np.arange(2 * RATE) / RATE).astype(np.float32)
    phone = only(telephone_prob=1.0).one(clip, [clip], 0, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(phone))
    freqs = np.fft.rfftfreq(len(phone), 1 / RATE)
    assert spectrum[freqs > 3500].max() < 1e-2 * spectrum.max()  # >= 40 dB down (G.712 asks 25-35 dB)
    louder = only(gain_prob=1.0, gain_db=[6.0, 6.0]).one(clip, [clip], 0, np.random.default_rng(0))
    assert 10 * np.log10(power(louder) / power(clip)) == pytest.approx(6.0, abs=0.01)
    clipped = only(clip_prob=1.0).one(clip, [clip], 0, np.random.default_rng(0))
    assert np.abs(clipped).max() < 0.81 * np.abs(clip).max()


def test_same_seed_and_position_same_output_other_positions_differ():
    batch = [{"audio": speech_like(2.0, s), "text": "x"} for s in range(3)]
    aug = only(speed_prob=0.5, reverb_prob=0.5, noise_prob=1.0, gain_prob=0.5)
    a = aug(batch, np.random.default_rng([0, 0, 3, 7]))
    b = aug(batch, np.random.default_rng([0, 0, 3, 7]))
    c = aug(batch, np.random.default_rng([0, 0, 3, 8]))
    assert all(np.array_equal(x["audio"], y["audio"]) for x, y in zip(a, b))
    assert not all(len(x["audio"]) == len(y["audio"]) and np.allclose(x["audio"], y["audio"]) for x, y in zip(a, c))
    assert [e["text"] for e in a] == ["x"] * 3


def test_bad_augment_settings_are_one_line_naming_the_key(tmp_path, corpus, capsys):
    base = {"task": "asr_ctc", "model": {"init": "scratch"}, "data": {"train": str(corpus / "train")},
            "train": {"max_steps": 1}}  # fmt: skip
    with pytest.raises(ConfigError, match="augment.snr_db"):
        recipe_from_dict({**base, "augment": {"snr_db": [30, 5]}})
    with pytest.raises(ConfigError, match="augment.noise_types"):
        recipe_from_dict({**base, "augment": {"noise_types": ["pinkk"]}})
    recipe = tmp_path / "r.yaml"
    (tmp_path / "empty").mkdir()
    for noise_dir, message in [(tmp_path / "nowhere", "'augment.noise_dir' is not a folder"),
                               (tmp_path / "empty", "augment.noise_dir: no audio files")]:  # fmt: skip
        spec = {**base, "augment": {"noise_prob": 1.0, "noise_types": ["dir"], "noise_dir": str(noise_dir)},
                "output_dir": str(tmp_path / "out")}  # fmt: skip
        recipe.write_text("# t\n#   slp train r.yaml\n" + json.dumps(spec))
        assert main(["train", str(recipe)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err


def test_a_resumed_run_repeats_augmentation_exactly(tmp_path, corpus):
    """SIGKILL after a checkpoint, resume: the last losses equal an uninterrupted run's (noise, speed and
    reverb are drawn from the batch position, not from a running generator); without the prefetching
    worker the run is the same."""
    import os
    import subprocess

    from helpers import SLP, kill_and_resume

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    spec = {"task": "asr_ctc", "model": {"init": "scratch", "preset": "tiny", "mask_time_prob": 0.0},
            "data": {"train": str(corpus / "train"), "eval": str(corpus / "validation"), "max_train_samples": 8,
                     "max_eval_samples": 2},
            "augment": {"speed_prob": 0.5, "reverb_prob": 0.5, "noise_prob": 0.8},
            "train": {"max_steps": 30, "eval_every": 10, "batch_seconds": 8, "num_threads": 1, "log_every": 1}}  # fmt: skip
    recipes = {}
    for name in ("full", "cut", "serial"):
        recipes[name] = tmp_path / f"{name}.yaml"
        recipe = {**spec, "output_dir": str(tmp_path / name)}
        if name == "serial":  # no prefetching worker: the same batches, in the same order
            recipe["train"] = {**spec["train"], "prefetch": False}
        recipes[name].write_text("# t\n#   slp train r.yaml\n" + json.dumps(recipe))
    for name in ("full", "serial"):
        subprocess.run([*SLP, "train", str(recipes[name])], check=True, capture_output=True, env=env)
    kill_and_resume(recipes["cut"], tmp_path / "cut", env, at_step=10)
    assert losses(tmp_path / "cut")[-5:] == pytest.approx(losses(tmp_path / "full")[-5:], rel=1e-4)
    assert losses(tmp_path / "serial") == pytest.approx(losses(tmp_path / "full"), rel=1e-4)
