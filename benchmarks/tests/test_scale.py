"""``make scale``'s own parts: the broker slices, the memory watch and the cards' report (the run itself is a
benchmark)."""

from __future__ import annotations

import subprocess
import sys

import psutil

from benchmarks.hourly import CardTiming
from benchmarks.scale import MIB, Sampler, Stage, card_lines, cpu_lines, slice_files


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


BURN = "import time\nwhile time.process_time() < {seconds}: pass\n"


def test_a_stage_is_charged_the_cpu_time_of_its_whole_tree_and_of_the_servers():
    # The stage's child burns 0.3 CPU-seconds in a grandchild of its own; a stand-in "server" (a process
    # whose child burns 0.2 CPU-seconds and ends while the stage runs) plays Postgres.
    tree = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN.format(seconds=0.3)!r}], check=True)"
    server = subprocess.Popen([sys.executable, "-c", f"{tree.replace('0.3', '0.2')}\nimport time; time.sleep(60)"])
    try:
        sampler = Sampler(None, psutil.Process(server.pid), floor=0)
        stage = Stage("burn")
        assert sampler.watch(stage, subprocess.Popen([sys.executable, "-c", tree]), interval=0.05) is None
        for _ in range(100):  # the server's child may still be burning: more (empty) runs of the stage
            if stage.postgres_cpu >= 0.2:
                break
            sampler.watch(stage, subprocess.Popen([sys.executable, "-c", "pass"]), interval=0.05)
    finally:
        server.kill()
        server.wait()
    assert 0.3 <= stage.cpu < 1.5
    assert 0.2 <= stage.postgres_cpu < 1.5
    assert stage.broker_cpu == 0
    assert stage.all_cpu == stage.cpu + stage.postgres_cpu


def test_the_cpu_report_gives_the_floor_no_schedule_can_beat():
    stages = [
        Stage("generate", seconds=60, cpu=100),
        Stage("build", seconds=100, cpu=40, postgres_cpu=150, broker_cpu=10),
    ]
    lines = cpu_lines(stages, scale=1_000_000, cores=2)
    assert lines[0] == (
        "CPU: 300 CPU-seconds in the stages (140 their processes, 150 Postgres, 10 the broker), 1.88 of 2 cores "
        "busy on average"
    )
    # 3,000 CPU-seconds at 10M: at least 1,500 s on two cores, where the target is under 1,200 s.
    assert lines[1] == (
        "extrapolated linearly to 10M: 3,000 CPU-seconds, so no schedule on 2 cores takes less than 1,500 s; "
        "the target (< 1200 s) needs 1.25 times less CPU"
    )
    assert cpu_lines(stages, scale=10_000_000, cores=4)[1] == (
        "at 10M: no schedule on 4 cores takes less than 75 s; the target (< 1200 s) is within that bound"
    )
    assert cpu_lines([], scale=1, cores=2) == []
