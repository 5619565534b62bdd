"""The physical limit: COPY of event rows from a CSV file into a table shaped like
raw.appointment_events (primary key on event_id), in one transaction."""

from __future__ import annotations

import csv
import json
import uuid

from benchmarks.harness import BenchContext, Result, timed
from runtime import db


def write_csv(ctx: BenchContext) -> tuple[str, int]:
    path = ctx.work_dir / "copy_reference.csv"
    if not path.exists():
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            for i in range(ctx.events):
                event_id = str(uuid.UUID(int=i + 1, version=4))
                payload = {
                    "schema_version": 1,
                    "event_id": event_id,
                    "event_type": "started",
                    "event_ts": "2026-10-01T09:00:00+00:00",
                    "appointment_id": f"APT-{i // 4:09d}",
                    "device_type": "Laptop",
                    "wait_time_minutes": 12.5,
                }
                writer.writerow(
                    [
                        event_id,
                        payload["appointment_id"],
                        "started",
                        payload["event_ts"],
                        1,
                        json.dumps(payload),
                        "bench",
                        i % 3,
                        i // 3,
                    ]
                )
    return str(path), ctx.events


def run(ctx: BenchContext) -> list[Result]:
    path, rows = write_csv(ctx)
    with ctx.database("copy") as settings:
        conn = db.connect(settings)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("create table raw.copy_target (like raw.appointment_events including all)")
            with timed() as elapsed, conn, conn.cursor() as cur, open(path) as source:
                cur.copy_expert(
                    "copy raw.copy_target (event_id, appointment_id, event_type, event_ts, schema_version,"
                    " payload, kafka_topic, kafka_partition, kafka_offset) from stdin with (format csv)",
                    source,
                )
        finally:
            conn.close()
    return [Result("copy_reference", rows, elapsed[0], reference=None, note="COPY from CSV, PK on event_id")]
