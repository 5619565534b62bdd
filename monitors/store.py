"""History of monitor runs in Postgres (schema `monitoring`, owned by the dbt role) and the per-channel
alert state that decides what is new, what recovered, and what may be repeated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg2.extras import execute_values

from monitors.checks import STATUS_ORDER, CheckResult

DDL = """
create schema if not exists monitoring;

create table if not exists monitoring.monitor_runs (
    run_id text primary key,
    started_at timestamptz not null,
    finished_at timestamptz,
    checks integer,
    warnings integer,
    errors integer,
    alerts jsonb not null default '{}'::jsonb
);

create table if not exists monitoring.monitor_results (
    result_id bigserial primary key,
    run_id text not null references monitoring.monitor_runs (run_id),
    check_name text not null,
    check_type text not null,
    status text not null check (status in ('pass', 'warn', 'error')),
    observed_value double precision,
    warn_threshold text,
    error_threshold text,
    message text,
    details jsonb not null default '{}'::jsonb,
    run_started_at timestamptz not null,
    checked_at timestamptz not null default now()
);
create index if not exists monitor_results_check_idx on monitoring.monitor_results (check_name, checked_at);

create table if not exists monitoring.alert_state (
    channel text not null,
    check_name text not null,
    status text not null,
    last_alerted_at timestamptz,
    last_alerted_status text,
    primary key (channel, check_name)
);
"""


def ensure_tables(conn, reporting_role: str | None = None) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext('telemed-monitoring-ddl'))")
        cur.execute(DDL)
        if reporting_role:
            # The Data health dashboard reads the history, and nothing else in this schema.
            cur.execute(f'grant usage on schema monitoring to "{reporting_role}"')
            cur.execute(f'grant select on monitoring.monitor_results, monitoring.monitor_runs to "{reporting_role}"')


def start_run(conn, run_id: str, started_at: datetime) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("insert into monitoring.monitor_runs (run_id, started_at) values (%s, %s)", (run_id, started_at))


def store_results(conn, run_id: str, started_at: datetime, results: list[CheckResult]) -> None:
    """All results of a run in one transaction: stored before any alert is attempted."""
    rows = [
        (
            run_id,
            r.check_name,
            r.check_type,
            r.status,
            r.observed_value,
            r.warn_threshold,
            r.error_threshold,
            r.message,
            json.dumps(r.details, default=str),
            started_at,
        )
        for r in results
    ]
    with conn, conn.cursor() as cur:
        execute_values(
            cur,
            "insert into monitoring.monitor_results (run_id, check_name, check_type, status, observed_value,"
            " warn_threshold, error_threshold, message, details, run_started_at) values %s",
            rows,
        )
        cur.execute(
            "update monitoring.monitor_runs set checks = %s, warnings = %s, errors = %s where run_id = %s",
            (len(results), sum(r.status == "warn" for r in results), sum(r.status == "error" for r in results), run_id),
        )


def finish_run(conn, run_id: str, finished_at: datetime, alerts: dict) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(
            "update monitoring.monitor_runs set finished_at = %s, alerts = %s where run_id = %s",
            (finished_at, json.dumps(alerts, default=str), run_id),
        )


@dataclass
class Transition:
    kind: str  # new | worse | repeat | recovered
    result: CheckResult
    previous_status: str | None


def transitions(
    conn, channel: str, results: list[CheckResult], now: datetime, realert_after: timedelta
) -> list[Transition]:
    """What this channel must be told: new and worsened failures, recoveries of checks it was told
    about, and failures it was told about longer ago than the re-alert interval."""
    with conn.cursor() as cur:
        cur.execute(
            "select check_name, status, last_alerted_at, last_alerted_status from monitoring.alert_state"
            " where channel = %s",
            (channel,),
        )
        state = {row[0]: row[1:] for row in cur.fetchall()}
    conn.commit()
    out = []
    for result in results:
        _previous, last_alerted_at, last_alerted_status = state.get(result.check_name, (None, None, None))
        if result.failing:
            if last_alerted_status is None:
                out.append(Transition("new", result, last_alerted_status))
            elif STATUS_ORDER[result.status] > STATUS_ORDER[last_alerted_status]:
                out.append(Transition("worse", result, last_alerted_status))
            elif last_alerted_at is None or now - last_alerted_at >= realert_after:
                out.append(Transition("repeat", result, last_alerted_status))
        elif last_alerted_status is not None:
            out.append(Transition("recovered", result, last_alerted_status))
    return out


def record_delivery(conn, channel: str, results: list[CheckResult], sent: list[Transition], now: datetime) -> None:
    """After a successful delivery: remember what this channel now knows. Checks not alerted keep
    their last alert time, so a repeat waits for the interval from the last message actually sent."""
    sent_by_check = {t.result.check_name: t for t in sent}
    with conn, conn.cursor() as cur:
        for result in results:
            transition = sent_by_check.get(result.check_name)
            if transition is None:
                cur.execute(
                    "insert into monitoring.alert_state (channel, check_name, status) values (%s, %s, %s)"
                    " on conflict (channel, check_name) do update set status = excluded.status",
                    (channel, result.check_name, result.status),
                )
            elif transition.kind == "recovered":
                cur.execute(
                    "insert into monitoring.alert_state (channel, check_name, status, last_alerted_at,"
                    " last_alerted_status) values (%s, %s, 'pass', %s, null) on conflict (channel, check_name)"
                    " do update set status = 'pass', last_alerted_at = excluded.last_alerted_at,"
                    " last_alerted_status = null",
                    (channel, result.check_name, now),
                )
            else:
                cur.execute(
                    "insert into monitoring.alert_state (channel, check_name, status, last_alerted_at,"
                    " last_alerted_status) values (%s, %s, %s, %s, %s) on conflict (channel, check_name)"
                    " do update set status = excluded.status, last_alerted_at = excluded.last_alerted_at,"
                    " last_alerted_status = excluded.last_alerted_status",
                    (channel, result.check_name, result.status, now, result.status),
                )
