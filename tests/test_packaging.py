"""A runtime install (`pip install slp_toolkit`, no [dev] extras) has every module the package imports:
each import in slp_toolkit/ resolves to the standard library, the package itself or a runtime dependency
(directly or through one), unless it sits in a try/except ImportError. Found by it before: scratch Whisper
needed openai-whisper's vocabulary, a dev extra."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "slp_toolkit"


def _name(requirement: str) -> str | None:
    """The distribution a requirement names, None for one behind an extra (e.g. `extra == "dev"`)."""
    if re.search(r"extra\s*==", requirement):
        return None
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def runtime_closure() -> set[str]:
    todo, seen = [n for r in md.requires("slp_toolkit") or [] if (n := _name(r))], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += [n for r in md.requires(name) or [] if (n := _name(r))]
        except md.PackageNotFoundError:  # an optional platform dependency not installed here
            pass
    return seen


def imports(path: Path) -> list[tuple[str, int]]:
    """(top-level module, line) of every import not guarded by `except ImportError`."""
    tree = ast.parse(path.read_text())
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def test_every_import_is_a_runtime_dependency():
    allowed = runtime_closure()
    assert {"transformers", "torch", "gradio"} <= allowed  # the walk itself works
    owners = md.packages_distributions()
    missing = []
    # resources/*_build.py rebuild shipped data files: maintainers' scripts, never imported
    for path in sorted(p for p in PACKAGE.rglob("*.py") if "resources" not in p.parts):
        for module, line in imports(path):
            if module in sys.stdlib_module_names or module == "slp_toolkit":
                continue
            dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
            if not dists & allowed:
                missing.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} ({', '.join(dists) or '?'})"
                )
    assert not missing, "\n".join(missing)


def test_the_check_catches_a_dev_only_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text(
        "import os\ndef f():\n    import whisper\ntry:\n    import selenium\nexcept ImportError:\n    pass\n"
    )
    assert imports(sample) == [("os", 1), ("whisper", 3)]
    assert "openai-whisper" not in runtime_closure() and "selenium" not in runtime_closure()


def test_package_metadata_builds_without_a_warning(tmp_path):
    """`make setup` once printed a page of setuptools deprecations (a `license` table); now any warning fails."""
    import subprocess

    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("pip builds with setuptools>=77 in isolation; this environment has an older one")
    code = "import sys; from setuptools import build_meta; build_meta.prepare_metadata_for_build_wheel(sys.argv[1])"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code, str(tmp_path)], cwd=PACKAGE.parent,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Deprecat" not in done.stdout + done.stderr


def test_no_unpickling_without_weights_only():
    """Any torch.load in the package passes weights_only=True; pickle.load(s) is not used at all."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
            if (owner == "torch" and node.func.attr == "load" and not safe) or (
                owner in ("pickle", "dill", "joblib") and node.func.attr in ("load", "loads")
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, found
