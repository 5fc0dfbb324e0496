"""Faults and bad input (#15): every mutation of a shipped recipe ends valid or in one line naming the
file and key (exit 2), never a traceback."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import yaml

from slp_toolkit.cli import main

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
