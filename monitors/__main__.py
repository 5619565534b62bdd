"""``python -m monitors``: dbt source freshness and the monitor tests as monitors.

One run: read the timings of the last dbt build, run ``dbt source freshness``, then ``dbt build`` of the
monitor models together with the data tests (every test on every row; with ``--scope hourly``, after the
hourly build, the tests of the ``hourly`` selector on the rows that run touched), evaluate the observed
values against thresholds.yml, together with the ingestion's real-time health (consumer lag, seconds since
each loader's last load: monitors/ingestion.py), store one row per check in monitoring.monitor_results,
alert each configured channel about what changed, and render the monitoring dashboard. Exit status 1 when
any check is at error level (for schedulers), else 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg2
from psycopg2 import sql

from monitors import alerts, checks, ingestion, report, store
from runtime import db
from runtime.dbt_session import DbtSession
from runtime.envcmd import child_env
from runtime.settings import DBT_ROLE, PROJECT_ROOT, REPORTING_ROLE, Settings

log = logging.getLogger("monitors")

# The checks monitoring.monitor_observations computes (performance and ingestion are read in Python).
OBSERVATION_CHECKS = [name for name, kind in checks.CHECK_TYPES.items() if kind not in ("performance", "ingestion")]

# The dbt calls of one run: (arguments, the artifact it writes, the folder under target/monitor it is kept in).
# The monitor models and the data tests run in one invocation (tests after what they test). Which tests, on
# which rows, is the run's scope:
# - full (`make monitor`, the nightly): every data test on every row;
# - hourly (the hourly DAG, after its build): the tests of the `hourly` selector (selector monitors_hourly) on
#   the rows that run touched (TELEMED_RUN_SCOPE=hourly, macro touched_rows), so the hourly path's cost
#   follows the new data, not the history. The tests it leaves out (sources, staging views: they read the
#   whole raw stream) keep their last alert state until the next full run (an absent check changes nothing).
TEST_STEPS = {
    "full": ["build", "--select", "tag:monitor", "resource_type:test", "--exclude-resource-type", "unit_test"],
    "hourly": ["build", "--selector", "monitors_hourly"],
}
# What each scope tells macro hourly_run, whatever the environment the monitors were started in.
RUN_SCOPES = {"full": "nightly", "hourly": "hourly"}


# What each dbt call of a run leaves, whatever its scope: (the artifact it writes, the folder it is kept in).
ARTIFACTS = [("sources.json", "freshness"), ("run_results.json", "tests")]


def dbt_steps(scope: str) -> list[tuple[list[str], str, str]]:
    calls = [["source", "freshness"], TEST_STEPS[scope]]
    return [(args, artifact, keep_as) for args, (artifact, keep_as) in zip(calls, ARTIFACTS, strict=True)]


# The failing rows of the tests that failed or warned in that build, for the report's samples: run again
# with --store-failures (schema monitoring_failures, dbt_project.yml), only when a test did not pass and
# only those tests, instead of a table for each of ~400 tests on every run.
FAILING_TESTS = ["test", "--select", "result:fail", "result:warn", "--store-failures", "--state"]
FAILURES_SCHEMA = "monitoring_failures"
PARTIAL_PARSE = "partial_parse.msgpack"


def dbt_session(settings: Settings, monitor_target: Path, scope: str = "full") -> DbtSession:
    """The run's dbt calls, in this process, in the environment a child process would get."""
    env = {**child_env(settings), "TELEMED_RUN_SCOPE": RUN_SCOPES[scope]}
    return DbtSession(env, monitor_target)


def observation_results(conn, thresholds: checks.Thresholds) -> list[checks.CheckResult]:
    observed: dict[str, tuple[float | None, dict]] = {}
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select check_name, observed_value, window_start, window_end from monitoring.monitor_observations"
            )
            for name, value, window_start, window_end in cur.fetchall():
                window = {"window_start": str(window_start), "window_end": str(window_end)}
                observed[name] = (None if value is None else float(value), window)
        conn.commit()
    except psycopg2.errors.UndefinedTable:
        conn.rollback()
        log.error("monitoring.monitor_observations does not exist: has `dbt build` run?")
    return [evaluate_observed(name, observed.get(name, (None, {})), thresholds) for name in OBSERVATION_CHECKS]


def evaluate_observed(name: str, observed: tuple[float | None, dict], thresholds: checks.Thresholds):
    value, details = observed
    return checks.evaluate(name, value, thresholds, details)


def performance_results(conn, build_results: Path, thresholds: checks.Thresholds) -> list[checks.CheckResult]:
    with conn.cursor() as cur:
        # The latest run of each loader: together they are one `make load`.
        cur.execute(
            """
            select coalesce(sum(extract(epoch from finished_at - started_at)), 0), count(*)
            from (
                select distinct on (loader) started_at, finished_at
                from raw.load_runs
                where finished_at is not null
                order by loader, started_at desc
            ) as latest_runs
            """
        )
        load_seconds, loaders_seen = cur.fetchone()
    conn.commit()
    elapsed, slowest, slowest_seconds = checks.model_timings(build_results)
    is_build = checks.invocation_command(build_results) in ("build", "run")
    dbt_seconds = elapsed if is_build else None
    pipeline = float(load_seconds) + (dbt_seconds or 0.0) if loaders_seen or dbt_seconds else None
    return [
        checks.evaluate(
            "pipeline_run_seconds",
            pipeline,
            thresholds,
            {"load_seconds": float(load_seconds), "dbt_build_seconds": dbt_seconds},
        ),
        checks.evaluate(
            "slowest_model_seconds",
            slowest_seconds if is_build else None,
            thresholds,
            {"model": slowest},
        ),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m monitors", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="print the alerts instead of sending them")
    parser.add_argument("--skip-dbt", action="store_true", help="use the artifacts already in target/monitor")
    parser.add_argument("--thresholds", type=Path, default=checks.THRESHOLDS_FILE)
    parser.add_argument("--report", type=Path, default=None, help="dashboard path (default .local/monitoring)")
    parser.add_argument(
        "--dbt-target", type=Path, default=PROJECT_ROOT / "target", help="dbt's target folder (default target/)"
    )
    parser.add_argument(
        "--scope",
        choices=sorted(TEST_STEPS),
        default="full",
        help="full: every data test on every row (default); hourly: after the hourly build, its selector's "
        "tests on the rows it touched",
    )
    return parser.parse_args(argv)


def keep_last_build_timings(target: Path, monitor_target: Path) -> Path:
    """The last `dbt build` left its timings in target/; keep them before our own dbt calls."""
    build_results = monitor_target / "last_build_run_results.json"
    if checks.invocation_command(target / "run_results.json") in ("build", "run"):
        monitor_target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target / "run_results.json", build_results)
    return build_results


def reuse_build_parse(target: Path, monitor_target: Path) -> None:
    """Start from the last build's parsed project (target/partial_parse.msgpack) when it is newer than our
    own: dbt then re-reads only the files that changed since, instead of parsing the whole project on a
    first run (about 6 s of CPU). dbt still checks the file itself: a project, profile, target or vars
    that differ from the build's make it parse in full, as without the copy."""
    parsed, ours = target / PARTIAL_PARSE, monitor_target / PARTIAL_PARSE
    if parsed.exists() and (not ours.exists() or ours.stat().st_mtime < parsed.stat().st_mtime):
        monitor_target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(parsed, ours)


def run_monitor_dbt(dbt: DbtSession, monitor_target: Path, scope: str = "full") -> None:
    """Source freshness, then the monitor models and tests; each artifact kept with its manifest. The
    freshness thresholds and the window are dbt_project.yml's vars; one target path for every call, so
    dbt parses the project once."""
    for dbt_args, artifact, keep_as in dbt_steps(scope):
        # Never read a previous run's artifact as this run's.
        shutil.rmtree(monitor_target / keep_as, ignore_errors=True)
        (monitor_target / artifact).unlink(missing_ok=True)
        dbt.run(dbt_args)
        (monitor_target / keep_as).mkdir(parents=True, exist_ok=True)
        produced = monitor_target / artifact
        if produced.exists():
            shutil.move(produced, monitor_target / keep_as / artifact)
            shutil.copyfile(monitor_target / "manifest.json", monitor_target / keep_as / "manifest.json")


def keep_failing_rows(settings: Settings, dbt: DbtSession, monitor_target: Path) -> None:
    """This run's failing rows, and no older ones: the schema is emptied first (a test that failed before
    and passes now leaves nothing behind), then the failed and warning tests run again storing their rows."""
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(FAILURES_SCHEMA)))
    finally:
        conn.close()
    results = monitor_target / "tests" / "run_results.json"
    if not results.exists():
        return
    statuses = {r.get("status") for r in json.loads(results.read_text()).get("results", [])}
    if not statuses & {"fail", "warn"}:
        return
    dbt.run([*FAILING_TESTS, str(monitor_target / "tests")])
    (monitor_target / "run_results.json").unlink(missing_ok=True)  # the build's results are the run's
    if (monitor_target / "manifest.json").exists():  # it names the stored tables (relation_name)
        shutil.copyfile(monitor_target / "manifest.json", monitor_target / "tests" / "manifest.json")


def evaluate_checks(
    conn, thresholds: checks.Thresholds, monitor_target: Path, build_results: Path, settings: Settings
) -> list[checks.CheckResult]:
    """Every check of the run: freshness, observations, performance, ingestion (lag, last load), data
    tests, and dbt's own failures."""
    tests = monitor_target / "tests"
    results = [
        *checks.freshness_checks(monitor_target / "freshness" / "sources.json"),
        *observation_results(conn, thresholds),
        *performance_results(conn, build_results, thresholds),
        *ingestion.ingestion_results(conn, settings, thresholds),
        *checks.test_checks(tests / "run_results.json", tests / "manifest.json"),
    ]
    for artifact, keep_as in ARTIFACTS:
        if not (monitor_target / keep_as / artifact).exists():
            # dbt itself failed (cannot connect, cannot parse): that is the loudest failure of all.
            results.append(
                checks.CheckResult(
                    check_name=f"dbt_run:{keep_as}",
                    check_type="dbt_test" if keep_as == "tests" else "freshness",
                    status="error",
                    observed_value=None,
                    message=f"dbt produced no {artifact}: see logs/dbt.log",
                )
            )
    return results


def send_alerts(
    conn, run_id: str, results: list[checks.CheckResult], thresholds: checks.Thresholds, *, dry_run: bool
) -> dict[str, dict]:
    """Alert each channel about the checks whose status changed (or is due again); the outcome by channel."""
    now = checks.utcnow()
    realert = timedelta(minutes=thresholds.realert_after_minutes)
    outcome: dict[str, dict] = {}
    channels = alerts.channels_from_env()
    if not channels and not dry_run:
        log.info("no alert channel configured (SLACK_WEBHOOK_URL, SMTP_HOST + ALERT_EMAIL_TO)")
    for channel in channels or ([alerts.PrintChannel()] if dry_run else []):
        pending = store.transitions(conn, channel.name, results, now, realert)
        if not pending:
            outcome[channel.name] = {"sent": 0}
            continue
        message = alerts.AlertMessage(run_id=run_id, project="telemed-elt", transitions=pending)
        if dry_run:
            print(f"--- would send to {channel.name} ---\n{message.text()}")
            outcome[channel.name] = {"dry_run": len(pending)}
            continue
        error = alerts.deliver(channel, message)
        if error is None:
            store.record_delivery(conn, channel.name, results, pending, now)
            outcome[channel.name] = {"sent": len(pending)}
        else:
            outcome[channel.name] = {"failed": error, "pending": len(pending)}
    return outcome


def describe_alerts(outcome: dict) -> str:
    """What happened to the alerts, in words: per channel, or why none was sent."""
    if not outcome:
        return "none sent: no channel configured (SLACK_WEBHOOK_URL, or SMTP_HOST and ALERT_EMAIL_TO)"
    parts = []
    for channel, result in outcome.items():
        if "failed" in result:
            parts.append(f"{channel}: FAILED ({result['failed']}), {result['pending']} pending")
        elif "dry_run" in result:
            parts.append(f"{channel}: {result['dry_run']} printed (dry run)")
        else:
            sent = result.get("sent", 0)
            parts.append(f"{channel}: {sent} sent" if sent else f"{channel}: nothing new to send")
    return "; ".join(parts)


def print_summary(run_id: str, results: list[checks.CheckResult], outcome: dict, report_path: Path) -> int:
    """One line per run and per problem; the exit status: 1 when any check is at error level."""
    errors = [r for r in results if r.status == "error"]
    warns = [r for r in results if r.status == "warn"]
    print(f"monitor run {run_id}: {len(results)} checks, {len(warns)} warn, {len(errors)} error")
    for result in errors + warns:
        print(f"  {result.status.upper():5} {result.check_name}: {report.plain_message(result)}")
    print(f"alerts: {describe_alerts(outcome)}")
    print(f"report: {report_path.resolve().as_uri()}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    thresholds = checks.Thresholds.load(args.thresholds)
    started_at = checks.utcnow()
    run_id = f"{started_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    monitor_target = args.dbt_target / "monitor"
    build_results = keep_last_build_timings(args.dbt_target, monitor_target)
    if not args.skip_dbt:
        reuse_build_parse(args.dbt_target, monitor_target)
        dbt = dbt_session(settings, monitor_target, args.scope)
        run_monitor_dbt(dbt, monitor_target, args.scope)
        keep_failing_rows(settings, dbt, monitor_target)

    conn = db.connect(settings, role=DBT_ROLE)
    try:
        store.ensure_tables(conn, reporting_role=REPORTING_ROLE)
        results = evaluate_checks(conn, thresholds, monitor_target, build_results, settings)
        store.start_run(conn, run_id, started_at)
        store.store_results(conn, run_id, started_at, results)
        outcome = send_alerts(conn, run_id, results, thresholds, dry_run=args.dry_run)
        store.finish_run(conn, run_id, checks.utcnow(), outcome)
        report_path = args.report or settings.state_dir / "monitoring" / "index.html"
        report.write_report(conn, report_path, checks.utcnow(), monitor_target / "tests" / "manifest.json")
    finally:
        conn.close()
    return print_summary(run_id, results, outcome, report_path)


if __name__ == "__main__":
    sys.exit(main())
