"""``python -m loaders reference``: new and changed clinic reference rows into raw, every version kept.

Incremental on ``updated_at``: each table's high watermark is stored in raw.reference_watermarks in the
same transaction as the rows it covers. Each run re-reads a short look-back window below the watermark,
so a row committed late with an older ``updated_at`` (a long transaction at the source) is still picked
up; versions already copied are skipped by the key (id, updated_at) and counted as duplicates.
The payload column keeps the source row as JSON.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass

from psycopg2 import sql

from loaders.rawwrite import PgSession
from loaders.retry import Backoff, stop_on_signals
from loaders.runs import LoadRun, RunCounts, run_outcome
from runtime.settings import Settings

log = logging.getLogger(__name__)

LOADER_NAME = "reference"


@dataclass(frozen=True)
class ReferenceTable:
    name: str
    key: str
    columns: tuple[str, ...]  # typed columns copied besides the payload, cast to raw's types


TABLES = (
    ReferenceTable(
        "providers",
        "provider_id",
        (
            "provider_id",
            "first_name",
            "last_name",
            "specialty",
            "state",
            "years_experience",
            "hourly_rate",
            "available_hours",
            "active",
            "updated_at",
        ),
    ),
    ReferenceTable(
        "patients",
        "patient_id",
        (
            "patient_id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "address",
            "date_of_birth",
            "gender",
            "has_insurance",
            "registration_date",
            "state",
            "updated_at",
        ),
    ),
)

_COPY_VERSIONS = """
with source_rows as (
    select {columns}, to_jsonb(src) as payload
    from {source} as src
    where %(watermark)s::timestamptz is null or src.updated_at > %(watermark)s::timestamptz - %(lookback)s::interval
),
inserted as (
    insert into {target} ({columns}, payload, _load_run_id)
    select {columns}, payload, %(run_id)s from source_rows
    on conflict ({key}, updated_at) do nothing
    returning 1
)
select
    (select count(*) from source_rows),
    (select count(*) from inserted),
    (select max(updated_at) from source_rows)
"""


def copy_table(cur, table: ReferenceTable, run_id: int, lookback_s: float) -> tuple[RunCounts, str | None]:
    """Copy one table's new versions and advance its watermark; returns (counts, new watermark)."""
    source_name = f"clinic_ops.{table.name}"
    cur.execute("select to_regclass(%s)", (source_name,))
    if cur.fetchone()[0] is None:
        raise LookupError(f"{source_name} does not exist (run `make generate`, or point PG* at the clinic database)")
    cur.execute("select watermark from raw.reference_watermarks where source_table = %s", (source_name,))
    found = cur.fetchone()
    watermark = found[0] if found else None
    columns = sql.SQL(", ").join(sql.Identifier(column) for column in table.columns)
    query = sql.SQL(_COPY_VERSIONS).format(
        columns=columns,
        source=sql.Identifier("clinic_ops", table.name),
        target=sql.Identifier("raw", table.name),
        key=sql.Identifier(table.key),
    )
    cur.execute(query, {"watermark": watermark, "lookback": f"{lookback_s} seconds", "run_id": run_id})
    read, loaded, newest = cur.fetchone()
    if newest is not None and (watermark is None or newest > watermark):
        cur.execute(
            "insert into raw.reference_watermarks (source_table, watermark) values (%s, %s)"
            " on conflict (source_table) do update set watermark = excluded.watermark, updated_at = now()",
            (source_name, newest),
        )
        watermark = newest
    counts = RunCounts(read=read, loaded=loaded, duplicates=read - loaded)
    return counts, watermark.isoformat() if watermark else None


def run_reference(
    settings: Settings, lookback_s: float = 3600, max_retry_seconds: float = 300, backoff: Backoff | None = None
) -> tuple[str, dict]:
    run = LoadRun(LOADER_NAME)
    session = PgSession(settings, backoff or Backoff(max_retry_seconds))
    summary: dict = {"tables": {}}
    with run_outcome(LookupError) as outcome:
        session.run("opening the load run", lambda conn: run.open(conn, {"lookback_s": lookback_s}))
        for table in TABLES:
            # One transaction per table: its versions and its watermark commit together.
            counts, watermark = session.transaction(
                f"copying {table.name}", lambda cur, table=table: _copy_and_advance(cur, table, run, lookback_s)
            )
            run.counts.add(counts)
            summary["tables"][table.name] = {
                "read": counts.read,
                "loaded": counts.loaded,
                "duplicates": counts.duplicates,
                "watermark": watermark,
            }
            log.info("%s: %d read, %d new versions, watermark %s", table.name, counts.read, counts.loaded, watermark)
    status, error = outcome.status, outcome.error
    run.finish(session, status, error, summary)
    session.close()
    summary.update(status=status, error=error, run_id=run.run_id, counts=run.counts)
    return status, summary


def _copy_and_advance(cur, table: ReferenceTable, run: LoadRun, lookback_s: float) -> tuple[RunCounts, str | None]:
    counts, watermark = copy_table(cur, table, run.run_id, lookback_s)
    run.advance(cur, counts)
    return counts, watermark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders reference", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lookback-seconds", type=float, default=3600, help="re-read this far below the watermark (default 1 h)"
    )
    parser.add_argument("--max-retry-seconds", type=float, default=300.0, help="give up on Postgres after this")
    args = parser.parse_args(argv)
    started = time.monotonic()
    backoff = Backoff(args.max_retry_seconds)
    with stop_on_signals(backoff):
        status, summary = run_reference(Settings.from_env(), args.lookback_seconds, backoff=backoff)
    c = summary["counts"]
    print(
        f"reference {status}: read {c.read}, loaded {c.loaded} new versions, duplicates skipped {c.duplicates} "
        f"in {time.monotonic() - started:.1f}s (run {summary['run_id']})"
    )
    if summary["error"]:
        print(f"error: {summary['error']}", file=sys.stderr)
    return 0 if status == "succeeded" else 1
