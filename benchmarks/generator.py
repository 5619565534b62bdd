"""Synthetic data generation: event messages per second of a whole ``generate`` run (world simulation,
dirty extras, JSONL and feedback files, manifest; no database), on one core and with two workers.

References, measured in the same run: the floor of the same output without any simulation, i.e.
``json.dumps`` of the same number of prebuilt event dicts written as JSONL lines, for the one-worker
run; the one-worker run for the two-worker one. Issue 20's target, printed beside the two-worker
figure: 100k event messages per second of wall time. The note also gives messages per CPU-second of
the busiest of the processes (the emitter with its file thread, the world, the video sessions, the clinic
tables) and of all of them together: the operating system shares the cores among the four, so on two
otherwise idle cores the wall time comes to the larger of the busiest process's CPU time and half the
total (on this shared machine the neighbours' load moves the wall time more than anything measured here).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

from benchmarks.harness import BenchContext, Result, timed
from simulator.generate import DEFAULT_END, generate
from simulator.seasonality import EPOCH_DAY

# About three event messages per appointment: scale = events / 3 makes both cases the same size.
EVENTS_PER_APPOINTMENT = 3
TARGET_MESSAGES_PER_S = 100_000


def _reference(ctx: BenchContext, messages: int) -> Result:
    dicts = [
        {
            "schema_version": 1,
            "event_id": f"00000000-0000-4000-8000-{i:012d}",
            "event_type": "started",
            "event_ts": "2026-10-01T09:00:00Z",
            "appointment_id": f"APT-{i // 3:08d}",
            "device_type": "Laptop",
            "wait_time_minutes": 12.5,
        }
        for i in range(messages)
    ]
    path = ctx.work_dir / "generator_reference.jsonl"
    with timed() as elapsed, path.open("w") as out:
        for payload in dicts:
            out.write(json.dumps(payload))
            out.write("\n")
    return Result(
        "generator_json_reference", messages, elapsed[0], reference=None, note="json.dumps of prebuilt dicts to JSONL"
    )


def _generate(ctx: BenchContext, scale: int, workers: int) -> tuple[dict, float, float, dict[str, float]]:
    """One whole run; (manifest, wall seconds, this process's CPU seconds, each child's CPU seconds)."""
    cpu_start, children = time.process_time(), {}
    with timed() as elapsed:
        manifest = generate(
            scale=scale,
            seed=42,
            start=DEFAULT_END - timedelta(days=89),
            end=DEFAULT_END,
            as_of=(DEFAULT_END - EPOCH_DAY).days * 86400 + 86400,
            dirty_rate=0.01,
            out_dir=ctx.work_dir / f"generated-{workers}",
            landing_dir=ctx.work_dir / f"landing-{workers}",
            write_files=True,
            settings=None,
            workers=workers,
            cpu=children,
        )
    return manifest, elapsed[0], time.process_time() - cpu_start, children


def run(ctx: BenchContext) -> list[Result]:
    scale = max(ctx.events // EVENTS_PER_APPOINTMENT, 1000)
    manifest, seconds, cpu, _ = _generate(ctx, scale, workers=1)
    messages = manifest["events"]["messages"]
    reference = _reference(ctx, messages)
    generated = Result(
        "generator_events",
        messages,
        seconds,
        reference=reference.name,
        # CPU time too: on a shared 2-core machine wall time swings with the neighbours' load.
        note=f"{scale} appointments, {manifest['feedback']['files']} feedback files, whole run, one worker; "
        f"{messages / cpu:,.0f} messages per CPU-second",
    )
    parallel_manifest, seconds, cpu, children = _generate(ctx, scale, workers=2)
    if parallel_manifest != manifest:
        raise RuntimeError("two workers gave another manifest than one: the output must not depend on them")
    rate = messages / seconds
    verdict = "met" if rate >= TARGET_MESSAGES_PER_S else "missed"
    processes = {"emitter and set-up": cpu, **children}
    parallel = Result(
        "generator_events_2_workers",
        messages,
        seconds,
        reference=generated.name,
        note=f"target >= {TARGET_MESSAGES_PER_S:,} messages/s: {verdict}; "
        f"{messages / max(processes.values()):,.0f} per CPU-second of the busiest process, "
        f"{messages / sum(processes.values()):,.0f} per CPU-second of all "
        f"({', '.join(f'{name} {value:.1f} s' for name, value in processes.items())})",
    )
    return [reference, generated, parallel]
