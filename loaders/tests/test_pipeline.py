"""End to end on generated data: generate -> Kafka + files + clinic DB -> loaders -> dbt build -> marts.

The marts must reconcile exactly with the generator's manifest (appointments by final status, by device
and by day; valid feedback of known appointments; the Key Insights by status and by device; by specialty
within the calibration tolerance). The world is first emitted as of two days before the end of its
period, loaded and built; then the rest arrives (late events, late feedback), is loaded and built
incrementally (the scheduled run after a load, then the nightly build), and the marts must be identical,
row for row, to a full refresh of the same raw data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import psycopg2.extras
import pytest

from runtime import db
from runtime.envcmd import child_env
from runtime.settings import PROJECT_ROOT, Settings
from testkit.dbt import dbt_ok

SCALE = 3000
END_DATE = "2026-10-31"
FIRST_AS_OF = "2026-10-30T00:00:00Z"
# `dbt build` of seeds, snapshots and models: where a build is only there to be compared with another.
WITHOUT_TESTS = ("--exclude-resource-type", "test", "unit_test")


# --- helpers shared with test_pipeline_lifecycle ---------------------------------------------------
def run_env(settings: Settings, work: Path | None = None) -> dict[str, str]:
    env = {**os.environ, **child_env(settings), "PGDATABASE": settings.pg_database}
    if work is not None:
        # A target and log dir per test module: parallel dbt runs never share artifacts.
        env.update(DBT_TARGET_PATH=str(work / "target"), DBT_LOG_PATH=str(work / "logs"))
    return env


def dbt(settings: Settings, work: Path, *args: str) -> str:
    """Run dbt on the test database (in this process: testkit/dbt.py) with the environment `python -m
    loaders env` gives a child; fail with dbt's output, else return it."""
    return dbt_ok(run_env(settings, work), *args)


def loaders_cli(settings: Settings, *args: str) -> None:
    command = [sys.executable, "-m", "loaders", *args]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=run_env(settings), capture_output=True, text=True)
    assert completed.returncode == 0, (
        f"loaders {' '.join(args)} failed:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
    )


def query(settings: Settings, sql: str, params=None) -> list[dict]:
    conn = db.connect(settings)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(row) for row in cur.fetchall()]
    finally:
        conn.close()


def mart_fingerprints(settings: Settings, schemas: tuple[str, ...] = ("marts",)) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent hash of every row of every table in marts (or in `schemas`)."""
    tables = [
        (row["table_schema"], row["table_name"])
        for row in query(
            settings,
            "select table_schema, table_name from information_schema.tables where table_schema = any(%s)"
            " and table_type = 'BASE TABLE' order by 1, 2",
            (list(schemas),),
        )
    ]
    fingerprints = {}
    for schema, table in tables:
        row = query(
            settings,
            f"select count(*) as n, md5(coalesce(string_agg(md5(t::text), ',' order by md5(t::text)), '')) as h"
            f' from "{schema}"."{table}" as t',
        )[0]
        fingerprints[table if schemas == ("marts",) else f"{schema}.{table}"] = (row["n"], row["h"])
    return fingerprints


# The tables an incremental build must leave exactly as a full refresh would: the marts and the incremental
# intermediate tables under them (int_appointments_derived_from_events, int_appointment_reschedule_chains).
BUILT_SCHEMAS = ("marts", "intermediate")


# --- the end-to-end test ---------------------------------------------------------------------------
def generate_and_load(settings: Settings, out: Path, landing: Path, topic: str, *as_of: str) -> dict:
    loaders_cli(
        settings,
        "generate",
        "--scale",
        str(SCALE),
        "--seed",
        "7",
        "--end-date",
        END_DATE,
        "--out",
        str(out),
        "--landing",
        str(landing),
        *(("--as-of", *as_of) if as_of else ()),
    )
    loaders_cli(settings, "reference")
    loaders_cli(settings, "produce", "--from-jsonl", str(out / "events"), "--topic", topic)
    loaders_cli(settings, "consume", "--drain", "--topic", topic, "--group", f"{topic}-loader")
    loaders_cli(settings, "feedback", "--landing", str(landing))
    return json.loads((out / "manifest.json").read_text())


def assert_marts_reconcile(settings: Settings, manifest: dict) -> None:
    facts = query(settings, "select status, device_type, is_started, date_id from marts.fact_appointment")
    appointments = manifest["appointments"]
    assert len(facts) == appointments["total"]
    assert Counter(f["status"] for f in facts) == Counter(appointments["by_final_status"])
    assert Counter(f["device_type"] for f in facts if f["is_started"]) == Counter(appointments["by_device"])
    by_day = Counter(
        f"{f['date_id'] // 10000:04d}-{f['date_id'] // 100 % 100:02d}-{f['date_id'] % 100:02d}" for f in facts
    )
    assert by_day == Counter(appointments["by_day"])
    feedback = manifest["feedback"]
    forms = query(settings, "select count(*) as n from marts.fact_feedback")[0]["n"]
    assert forms == feedback["forms_valid"] - feedback["forms_unknown_appointment"]
    kpis = query(settings, "select sum(appointments) as a, sum(feedback_forms) as f from marts.ops_daily_kpis")[0]
    assert (kpis["a"], kpis["f"]) == (appointments["total"], forms)
    assert_key_insights_match(settings, manifest["key_insights"])


def close(actual, expected) -> bool:
    # The manifest rounds to 2 decimals from exact sums; the marts keep 4: allow the rounding step.
    return abs(float(actual) - expected) <= 0.006


def assert_key_insights_match(settings: Settings, expected: dict) -> None:
    """The Key Insights computed from the marts are the generator's own figures."""
    statuses = query(
        settings,
        "select status, 100.0 * count(*) / sum(count(*)) over () as pct from marts.fact_appointment"
        " where status in ('completed', 'cancelled', 'rescheduled', 'no_show') group by status",
    )
    shares = {row["status"]: row["pct"] for row in statuses}
    for status, pct in expected["appointment_status_share_pct"].items():
        assert close(shares.get(status, 0), pct), (status, shares.get(status), pct)
    devices = {row["device_type"]: row for row in query(settings, "select * from marts.device_quality")}
    for device, wait in expected["avg_wait_time_minutes_by_device"].items():
        assert close(devices[device]["avg_wait_minutes"], wait), (device, devices[device]["avg_wait_minutes"], wait)
    for device, pct in expected["technical_issues_share_pct_by_device"].items():
        share = 100 * devices[device]["technical_issue_share"]
        assert close(share, pct), (device, share, pct)
    # By specialty only within the calibration tolerance: clinic_ops holds each provider's current row, so
    # a version replaced before the first reference load never reaches raw, and the few appointments it
    # covered are attributed to the oldest version the warehouse saw. Every form still counts once.
    specialties = {row["specialty"]: row for row in query(settings, "select * from marts.specialty_satisfaction")}
    total = sum(ratings["forms"] for ratings in expected["ratings_by_specialty"].values())
    assert sum(row["feedback_forms"] for row in specialties.values()) == total
    for specialty, ratings in expected["ratings_by_specialty"].items():
        row = specialties[specialty]
        assert abs(row["feedback_forms"] - ratings["forms"]) <= max(5, 0.1 * ratings["forms"]), specialty
        assert abs(float(row["avg_provider_rating"]) - ratings["provider_rating"]) <= 0.1, specialty
        assert abs(float(row["avg_overall_satisfaction"]) - ratings["overall_satisfaction"]) <= 0.1, specialty


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


def test_generated_data_reconciles_and_incremental_equals_full_refresh(settings, work, kafka_topic):
    out, landing = work / "generated", work / "landing"
    topic = kafka_topic or f"test.pipeline.{uuid.uuid4().hex[:8]}"

    first = generate_and_load(settings, out, landing, topic, FIRST_AS_OF)
    dbt(settings, work, "build", "--full-refresh")
    assert_marts_reconcile(settings, first)

    # The rest of the world arrives: late events, late feedback, new appointments.
    final = generate_and_load(settings, out, landing, topic)
    assert final["appointments"] != first["appointments"], "the second load must bring new or changed appointments"
    # The scheduled run after the load (selectors.yml: what it reads and re-derives is the load's), then the
    # nightly build: each leaves what a full refresh would. device_quality's all-time p90 wait is the
    # nightly build's (the hourly run keeps the last one: see the model), computed here before comparing.
    dbt(settings, work, "build", "--selector", "hourly")
    dbt(settings, work, "run", "--select", "device_quality")
    hourly = mart_fingerprints(settings, BUILT_SCHEMAS)
    dbt(settings, work, "build")
    assert_marts_reconcile(settings, final)
    incremental = mart_fingerprints(settings, BUILT_SCHEMAS)
    assert incremental == hourly

    # The comparison needs the full refresh's rows, not its tests (the builds above ran them).
    dbt(settings, work, "build", "--full-refresh", *WITHOUT_TESTS)
    assert mart_fingerprints(settings, BUILT_SCHEMAS) == incremental

    freshness = dbt(settings, work, "source", "freshness")
    assert "ERROR STALE" not in freshness
