"""Recipe validation: each error class gives one exact line and exit code 2, before torch is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slp_toolkit.cli import main, shipped_recipes
from slp_toolkit.config import ConfigError, load_recipe

GOOD = """\
# A test recipe.
task: asr_ctc
model: {init: scratch, preset: tiny}
data: {train: DATA, eval: DATA}
train: {learning_rate: 1.0e-3, max_steps: 10}
output_dir: OUT
"""


@pytest.fixture
def recipe(tmp_path):
    data = tmp_path / "data"
    data.mkdir()

    def write(text: str = GOOD) -> Path:
        path = tmp_path / "r.yaml"
        path.write_text(text.replace("DATA", str(data)).replace("OUT", str(tmp_path / "out")))
        return path

    return write


def run_cli(args, capsys) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, (captured.err + captured.out).strip()


def test_good_recipe_loads_with_typed_overrides(recipe):
    r = load_recipe(recipe(), ["train.learning_rate=1e-4", "train.max_steps=7", "model.mask_time_prob=0"])
    assert r.train.learning_rate == pytest.approx(1e-4) and isinstance(r.train.learning_rate, float)
    assert r.train.max_steps == 7 and r.model.mask_time_prob == 0.0
    assert r.model.preset == "tiny" and r.data.max_seconds == 20.0  # the dataclass default


@pytest.mark.parametrize(
    ("edit", "override", "message"),
    [
        (
            ("learning_rate", "lerning_rate"),
            None,
            "{f}: unknown key 'train.lerning_rate' (did you mean 'train.learning_rate'?)",
        ),
        (
            None,
            "train.lerning_rate=1",
            "<command line>: unknown key 'train.lerning_rate' (did you mean 'train.learning_rate'?)",
        ),
        (
            ("task: asr_ctc\n", ""),
            None,
            "{f}: missing required key 'task' (one of 'asr_ctc', 'asr_seq2seq', 'emotion', 'tts')",
        ),
        (
            ("learning_rate: 1.0e-3", "learning_rate: fast"),
            None,
            "{f}: 'train.learning_rate' must be a number, got 'fast' (str)",
        ),
        (None, "train.max_steps=2.5", "<command line>: 'train.max_steps' must be an integer, got 2.5 (float)"),
        (("learning_rate: 1.0e-3", "learning_rate: -1"), None, "{f}: 'train.learning_rate' must be > 0.0, got -1.0"),
        (None, "model.mask_time_prob=1.5", "<command line>: 'model.mask_time_prob' must be <= 1.0, got 1.5"),
        (
            None,
            "train.mixed_precision=fp32",
            "<command line>: 'train.mixed_precision' must be one of 'no', 'fp16', 'bf16', got 'fp32' (did you mean 'fp16'?)",
        ),
        (
            ("task: asr_ctc", "task: asr_cts"),
            None,
            "{f}: 'task' must be one of 'asr_ctc', 'asr_seq2seq', 'emotion', 'tts', got 'asr_cts' (did you mean 'asr_ctc'?)",
        ),
        (None, "data.train=/no/such/dir", "<command line>: 'data.train' path does not exist: /no/such/dir"),
        (("init: scratch, ", ""), None, "{f}: missing required key 'model.name_or_path' (or set model.init: scratch)"),
        (("data: {train: DATA, eval: DATA}\n", ""), None, "{f}: missing required key 'data.train'"),
        (
            ("output_dir: OUT\n", "output_dir: OUT\noutput_dir: OUT2\n"),
            None,
            "{f}: duplicate key 'output_dir' (line 7; first on line 6): keep one",
        ),
        (
            ("task: asr_ctc", "task: [asr_ctc]"),
            None,
            "{f}: 'task' must be one of 'asr_ctc', 'asr_seq2seq', 'emotion', 'tts', got ['asr_ctc'] (did you mean 'asr_ctc'?)",
        ),
        (
            None,
            "model.name_or_path=outputs/ctc_quickstart",
            "<command line>: 'model.name_or_path' is not used with model.init: scratch (a random model is built from "
            "model.preset); to fine-tune it, add model.init=pretrained, else drop model.name_or_path",
        ),
        (
            ("init: scratch, preset: tiny", "name_or_path: facebook/wav2vec2-base, preset: tiny"),
            None,
            "{f}: 'model.preset' applies to model.init: scratch only (a checkpoint brings its own architecture); "
            "drop it, or set model.init: scratch",
        ),
        (
            None,
            "data.pack=true",
            "<command line>: 'data.pack' joins clips into a model's fixed input window; task asr_ctc has none "
            "(tasks that pack: asr_seq2seq); drop data.pack",
        ),
        (None, "train=3", "<command line>: 'train' must be a mapping of keys, got 3 (int)"),
        (None, "learning_rate", "<command line>: override 'learning_rate' must look like key.sub=value"),
    ],
)
def test_each_error_is_one_exact_line_with_exit_2(recipe, capsys, edit, override, message):
    text = GOOD if edit is None else GOOD.replace(*edit)
    path = recipe(text)
    args = ["train", str(path)] + ([override] if override else [])
    code, out = run_cli(args, capsys)
    assert code == 2
    assert out == "error: " + message.format(f=path)


def test_bad_yaml_names_the_line(recipe, capsys):
    code, out = run_cli(["validate", str(recipe(GOOD + "train: [\n"))], capsys)
    assert code == 2 and out.startswith("error: ") and "not valid YAML (line" in out and "\n" not in out


def test_validate_imports_no_torch(recipe):
    """Each task module is imported to read its model section and checks: none of them may pull in torch
    or transformers at import (what keeps `slp validate` at a fraction of a second)."""
    code = (
        "import sys; from slp_toolkit.cli import main, shipped_recipes;"
        "rc = max(main(['validate', p]) for p in [sys.argv[1], *map(str, shipped_recipes())]);"
        "from slp_toolkit.tasks import TASKS; assert len(TASKS) == 4, sorted(TASKS);"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules];"
        "assert not heavy, heavy; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(recipe())], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_shipped_recipe_validates(capsys):
    recipes = shipped_recipes()
    assert recipes, "no recipes found under recipes/"
    for path in recipes:
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err
        text = path.read_text().splitlines()
        assert text[0].startswith("# ") and "slp " in text[1], f"{path}: must open with what it does and its command"


def test_saved_recipe_round_trips(recipe, tmp_path):
    from slp_toolkit.config import save_recipe

    r = load_recipe(recipe(), ["train.seed=5"])
    save_recipe(r, tmp_path / "saved.yaml")
    assert load_recipe(tmp_path / "saved.yaml") == r
    # a pretrained run's saved recipe spells out every default, model.preset too: it still loads
    overrides = ["model.init=pretrained", "model.name_or_path=facebook/wav2vec2-base", "model.preset=small"]
    pretrained = load_recipe(recipe(), overrides)
    save_recipe(pretrained, tmp_path / "saved_pretrained.yaml")
    assert load_recipe(tmp_path / "saved_pretrained.yaml") == pretrained


def test_ls_and_cp(tmp_path, capsys):
    assert main(["ls"]) == 0
    listing = capsys.readouterr().out
    assert "asr/ctc_quickstart" in listing
    assert main(["cp", "asr/ctc_quickstart", str(tmp_path)]) == 0
    assert (tmp_path / "ctc_quickstart.yaml").is_file()
    assert main(["cp", "asr/ctc_quickstart", str(tmp_path)]) == 2  # no silent overwrite


def test_raises_config_error_type(recipe):
    with pytest.raises(ConfigError):
        load_recipe(recipe(), ["train.max_steps=0"])


def test_unquoted_yaml_no_and_off_mean_the_enum_words(recipe):
    """`train.mixed_precision=no` on the command line is YAML 1.1's False; the key's own words win."""
    assert load_recipe(recipe(), ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match="must be one of 'no', 'fp16', 'bf16', got True"):
        load_recipe(recipe(), ["train.mixed_precision=yes"])
