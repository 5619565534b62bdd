"""``make scale``'s own parts: the broker slices, the watch of running stages (memory, CPU time), the CPU
floor and the cards' report (the run itself is a benchmark)."""

from __future__ import annotations

import os
import sys
import time

import psutil

from benchmarks.hourly import CardTiming
from benchmarks.scale import MIB, Child, Phase, Sampler, Stage, card_lines, cpu_lines, server_cpu, slice_files


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


def _child(tmp_path, name: str, code: str) -> Child:
    return Child(Stage(name), [sys.executable, "-c", code], tmp_path / f"{name}.log", dict(os.environ), tmp_path)


def _wait_until(condition, process: psutil.Process) -> None:
    """Wait, up to 30 s, for ``condition`` while ``process`` lives (psutil raises once it has died)."""
    for _ in range(600):
        if condition():
            return
        process.cpu_times()
        time.sleep(0.05)


def test_a_stage_is_stopped_when_available_memory_falls_under_the_floor(tmp_path):
    # A floor above the machine's memory: the first sample stops the children, and says why.
    sampler = Sampler(None, None, floor=psutil.virtual_memory().total * 2)
    # The child holds 8 MiB of its own before it is watched (right after the fork its pages are still the
    # parent's, and a proportional set size counts only half of each).
    hold = "import time; held = b'x' * (8 << 20); print('ready', flush=True); time.sleep(60)"
    child, other = _child(tmp_path, "hold", hold), _child(tmp_path, "other", "import time; time.sleep(60)")
    try:
        _wait_until(lambda: (tmp_path / "hold.log").read_text() == "ready\n", child.process)
        assert (tmp_path / "hold.log").read_text() == "ready\n"
        reason = sampler.watch([child, other], until=[child], interval=0.1)
    finally:
        child.stop()
        other.stop()
    assert reason is not None and "available memory fell to" in reason
    assert child.ended and other.ended  # every child stopped, not only the awaited one
    assert child.stage.failed and child.stage.runs == 1
    assert child.stage.peak_rss > 8 * MIB  # the child's own memory, measured from its tree


def test_a_stage_above_the_floor_runs_to_its_end_and_the_others_go_on(tmp_path):
    sampler = Sampler(None, None, floor=0)
    short, long = _child(tmp_path, "short", "pass"), _child(tmp_path, "long", "import time; time.sleep(60)")
    try:
        assert sampler.watch([short, long], until=[short], interval=0.1) is None
        assert short.returncode == 0 and short.stage.runs == 1 and not short.stage.failed
        assert short.stage.seconds > 0
        assert not long.ended  # sampled beside the awaited one, not waited for
    finally:
        long.stop()
    assert long.ended and long.stage.failed == [f"exit -15, see {tmp_path / 'long.log'}"]


def test_a_stage_counts_the_time_any_of_its_runs_was_running():
    stage = Stage("consume")
    stage.ran(10.0, 20.0)
    stage.ran(12.0, 25.0)  # a second consumer beside the first: only its last 5 s are new
    assert stage.seconds == 15.0
    stage.ran(30.0, 31.5)  # the next slice's
    assert stage.seconds == 16.5
    stage.ran(5.0, 40.0)
    assert stage.seconds == 35.0


BURN = "import time\nwhile time.process_time() < {seconds}: pass\n"


def test_a_stage_is_charged_the_cpu_time_of_its_whole_tree(tmp_path):
    # The child burns 0.3 CPU-seconds in a grandchild of its own, which it waits for.
    tree = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN.format(seconds=0.3)!r}], check=True)"
    child = _child(tmp_path, "burn", tree)
    assert Sampler(None, None, floor=0).watch([child], interval=0.05) is None
    assert 0.3 <= child.stage.cpu < 1.5


def test_a_server_is_charged_its_ended_and_its_live_childrens_cpu_time(tmp_path):
    # A stand-in server (as the postmaster): one child burns 0.2 CPU-seconds and ends (reaped), another
    # burns 0.1 and stays.
    ended = f"subprocess.run([sys.executable, '-c', {BURN.format(seconds=0.2)!r}], check=True)"
    live = f"subprocess.Popen([sys.executable, '-c', {(BURN.format(seconds=0.1) + 'time.sleep(60)')!r}])"
    server = _child(tmp_path, "server", f"import subprocess, sys, time\n{ended}\n{live}\ntime.sleep(60)")
    try:
        # 0.3, less a 10 ms clock tick for each of the three processes
        _wait_until(lambda: server_cpu(server.process) >= 0.27, server.process)
        assert 0.27 <= server_cpu(server.process) < 2.0
    finally:
        for process in server.process.children(recursive=True):
            process.kill()
        server.stop()
    assert server_cpu(None) == 0.0


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


def test_the_cpu_report_gives_the_floor_no_schedule_can_beat():
    phases = [
        Phase("generate", seconds=60, cpu=100),
        Phase("build", seconds=100, cpu=40, postgres_cpu=150, broker_cpu=10),
    ]
    lines = cpu_lines(phases, scale=1_000_000, cores=2)
    assert lines[0] == (
        "CPU: 300 CPU-seconds in all (140 the stages' processes, 150 Postgres, 10 the broker), 1.88 of 2 cores "
        "busy on average"
    )
    # 3,000 CPU-seconds at 10M: at least 1,500 s on two cores, where the target is under 1,200 s.
    assert lines[1] == (
        "extrapolated linearly to 10M: 3,000 CPU-seconds, so no schedule on 2 cores takes less than 1,500 s; "
        "the target (< 1200 s) needs 1.25 times less CPU"
    )
    assert cpu_lines(phases, scale=10_000_000, cores=4)[1] == (
        "at 10M: no schedule on 4 cores takes less than 75 s; the target (< 1200 s) is within that bound"
    )
    assert cpu_lines([], scale=1, cores=2) == []
