"""The consumer end to end: Kafka -> validation -> raw.appointment_events with exactly-once offsets.

The events are produced first (not timed) to a fresh three-partition topic; then the consumer drains the
topic in this process and is timed from its first message to its last Postgres commit. Left out, and
stated in the note: the consumer group join (a fixed start-up cost, about 3 s on the embedded broker)
and the drain's closing idle wait.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

from benchmarks.harness import BenchContext, Result
from loaders.consume import ConsumeOptions, EventConsumer
from simulator.produce import produce

_DEVICES = ("Mobile Phone", "Tablet", "Desktop", "Laptop")
_TYPES = ("initial_consultation", "follow_up", "urgent_care", "mental_health", "prescription_refill")


def _events(count: int, rng: random.Random):
    """A realistic mix: each appointment is scheduled, started and completed (or cancelled)."""
    appointment = 0
    while True:
        appointment += 1
        apt = f"APT-{appointment:09d}"
        day = 1 + appointment % 28
        base = {"schema_version": 1, "appointment_id": apt}
        lifecycle = [
            {
                "event_type": "scheduled",
                "event_ts": f"2026-09-{day:02d}T08:00:00+00:00",
                "patient_id": f"PAT-{rng.randrange(1, 20000):07d}",
                "provider_id": f"PRV-{rng.randrange(1, 500):05d}",
                "appointment_type": rng.choice(_TYPES),
                "scheduled_for": f"2026-10-{day:02d}T09:{rng.randrange(60):02d}:00-05:00",
            }
        ]
        if rng.random() < 0.8:
            lifecycle.append(
                {
                    "event_type": "started",
                    "event_ts": f"2026-10-{day:02d}T14:05:00Z",
                    "device_type": rng.choice(_DEVICES),
                    "wait_time_minutes": round(rng.uniform(0, 45), 1),
                }
            )
            lifecycle.append(
                {
                    "event_type": "completed",
                    "event_ts": f"2026-10-{day:02d}T14:35:00Z",
                    "duration_minutes": rng.randrange(5, 60),
                    "connection_quality": rng.randrange(1, 6),
                }
            )
        else:
            lifecycle.append(
                {"event_type": "cancelled", "event_ts": f"2026-09-{day:02d}T12:00:00Z", "cancelled_by": "patient"}
            )
        for event in lifecycle:
            yield {**base, "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), **event}
            count -= 1
            if count == 0:
                return


def write_jsonl(path: Path, count: int, seed: int = 7) -> Path:
    if not path.exists():
        rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
        with path.open("w") as out:
            for event in _events(count, rng):
                out.write(json.dumps(event, separators=(",", ":")) + "\n")
    return path


def run(ctx: BenchContext) -> list[Result]:
    source = write_jsonl(ctx.work_dir / f"events_{ctx.events}.jsonl", ctx.events)
    topic = f"bench.events.{uuid.uuid4().hex[:8]}"
    sent = produce(ctx.settings, [source], topic=topic)
    if sent.failed:
        raise RuntimeError(f"{sent.failed} events were not delivered to the broker")
    with ctx.database("consumer") as settings:
        options = ConsumeOptions(group=f"bench-{uuid.uuid4().hex[:8]}", topic=topic, drain=True, idle_seconds=3)
        consumer = EventConsumer(settings, options)
        started = time.monotonic()
        result = consumer.run_loop()
    if result.status != "succeeded" or result.counts.loaded != ctx.events:
        raise RuntimeError(f"consumer run {result.status}: loaded {result.counts.loaded} of {ctx.events}")
    join_s = result.first_message_at - started
    seconds = result.last_commit_at - result.first_message_at
    return [
        Result(
            "consumer_end_to_end",
            result.counts.loaded,
            seconds,
            note=f"Kafka->raw, validation, offsets in the same tx; group join {join_s:.1f}s not timed",
        )
    ]
