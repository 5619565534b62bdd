"""The embedded Postgres's settings for bulk loads and analytical builds, sized to the machine.

initdb's defaults suit a small transactional server: 128 MB of shared buffers, 4 MB per sort or hash and a
checkpoint every gigabyte of WAL. The raw tables are loaded in large COPY batches into indexes keyed by
random ids (event_id, appointment_id), and once those indexes outgrow the buffers every checkpoint makes
the next change of each page write the whole page to the WAL again: loading 5M event rows wrote 9.7 GiB
of WAL with the defaults and 3.9 GiB with these settings, and the last 500k rows went in at 26k rows/s
against 35k (docs/benchmarks.md, "The embedded server's settings").

The settings go to ``telemed.conf`` in the data directory, rewritten at every start, which
``postgresql.conf`` includes. ``ALTER SYSTEM`` (postgresql.auto.conf, read after both) overrides any of
them, and a configured server (PGHOST) is never touched. TELEMED_PG_MEMORY_MB sizes the server to less
than the whole machine (memory_for).
"""

from __future__ import annotations

import os
from pathlib import Path

TUNING_FILE = "telemed.conf"
INCLUDE_LINE = f"include_if_exists = '{TUNING_FILE}'"
MB = 1024 * 1024
GB = 1024 * MB


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _size(value: int) -> str:
    """A size as Postgres shows it: in GB when whole, else in (whole) MB."""
    return f"{value // GB}GB" if value % GB == 0 else f"{value // MB}MB"


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit when lower."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


def memory_for(memory_mb: int | None) -> int:
    """The memory to size a server to: ``memory_mb`` (TELEMED_PG_MEMORY_MB) when given, else the machine's.
    `make test` gives each of its servers 1 GB: several run at once, and none should size itself to the
    whole machine."""
    return memory_mb * MB if memory_mb else machine_memory()


def server_settings(memory: int) -> dict[str, str]:
    """The settings for a machine of ``memory`` bytes: a quarter of it for shared buffers (128 MB to 4 GB),
    a 512th per sort or hash (4 to 64 MB), a 32nd for index builds and vacuum (64 MB to 1 GB); checkpoints
    every 8 GB of WAL or 15 minutes (a soft bound on the WAL folder's size, recycled after); the least WAL
    (``minimal``: no replication); parallel plans for queries that return many rows."""
    return {
        "shared_buffers": _size(_clamp(memory // 4, 128 * MB, 4 * GB) // MB * MB),
        "work_mem": _size(_clamp(memory // 512, 4 * MB, 64 * MB) // MB * MB),
        "maintenance_work_mem": _size(_clamp(memory // 32, 64 * MB, GB) // MB * MB),
        "max_wal_size": "8GB",
        "checkpoint_timeout": "15min",
        # A development server with no replica and no archive: the WAL serves crash recovery only, so a table
        # created in the transaction that fills it (every table dbt builds) is written once, not twice.
        "wal_level": "minimal",
        "max_wal_senders": "0",
        # A tenth of the default cost of handing a row from a parallel worker to the leader: builds that return
        # many rows (a window over every event) then sort and compute in parallel when the cores are free.
        "parallel_tuple_cost": "0.01",
    }


def render(settings: dict[str, str]) -> str:
    lines = [
        "# telemed-elt: written by runtime/pgtuning.py at every start of the embedded server; edits here are",
        "# lost. Override a setting with ALTER SYSTEM (postgresql.auto.conf is read after this file).",
    ]
    return "\n".join([*lines, *(f"{name} = '{value}'" for name, value in settings.items())]) + "\n"


def write(data: Path, memory: int) -> list[Path]:
    """Write the settings for ``memory`` bytes into the data directory ``data`` and include them from
    postgresql.conf (once); returns the files written, for the caller to give to the server's user."""
    tuning = data / TUNING_FILE
    tuning.write_text(render(server_settings(memory)))
    written = [tuning]
    conf = data / "postgresql.conf"
    text = conf.read_text()
    if INCLUDE_LINE not in text.splitlines():
        with conf.open("a") as out:
            out.write(("" if text.endswith("\n") else "\n") + INCLUDE_LINE + "\n")
        written.append(conf)
    return written
