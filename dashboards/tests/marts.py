"""The real marts for the dashboard tests: the generator makes a small world, its events go through the
broker, the loaders land everything in raw, and ``dbt build`` (in this process) makes the marts, all in a
database, topic and landing folder of the test session's own. Then two monitor runs are written to the
monitors' history table through monitors/store.py's own DDL, as ``make monitor`` would leave them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from monitors import store
from runtime import db
from runtime.settings import PROJECT_ROOT, REPORTING_ROLE, Settings
from testkit.dbt import dbt_ok_as_child

SCALE = 2000


def build(settings: Settings) -> None:
    """generate -> produce -> load -> dbt build, on this database, a topic and landing folder of its own."""
    with tempfile.TemporaryDirectory(prefix="telemed-dash-") as work:
        out = Path(work)
        env = {
            **os.environ,
            "PGDATABASE": settings.pg_database,
            "TELEMED_TOPIC": f"test.dashboards.{settings.pg_database}",
            "TELEMED_LANDING_DIR": str(out / "landing"),
        }
        steps = [
            ["generate", "--scale", str(SCALE), "--seed", "7", "--out", str(out / "generated"), "--clean"],
            ["produce", "--from-jsonl", str(out / "generated" / "events")],
            # The video platform's API over this world, for the length of the load (the call quality cards).
            [
                "video-api",
                "run",
                "--data",
                str(out / "generated" / "video_api"),
                "--",
                sys.executable,
                "-m",
                "loaders",
                "load",
                "--group",
                f"dashboards-{settings.pg_database}",
                "--idle-seconds",
                "3",
            ],
        ]
        for args in steps:
            done = subprocess.run(
                [sys.executable, "-m", "loaders", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"python -m loaders {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
                )
        # The marts are what these tests read; the data tests on them run in `make test`'s dbt build. dbt runs
        # in this process, with what `python -m loaders env` gives a child (testkit/dbt.py).
        build = ["build", "--full-refresh", "--exclude-resource-type", "test", "unit_test"]
        dbt_ok_as_child(env, *build, "--target-path", str(out / "target"))
    add_monitor_history(settings)


def add_monitor_history(settings: Settings) -> None:
    """Two monitor runs in monitoring.monitor_results, the table's DDL and grants from monitors/store.py."""
    conn = db.connect(settings)
    try:
        store.ensure_tables(conn, reporting_role=REPORTING_ROLE)
        with conn, conn.cursor() as cur:
            runs = [
                ("2026-10-29 06:00+00", ("pass", "warn", "pass")),
                ("2026-10-30 06:00+00", ("pass", "pass", "error")),
            ]
            for run, (started, statuses) in enumerate(runs, start=1):
                cur.execute(
                    "insert into monitoring.monitor_runs (run_id, started_at) values (%s, %s)", (f"run-{run}", started)
                )
                checks = ("freshness_appointments", "no_show_rate", "min_daily_appointments")
                for check, status in zip(checks, statuses, strict=True):
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
            # The history only: dbt's monitoring models (monitor_observations) stay.
            cur.execute("drop table if exists monitoring.monitor_results, monitoring.monitor_runs cascade")
    finally:
        conn.close()
