"""``make scale``'s own parts: the broker slices, the memory watch and the cards' report (the run itself is a
benchmark)."""

from __future__ import annotations

import subprocess
import sys

import psutil

from benchmarks.hourly import CardTiming
from benchmarks.scale import MIB, Sampler, Stage, card_lines, slice_files


def test_slices_keep_the_replay_order_and_stay_under_the_limit(tmp_path):
    sizes = {"2026-10-01": 400, "2026-10-02": 500, "2026-10-03": 300, "2026-10-04": 1200, "2026-10-05": 100}
    files = []
    for name, size in sizes.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"x" * size)
        files.append(path)
    groups = slice_files(files, 1000)
    assert [[p.stem for p in group] for group in groups] == [
        ["2026-10-01", "2026-10-02"],
        ["2026-10-03"],
        ["2026-10-04"],  # larger than the limit: alone, never split or dropped
        ["2026-10-05"],
    ]
    assert [p for group in groups for p in group] == files


def test_a_stage_is_stopped_when_available_memory_falls_under_the_floor():
    # A floor above the machine's memory: the first sample stops the child, and says why.
    sampler = Sampler(None, None, floor=psutil.virtual_memory().total * 2)
    # The child holds 8 MiB of its own before it is watched (right after the fork its pages are still the
    # parent's, and a proportional set size counts only half of each).
    hold = "import time; held = b'x' * (8 << 20); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    stage = Stage("sleep")
    reason = sampler.watch(stage, child, interval=0.1)
    assert reason is not None and "available memory fell to" in reason
    assert child.returncode is not None
    child.stdout.close()
    assert stage.peak_rss > 8 * MIB  # the child's own memory, measured from its tree


def test_a_stage_above_the_floor_runs_to_its_end():
    sampler = Sampler(None, None, floor=0)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    assert sampler.watch(Stage("sleep"), child, interval=0.1) is None
    assert child.returncode == 0


def test_the_cards_report_names_the_slowest_and_every_card_over_the_target():
    lines = card_lines(
        {
            "ops.outcomes": CardTiming(0.012, 0.030, 1200),
            "providers.table": CardTiming(0.61, 2.5, 900_000),
            "monitors.history": None,
        }
    )
    assert lines[0] == (
        "dashboard cards on this warehouse, as Metabase runs them: 2 timed (1 read tables this run does not "
        "build), slowest providers.table 610 ms, target < 500 ms each: missed by providers.table"
    )
    assert [line.split()[0] for line in lines[1:]] == ["providers.table", "ops.outcomes"]
    assert "HTML:   900000 rows   2500.0 ms" in lines[1]
    assert card_lines({"ops.outcomes": CardTiming(0.012, 0.03, 10)})[0].endswith("target < 500 ms each: met")
    assert card_lines({}) == []
