"""Does the hourly run stay cheap as history piles up? The same batch on warehouses of growing history.

For each scale (1M and 3M appointments; ``TELEMED_BENCH_HOURLY_10M=1`` adds 10M, which takes a long
while), a fresh database gets that much history at the same daily rate (about 3,300 appointments a day,
so 3M is three times the days of 1M, as years piling up would be), a full ``dbt build``, then the same
batch of new data, 1% of 1M appointments (10,000, on the three days after the history, with the late
terminal events of the history's last days), and the scheduled run after a load, ``dbt build --selector
hourly`` (models and their tests), is timed. Raw rows are synthesised in SQL as in case dbt_build, which
vacuums the raw tables it wrote, and the whole warehouse is vacuumed after its full build (settle), so that
autovacuum's pass over the rows just written runs before the timed steps, not during one of them. dbt runs
as the DAGs run it: without a file log (``DBT_LOG_LEVEL_FILE=none``, orchestration/dagkit.py's
file_log_env: Cosmos would write it into a temporary copy of the project, deleted after the task); at dbt's
default, debug, writing it adds about 0.8 s to the hourly run and nothing measurable to a full build
(docs/benchmarks.md, "Hourly runs").

Figures, each against its target (issue 20), all measured in one run:
  * ``hourly_build_<largest>`` / ``hourly_build_1M`` <= 1.15: the hourly cost does not follow the history;
  * the hourly run's data-dependent time, ``hourly_build_1M`` minus dbt's fixed cost, <= 0.15 of the full
    build at 1M; the fixed cost (``dbt_fixed_cost``: start-up, partial parse, connection, hooks and one
    view, as case dbt_build measures it) is printed beside it;
  * every dashboard card on the largest warehouse as Metabase runs it on an unfiltered dashboard (the
    card's SQL summed per group in the database; ``python -m dashboards queries``), target under 500 ms
    each, with the card's own SQL beside it, every row fetched (what the HTML page embeds); cards on tables
    the bench does not build (the monitors' history) are reported as skipped.
``TELEMED_BENCH_HOURLY_SCALES`` (comma-separated appointments, e.g. ``20000,60000`` for a quick check)
replaces the scales; the first is the reference.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2.errors

from benchmarks.dbt_build import PIPELINE, STARTUP_NODE, dbt, settle, synthesise
from benchmarks.harness import BenchContext, Result, timed
from runtime import db
from runtime.settings import REPORTING_ROLE, Settings

DEFAULT_SCALES = (1_000_000, 3_000_000)
TEN_MILLION = 10_000_000
# Appointments a day in every history (1M over 300 days, the dbt_build case's shape).
DAILY_RATE = 1_000_000 // 300
BATCH = 10_000
BATCH_DAYS = 3
# Every history ends on this day; the batch lands on the days after it, loaded after all of it.
HISTORY_END = dt.date(2026, 10, 28)
BATCH_LOADED_AT = "2026-11-01 12:00:00+00"
PROJECT_DIR = Path(__file__).resolve().parent.parent
CARD_RUNS = 5
TARGET_GROWTH = 1.15
TARGET_HOURLY_SHARE = 0.15
TARGET_CARD_SECONDS = 0.5
# dbt's environment in the DAGs' tasks (orchestration/dagkit.py, file_log_env), for every dbt run here.
SCHEDULED_DBT_ENV = {"DBT_LOG_LEVEL_FILE": "none"}


def scales() -> list[int]:
    configured = os.environ.get("TELEMED_BENCH_HOURLY_SCALES", "")
    chosen = [int(part) for part in configured.split(",") if part.strip()] or list(DEFAULT_SCALES)
    if os.environ.get("TELEMED_BENCH_HOURLY_10M") == "1" and TEN_MILLION not in chosen:
        chosen.append(TEN_MILLION)
    return chosen


def label(appointments: int) -> str:
    return f"{appointments // 1_000_000}M" if appointments % 1_000_000 == 0 else f"{appointments // 1000}k"


@dataclass(frozen=True)
class CardTiming:
    """A card on one warehouse: median seconds of what Metabase runs on an unfiltered dashboard (the target's
    measure), and of the card's own SQL with every row fetched (what the HTML page embeds), with its rows."""

    seconds: float
    plain_seconds: float
    plain_rows: int


def cards() -> list[dict[str, str]]:
    """Every card's two queries, from ``python -m dashboards queries`` (benchmarks never import dashboards:
    the packages are independent)."""
    done = subprocess.run(
        [sys.executable, "-m", "dashboards", "queries"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def _median_seconds(cur, sql: str) -> tuple[float, int]:
    cur.execute(sql)
    rows = len(cur.fetchall())  # the warm-up
    samples = []
    for _ in range(CARD_RUNS):
        start = time.perf_counter()
        cur.execute(sql)
        cur.fetchall()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), rows


def time_cards(settings: Settings) -> dict[str, CardTiming | None]:
    """Each card as the reporting role (as Metabase connects), all rows fetched, median of CARD_RUNS after a
    warm-up; None when it reads a relation this database does not have."""
    timings: dict[str, CardTiming | None] = {}
    conn = db.connect(settings, role=REPORTING_ROLE)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for query in cards():
                try:
                    seconds, _ = _median_seconds(cur, query["metabase"])
                except psycopg2.errors.UndefinedTable:
                    timings[query["card"]] = None
                    continue
                plain_seconds, plain_rows = _median_seconds(cur, query["plain"])
                timings[query["card"]] = CardTiming(seconds, plain_seconds, plain_rows)
    finally:
        conn.close()
    return timings


def verdict(value: float, target: float) -> str:
    return f"target <= {target:g}: {'met' if value <= target else 'MISSED'}"


def run(ctx: BenchContext) -> list[Result]:
    chosen = scales()
    results: list[Result] = []
    hourly: dict[int, float] = {}
    full: dict[int, float] = {}
    fixed_samples: list[float] = []
    card_times: dict[str, CardTiming | None] = {}
    for appointments in chosen:
        history_days = max(1, round(appointments / DAILY_RATE))
        origin = (HISTORY_END - dt.timedelta(days=history_days)).isoformat()
        patients = max(1000, appointments // 10)
        with ctx.database(f"hourly_{label(appointments).lower()}") as settings:
            run_dbt = functools.partial(dbt, settings, work_dir=ctx.work_dir, extra_env=SCHEDULED_DBT_ENV)
            synthesise(
                settings,
                1,
                appointments,
                None,
                patients=patients,
                reference=True,
                history_days=history_days,
                origin=origin,
            )
            run_dbt("seed")
            # The reference scale's full build runs every test (the figure the hourly run is held to); the
            # larger warehouses are built without their tests, which change nothing in them and would take
            # most of the case's time.
            untested = () if appointments == chosen[0] else ("resource_type:test", "resource_type:unit_test")
            with timed() as full_build:
                run_dbt("build", "--full-refresh", *PIPELINE, *untested)
            full[appointments] = full_build[0]
            settle(settings)
            # dbt's fixed cost, twice per scale (the first run of a database also warms its catalog).
            for _ in range(2):
                with timed() as startup:
                    run_dbt("run", "--select", STARTUP_NODE)
                fixed_samples.append(startup[0])
            synthesise(
                settings,
                appointments + 1,
                appointments + BATCH,
                BATCH_LOADED_AT,
                patients=patients,
                reference=False,
                history_days=history_days,
                origin=origin,
                batch_days=BATCH_DAYS,
            )
            with timed() as hourly_build:
                run_dbt("build", "--selector", "hourly")
            hourly[appointments] = hourly_build[0]
            if appointments == chosen[-1]:
                card_times = time_cards(settings)

    fixed = min(fixed_samples)
    base, largest = chosen[0], chosen[-1]
    results.append(Result("dbt_fixed_cost", 0, fixed, reference=None, note=f"dbt run of one view ({STARTUP_NODE})"))
    for appointments in chosen:
        results.append(
            Result(
                f"dbt_build_full_{label(appointments)}",
                appointments,
                full[appointments],
                reference=None,
                note=f"{appointments} appointments, {round(appointments / DAILY_RATE)} days, "
                + ("every test" if appointments == base else "no tests"),
            )
        )
    for appointments in chosen:
        name = f"hourly_build_{label(appointments)}"
        if appointments == base:
            note = f"dbt build --selector hourly after {BATCH} new appointments, no file log (as the DAGs run it)"
            results.append(Result(name, BATCH, hourly[appointments], reference=None, note=note))
        else:
            growth = hourly[appointments] / hourly[base]
            note = f"same batch; {verdict(growth, TARGET_GROWTH)}" if appointments == largest else "same batch"
            results.append(
                Result(
                    name,
                    BATCH,
                    hourly[appointments],
                    reference=f"hourly_build_{label(base)}",
                    compare_by="seconds",
                    note=note,
                )
            )
    share = (hourly[base] - fixed) / full[base]
    results.append(
        Result(
            f"hourly_work_{label(base)}",
            BATCH,
            hourly[base] - fixed,
            reference=f"dbt_build_full_{label(base)}",
            compare_by="seconds",
            note=f"hourly minus dbt_fixed_cost ({fixed:.1f} s); {verdict(share, TARGET_HOURLY_SHARE)}",
        )
    )
    for name, timing in card_times.items():
        if timing is None:
            results.append(Result(f"card {name}", 0, 0.0, reference=None, note="skipped: reads the monitors' history"))
            continue
        note = (
            f"at {label(largest)}, as Metabase runs it; {'met' if timing.seconds < TARGET_CARD_SECONDS else 'MISSED'}"
            f" (target < 500 ms); HTML rows {timing.plain_rows} in {timing.plain_seconds * 1000:.0f} ms"
        )
        results.append(Result(f"card {name}", 0, timing.seconds, reference=None, note=note))
    return results
