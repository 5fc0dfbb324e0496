"""Test-and-demo tooling, apart from the product (train / evaluate / serve / data):

- corpus, sentences, espeak: the synthetic espeak-ng speech corpus (`slp data synth`);
- tiny: tiny random checkpoints with real processors (`slp tiny`), built by the product's scratch builders
  (runtime/scratch.py, `model.init: scratch`); nothing of the product imports this folder but the CLI's commands;
- twins: full-size random twins of Hub checkpoints (`slp tiny --full-size`);
- families: tiny random checkpoints of every family transformers maps to the tasks (`slp tiny --family`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def checkpoints(out: str | Path, full_size: list[str] | None = None, family: list[str] | None = None) -> Iterator[str]:
    """`slp tiny`: writes the asked checkpoints into `out`, yielding a "name: path" line for each; an unknown
    name is a ValueError naming the known ones (`all` asks for every one)."""
    if family:
        from slp_toolkit.synth.families import SHAPES, heads_of, write_family

        names = sorted(SHAPES) if "all" in family else family
        _known(names, SHAPES, "--family", "no tiny shape for it")
        for name in names:
            yield from (f"{name} ({head}): {write_family(name, head, out)}" for head in heads_of(name))
    elif full_size:
        from slp_toolkit.synth.twins import TWINS, write_twin

        names = list(TWINS) if "all" in full_size else full_size
        _known(names, TWINS, "--full-size", "no twin of it")
        yield from (f"{name}: {write_twin(name, out)}" for name in names)
    else:
        from slp_toolkit.synth.tiny import write_tiny_checkpoints

        yield from (f"{name}: {path}" for name, path in write_tiny_checkpoints(out).items())


def _known(names: list[str], known, flag: str, why: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{flag} {unknown[0]}: {why}; choose from {', '.join(sorted(known))} or all")
