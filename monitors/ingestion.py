"""Real-time health of the ingestion, read where the loaders leave it (no dbt involved):

- ``consumer_lag_messages:<group>/<topic>``: for each consumer group and topic the loaders stored
  offsets for (raw.kafka_offsets), the messages on the broker the group has not loaded yet: per
  partition the broker's end offset minus the stored next offset, summed (loaders/lag.py, the same
  reading as the ingest service's metric). A topic gone from the broker has nothing left to load (0);
  a broker that does not answer is an error.
- ``seconds_since_last_load:<loader>``: for each loader with runs in raw.load_runs, the seconds since
  its last successful load: the end of its last succeeded run, or, for the consumer, its last
  committed batch (a follow-mode consumer's run stays open while its batches commit, each with its
  offsets in raw.kafka_offsets). Measured on the warehouse clock, like source freshness: load times are
  stamped by Postgres.

Both are evaluated against their bounds in thresholds.yml and alert like every other check.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException

from loaders.lag import LagProbe, stored_offsets
from monitors.checks import CheckResult, Thresholds, evaluate
from runtime.settings import Settings

log = logging.getLogger(__name__)

LAG = "consumer_lag_messages"
LAST_LOAD = "seconds_since_last_load"

# The consumer records each committed batch in raw.kafka_offsets (updated_at), the other loaders only
# end runs; 'consume' is the consumer's loader name in raw.load_runs.
LAST_LOAD_SQL = """
with runs as (
    select loader, max(finished_at) filter (where status = 'succeeded') as last_succeeded_run
    from raw.load_runs
    group by loader
),

batches as (
    select 'consume'::text as loader, max(updated_at) as last_batch
    from raw.kafka_offsets
)

select
    runs.loader,
    greatest(runs.last_succeeded_run, batches.last_batch) as last_load,
    extract(epoch from now() - greatest(runs.last_succeeded_run, batches.last_batch))::float8 as seconds
from runs
left join batches on runs.loader = batches.loader
order by runs.loader
"""


def lag_results(conn, settings: Settings, thresholds: Thresholds, timeout: float = 5.0) -> list[CheckResult]:
    with conn.cursor() as cur:
        stored = stored_offsets(cur)
    conn.commit()
    if not stored:
        result = evaluate(LAG, None, thresholds)
        result.message = "no consumer offsets in raw.kafka_offsets: has the consumer run?"
        return [result]
    results = []
    probe = LagProbe(settings, timeout=timeout)
    try:
        for (group, topic), partitions in sorted(stored.items()):
            try:
                measured = probe.measure(group, topic, partitions)
            except KafkaException as exc:
                result = evaluate(LAG, None, thresholds, {"group": group, "topic": topic})
                result.message = f"cannot read end offsets from the broker at {settings.kafka_bootstrap_servers}: {exc}"
            else:
                details = {
                    "group": group,
                    "topic": topic,
                    "partitions": {
                        str(p.partition): {"end_offset": p.end_offset, "next_offset": p.next_offset, "lag": p.lag}
                        for p in measured.partitions
                    },
                }
                result = evaluate(LAG, float(measured.total), thresholds, details)
                if measured.missing:
                    result.message = f"{measured.missing}: nothing left to load"
                elif not result.message:
                    result.message = f"{measured.total} messages not loaded yet"
            result.check_name = f"{LAG}:{group}/{topic}"
            results.append(result)
    finally:
        probe.close()
    return results


def last_load_results(conn, thresholds: Thresholds) -> list[CheckResult]:
    with conn.cursor() as cur:
        cur.execute(LAST_LOAD_SQL)
        rows = cur.fetchall()
    conn.commit()
    results = []
    for loader, last_load, seconds in rows:
        result = evaluate(LAST_LOAD, seconds, thresholds, {"loader": loader, "last_load": last_load})
        if seconds is None:
            result.message = f"{loader} has runs but never a successful load"
        elif not result.message:
            result.message = f"last successful load {seconds / 60:.1f} min ago"
        result.check_name = f"{LAST_LOAD}:{loader}"
        results.append(result)
    return results


def ingestion_results(conn, settings: Settings, thresholds: Thresholds) -> list[CheckResult]:
    return [*lag_results(conn, settings, thresholds), *last_load_results(conn, thresholds)]
