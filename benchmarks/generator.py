"""Synthetic data generation: event messages per second of a whole ``generate`` run (world simulation,
dirty extras, JSONL and feedback files, manifest; no database), on one core.

Reference, measured in the same run: the floor of the same output without any simulation, i.e.
``json.dumps`` of the same number of prebuilt event dicts written as JSONL lines.
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


def run(ctx: BenchContext) -> list[Result]:
    scale = max(ctx.events // EVENTS_PER_APPOINTMENT, 1000)
    cpu_start = time.process_time()
    with timed() as elapsed:
        manifest = generate(
            scale=scale,
            seed=42,
            start=DEFAULT_END - timedelta(days=89),
            end=DEFAULT_END,
            as_of=(DEFAULT_END - EPOCH_DAY).days * 86400 + 86400,
            dirty_rate=0.01,
            out_dir=ctx.work_dir / "generated",
            landing_dir=ctx.work_dir / "landing",
            write_files=True,
            settings=None,
        )
    cpu = time.process_time() - cpu_start
    messages = manifest["events"]["messages"]
    reference = _reference(ctx, messages)
    generated = Result(
        "generator_events",
        messages,
        elapsed[0],
        reference=reference.name,
        # CPU time too: on a shared 2-core machine wall time swings with the neighbours' load.
        note=f"{scale} appointments, {manifest['feedback']['files']} feedback files, whole run; "
        f"{messages / cpu:,.0f} messages per CPU-second",
    )
    return [reference, generated]
