"""The marts the dashboard tests read.

``build`` uses the real pipeline when the project has it (the KPI marts in ``models/marts`` and the
loaders' ``load`` command): generate a small world, produce its events to the broker, load everything,
``dbt build``. Until then it creates FIXTURE tables with exactly the contract's columns and made-up rows,
so the card SQL is checked against the agreed names. Either way a monitors history is added in the
shape of ``monitors/store.py`` when that module exists (a fixture table otherwise).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from loaders import db
from loaders.settings import DBT_ROLE, PROJECT_ROOT, REPORTING_ROLE, Settings

log = logging.getLogger(__name__)

KPI_MARTS = ("ops_daily_kpis", "provider_performance", "device_quality", "specialty_satisfaction")
SCALE = 2000


def real_pipeline_available() -> bool:
    marts_dir = PROJECT_ROOT / "models" / "marts"
    have_marts = all(any(marts_dir.rglob(f"{name}.sql")) for name in KPI_MARTS)
    have_loaders = all((PROJECT_ROOT / "loaders" / f"{name}.py").exists() for name in ("load", "feedback", "reference"))
    return have_marts and have_loaders


def build(settings: Settings) -> str:
    """Fill the database; returns "real" or "fixture"."""
    if real_pipeline_available():
        _build_real(settings)
        kind = "real"
    else:
        _build_fixture(settings)
        kind = "fixture"
    _monitor_history(settings)
    log.info("marts for the dashboard tests: %s", kind)
    return kind


def _build_real(settings: Settings) -> None:
    """generate -> produce -> load -> dbt build, on this database, a topic and landing folder of its own."""
    with tempfile.TemporaryDirectory(prefix="telemed-dash-") as work:
        out = Path(work)
        env = {
            **os.environ,
            "PGDATABASE": settings.pg_database,
            "TELEMED_TOPIC": f"test.dashboards.{settings.pg_database}",
            "TELEMED_LANDING_DIR": str(out / "landing"),
        }
        dbt = str(Path(sys.executable).parent / "dbt")
        steps = [
            ["generate", "--scale", str(SCALE), "--seed", "7", "--out", str(out / "generated"), "--clean"],
            ["produce", "--from-jsonl", str(out / "generated" / "events")],
            ["load", "--group", f"dashboards-{settings.pg_database}", "--idle-seconds", "3"],
            ["env", "--", dbt, "build", "--full-refresh", "--target-path", str(out / "target")],
        ]
        for args in steps:
            done = subprocess.run(
                [sys.executable, "-m", "loaders", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"python -m loaders {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
                )


FIXTURE_SQL = """
-- FIXTURE (dashboard tests only): the marts' contract columns with made-up rows, until the real marts
-- are built by the pipeline in this test database.
create schema if not exists marts;

create table marts.ops_daily_kpis as
select
    cast(to_char(day, 'YYYYMMDD') as integer) as date_id,
    cast(day as date) as date,
    n as appointments,
    round(n * 0.75) as completed,
    round(n * 0.10) as cancelled,
    round(n * 0.10) as rescheduled,
    n - round(n * 0.75) - round(n * 0.10) - round(n * 0.10) as no_shows,
    round(n * 0.75) / n as completion_rate,
    round(n * 0.10) / n as cancellation_rate,
    (n - round(n * 0.75) - 2 * round(n * 0.10)) / n as no_show_rate,
    round(n * 0.10) / n as reschedule_rate,
    12.0 + (i % 5) as avg_wait_minutes,
    25.0 + (i % 7) as p90_wait_minutes,
    0.15 + (i % 4) / 100.0 as technical_issue_share,
    3.5 + (i % 3) / 10.0 as avg_connection_quality,
    round(n * 0.6) as feedback_forms,
    3.4 + (i % 5) / 10.0 as avg_overall_satisfaction
from (
    select day, i, cast(40 + (i * 7) % 23 as numeric) as n
    from generate_series(date '2026-09-01', date '2026-10-30', interval '1 day') with ordinality as days (day, i)
) as days;

create table marts.dim_date as
select
    cast(to_char(day, 'YYYYMMDD') as integer) as date_id,
    cast(day as date) as date,
    extract(day from day)::int as day,
    extract(month from day)::int as month,
    extract(year from day)::int as year,
    extract(quarter from day)::int as quarter,
    extract(isodow from day)::int as day_of_week,
    trim(to_char(day, 'Day')) as day_name,
    trim(to_char(day, 'Month')) as month_name,
    extract(isodow from day) >= 6 as is_weekend,
    false as is_holiday
from generate_series(date '2026-09-01', date '2026-10-30', interval '1 day') as days (day);

create table marts.dim_provider as
select
    i as provider_key,
    'PRV-' || lpad(i::text, 4, '0') as provider_id,
    (array['Ana', 'Ben', 'Chloe', 'Dev', 'Eli', 'Fay'])[1 + i % 6] as first_name,
    (array['Ng', 'Ortiz', 'Patel', 'Quinn'])[1 + i % 4] || i as last_name,
    (array['Cardiology', 'Internal Medicine', 'Family Medicine'])[1 + i % 3] as specialty,
    5 + i as years_experience,
    'CA' as state,
    120.0 as hourly_rate,
    30 as available_hours,
    true as active
from generate_series(1, 12) as providers (i);

create table marts.provider_performance as
select
    providers.provider_id,
    providers.first_name || ' ' || providers.last_name as provider_name,
    providers.specialty,
    100 + providers.provider_key * 3 as appointments,
    0.70 + providers.provider_key / 100.0 as completion_rate,
    0.03 + providers.provider_key / 400.0 as no_show_rate,
    11.0 + providers.provider_key / 2.0 as avg_wait_minutes,
    25.0 + providers.provider_key as avg_duration_minutes,
    case when providers.provider_key = 12 then 0 else 40 + providers.provider_key end as feedback_forms,
    case when providers.provider_key = 12 then null else 3.3 + providers.provider_key / 20.0 end
        as avg_provider_rating,
    case when providers.provider_key = 12 then null else 3.2 + providers.provider_key / 25.0 end
        as avg_overall_satisfaction,
    case when providers.provider_key = 12 then null else 0.6 + providers.provider_key / 50.0 end
        as recommend_rate
from marts.dim_provider as providers;

create table marts.device_quality (
    device_type text, is_mobile boolean, started_appointments bigint, avg_wait_minutes numeric,
    technical_issue_share numeric, avg_connection_quality numeric
);
insert into marts.device_quality values
    ('Tablet', true, 410, 14.17, 0.1704, 3.61),
    ('Desktop', false, 520, 14.04, 0.1654, 3.72),
    ('Laptop', false, 480, 13.91, 0.1633, 3.70),
    ('Mobile Phone', true, 600, 13.60, 0.1690, 3.58);

create table marts.specialty_satisfaction (
    specialty text, feedback_forms bigint, avg_provider_rating numeric, avg_overall_satisfaction numeric,
    avg_ease_of_use_rating numeric, avg_audio_quality_rating numeric, avg_video_quality_rating numeric,
    recommend_rate numeric
);
insert into marts.specialty_satisfaction values
    ('Cardiology', 300, 3.91, 3.51, 3.8, 3.6, 3.5, 0.71),
    ('Internal Medicine', 280, 3.61, 3.42, 3.7, 3.5, 3.4, 0.66),
    ('Family Medicine', 310, 3.77, 3.35, 3.9, 3.7, 3.6, 0.69);

create table marts.fact_feedback as
select
    'FB-' || i as feedback_id,
    'APT-' || i as appointment_id,
    1 + i % 12 as provider_key,
    1 + i % 50 as patient_key,
    cast(to_char(date '2026-09-01' + (i % 60), 'YYYYMMDD') as integer) as date_id,
    1 + i % 5 as provider_rating,
    1 + (i + 1) % 5 as ease_of_use_rating,
    1 + (i + 2) % 5 as audio_quality_rating,
    1 + (i + 3) % 5 as video_quality_rating,
    1 + (i + 4) % 5 as overall_satisfaction,
    i % 3 <> 0 as would_recommend,
    case when i % 4 = 0 then null else 'Comment number ' || i || ' <b>not html</b>' end as comments,
    cast(date '2026-09-01' + (i % 60) as timestamp) + (i % 600) * interval '1 minute' as timestamp
from generate_series(1, 400) as forms (i);
"""

MONITOR_FIXTURE_SQL = """
-- FIXTURE: the monitors' history table in the shape of monitors/store.py (only when that module is absent).
create schema if not exists monitoring;
create table if not exists monitoring.monitor_results (
    result_id bigserial primary key,
    run_id text not null,
    check_name text not null,
    check_type text not null,
    status text not null,
    observed_value double precision,
    warn_threshold text,
    error_threshold text,
    message text,
    run_started_at timestamptz not null,
    checked_at timestamptz not null default now()
);
"""


def _build_fixture(settings: Settings) -> None:
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(FIXTURE_SQL)
            cur.execute(f"alter schema marts owner to {DBT_ROLE}")
            cur.execute(f"grant usage on schema marts to {REPORTING_ROLE}")
            cur.execute(f"grant select on all tables in schema marts to {REPORTING_ROLE}")
    finally:
        conn.close()


def _monitor_history(settings: Settings) -> None:
    """Two monitor runs, written through monitors/store.py's DDL when it exists."""
    conn = db.connect(settings)
    try:
        try:
            from monitors import store
        except ImportError:
            store = None
        if store is not None:
            store.ensure_tables(conn, reporting_role=REPORTING_ROLE)
        with conn, conn.cursor() as cur:
            if store is None:
                cur.execute(MONITOR_FIXTURE_SQL)
                cur.execute(f"grant usage on schema monitoring to {REPORTING_ROLE}")
                cur.execute(f"grant select on monitoring.monitor_results to {REPORTING_ROLE}")
            for run, (started, statuses) in enumerate(
                [("2026-10-29 06:00+00", ("pass", "warn", "pass")), ("2026-10-30 06:00+00", ("pass", "pass", "error"))],
                start=1,
            ):
                if store is not None:
                    cur.execute(
                        "insert into monitoring.monitor_runs (run_id, started_at) values (%s, %s)",
                        (f"run-{run}", started),
                    )
                for check, status in zip(
                    ("freshness_appointments", "no_show_rate", "min_daily_appointments"), statuses, strict=True
                ):
                    cur.execute(
                        "insert into monitoring.monitor_results (run_id, check_name, check_type, status,"
                        " observed_value, warn_threshold, error_threshold, message, run_started_at, checked_at)"
                        " values (%s, %s, 'test', %s, %s, '> 1', '> 2', %s, %s, %s)",
                        (f"run-{run}", check, status, float(run), f"{check} is {status}", started, started),
                    )
    finally:
        conn.close()


def drop_monitor_history(settings: Settings) -> None:
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("drop schema if exists monitoring cascade")
    finally:
        conn.close()
