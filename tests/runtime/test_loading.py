"""The one mapper from recipe keys to a model config (runtime/loading.py), on the configs of every family the
tasks build: only the keys a recipe sets change a pretrained config, and a scratch model gets 0 for the rest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transformers import HubertConfig, SpeechT5Config, Wav2Vec2Config, WhisperConfig

from slp_toolkit.runtime.loading import ModelLoadError, apply_settings, scratch_values

DROPOUTS = {
    "wav2vec2": ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout", "final_dropout"),
    "hubert": ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout", "final_dropout"),
    "whisper": ("dropout", "attention_dropout", "activation_dropout"),
    "speecht5": ("hidden_dropout", "attention_dropout", "activation_dropout"),
}
CONFIGS = {"wav2vec2": Wav2Vec2Config, "hubert": HubertConfig, "whisper": WhisperConfig, "speecht5": SpeechT5Config}


def layerdrops(config) -> list[float]:
    return [getattr(config, n) for n in ("layerdrop", "encoder_layerdrop", "decoder_layerdrop") if hasattr(config, n)]


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_a_pretrained_config_keeps_what_the_recipe_leaves_unset(family):
    config = CONFIGS[family]()
    for name in DROPOUTS[family]:
        setattr(config, name, 0.1)
    for name in ("layerdrop", "encoder_layerdrop", "decoder_layerdrop"):
        if hasattr(config, name):
            setattr(config, name, 0.1)
    apply_settings(config, {"dropout": None, "layerdrop": None}, set(), family)
    assert [getattr(config, n) for n in DROPOUTS[family]] == [0.1] * len(DROPOUTS[family])
    assert layerdrops(config) and set(layerdrops(config)) == {0.1}
    apply_settings(config, {"dropout": 0.2, "layerdrop": 0.0}, {"dropout"}, family)
    assert [getattr(config, n) for n in DROPOUTS[family]] == [0.2] * len(DROPOUTS[family])
    assert set(layerdrops(config)) == {0.0}


def test_a_setting_the_family_lacks_is_one_line_only_when_the_recipe_set_it():
    config = WhisperConfig()
    assert apply_settings(config, {"ctc_zero_infinity": True}, set(), "whisper") == ["ctc_zero_infinity"]
    with pytest.raises(
        ModelLoadError, match=r"^model.ctc_zero_infinity: whisper models .* drop model.ctc_zero_infinity"
    ):
        apply_settings(config, {"ctc_zero_infinity": True}, {"ctc_zero_infinity"}, "whisper")


def test_a_scratch_model_gets_zero_or_its_default_for_unset_keys():
    settings = {"dropout": None, "layerdrop": 0.3, "mask_time_prob": None, "apply_spec_augment": None}
    assert scratch_values(settings, {"mask_time_prob": 0.05, "apply_spec_augment": False}) == {
        "dropout": 0.0,
        "layerdrop": 0.3,
        "mask_time_prob": 0.05,
        "apply_spec_augment": False,
    }


def test_no_task_names_a_family_config_attribute():
    """The mapping is written once: a task names recipe keys, never hidden_dropout or encoder_layerdrop."""
    tasks = Path(__file__).parents[2] / "slp_toolkit" / "tasks"
    names = re.compile(r"\b(hidden|attention|activation|feat_proj|final)_dropout\b|\b(en|de)coder_layerdrop\b")
    found = [f"{p.name}: {m.group(0)}" for p in tasks.glob("*.py") for m in names.finditer(p.read_text())]
    assert not found
