"""The suite's own Postgres and broker (own state folder under .local/, free ports), started once.

The cases stop, pause and restart these servers, so they never touch the session's shared services.
At the end of the session the figures of every case are printed and written to
.local/artifacts/reliability-summary.json and .md (CI keeps them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from loaders.tests.reliability.harness import ARTIFACTS, FIGURES, Rig, current_scale
from testkit.fixtures import own_services

_ROWS = pytest.StashKey[list]()
# A case leaves a figure it did not measure as None: an empty cell, never a 0.
COLUMNS = (
    "case", "lost", "failed_deliveries", "dup_rows", "redelivered", "quarantined", "bad_injected", "recovery_s",
    "title",
)  # fmt: skip


@pytest.fixture(scope="session")
def rig(tmp_path_factory):
    with own_services("reliability", "rel_faults") as (settings, postgres, broker):
        yield Rig(settings, postgres, broker, tmp_path_factory.mktemp("reliability"), current_scale())


def _table(rows: list[dict]) -> list[str]:
    cells = [[("" if row.get(col) is None else str(row.get(col))) for col in COLUMNS] for row in rows]
    widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(COLUMNS)]
    lines = [" | ".join(col.ljust(w) for col, w in zip(COLUMNS, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return lines


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _parts(config) -> Path:
    """This run's folder of per-process figures, named after the main pytest process (an xdist worker's
    parent), so that pytest runs at once (`make test` runs the faked dates beside pytest) never merge,
    or delete, each other's figures."""
    main = os.getppid() if _is_worker(config) else os.getpid()
    return ARTIFACTS / "reliability-parts" / str(main)


def pytest_sessionstart(session):
    if not _is_worker(session.config):
        shutil.rmtree(_parts(session.config), ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    """Each process writes the figures of the cases it ran (under pytest-xdist the suite's modules may
    run on several workers); the main process merges them into the summary."""
    parts = _parts(session.config)
    if FIGURES:
        parts.mkdir(parents=True, exist_ok=True)
        worker = session.config.workerinput["workerid"] if _is_worker(session.config) else "main"
        (parts / f"{worker}.json").write_text(json.dumps(FIGURES, default=str) + "\n")
    if _is_worker(session.config) or not parts.is_dir():
        return
    rows = sorted((row for part in sorted(parts.glob("*.json")) for row in json.loads(part.read_text())),
                  key=lambda row: row["case"])  # fmt: skip
    shutil.rmtree(parts, ignore_errors=True)
    if not rows:
        return
    session.config.stash[_ROWS] = rows
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary = {"scale": current_scale().name, "exit_status": int(exitstatus), "cases": rows}
    (ARTIFACTS / "reliability-summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    markdown = [f"# Reliability figures ({current_scale().name})", ""]
    markdown += [f"| {line} |" for line in _table(rows)]
    (ARTIFACTS / "reliability-summary.md").write_text("\n".join(markdown) + "\n")


def pytest_terminal_summary(terminalreporter):
    rows = terminalreporter.config.stash.get(_ROWS, [])
    if not rows:
        return
    terminalreporter.section(f"reliability figures ({current_scale().name})")
    for line in _table(rows):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"written to {ARTIFACTS / 'reliability-summary.json'} (and .md)")
