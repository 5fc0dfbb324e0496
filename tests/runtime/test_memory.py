"""The heap guard really hands freed memory back (glibc), and a recipe key turns it off."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import sys
from slp_toolkit.runtime import memory
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 // 2**20
memory.configure(int(sys.argv[1]) if sys.argv[1] != 'off' else None)
memory.trim()                      # sets the floor
junk = [bytearray(1500) for _ in range(200_000)]   # ~300 MB of malloc'd chunks in the heap
keep = junk[::1000]
del junk                           # freed, but glibc keeps the pages
before = rss()
memory.trim()                      # grown past the slack since the floor: trimmed
print(before, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
@pytest.mark.parametrize("slack, trims", [("64", True), ("off", False)])
def test_guard_returns_freed_heap_only_when_enabled(slack, trims):
    done = subprocess.run([sys.executable, "-c", CODE, slack], capture_output=True, text=True, check=True)
    before, after = map(int, done.stdout.split())
    assert before > 250
    assert (before - after > 200) == trims, (before, after)


def test_trim_memory_key_is_validated(tmp_path):
    from slp_toolkit.config import ConfigError, load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "task: asr_ctc\nmodel: {init: scratch}\ndata: {train: .}\ntrain: {max_steps: 1, trim_memory_mb: 4}\n"
    )
    with pytest.raises(ConfigError, match=r"'train.trim_memory_mb' must be >= 16, got 4"):
        load_recipe(path)
    assert load_recipe(path, ["train.trim_memory_mb=null"]).train.trim_memory_mb is None
