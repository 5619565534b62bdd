"""Process checks shared by the services supervisor and the loaders' run bookkeeping, and the garbage
collector's pace for the allocation-heavy stretches of the generator, the feedback loader and dbt."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from pathlib import Path

# Python's cyclic garbage collector runs its youngest generation every 700 container allocations, and each of
# its older collections walks every object still alive. The generator's world and the feedback loader's
# batches allocate millions of short-lived tuples, lists and dicts, make no cycles worth collecting, and keep
# many objects alive while they do; so does dbt (its manifest, a Jinja context per node, runtime/dbt_cli.py):
# there, every 50,000 allocations is enough (docs/benchmarks.md).
FEWER_COLLECTIONS = (50_000, 20, 20)


@contextlib.contextmanager
def fewer_collections(threshold: tuple[int, int, int] = FEWER_COLLECTIONS) -> Iterator[None]:
    """The garbage collector's thresholds set to ``threshold`` for the block (and in children forked in it),
    then set back."""
    before = gc.get_threshold()
    gc.set_threshold(*threshold)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True
