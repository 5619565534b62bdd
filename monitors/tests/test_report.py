"""The health report in Debian's Chromium at a 1,366 px window: what needs attention first, values and
thresholds in a reader's units, a failed dbt test's failing rows without sensitive columns, every check's
history, and no horizontal scrolling. The screenshot is kept in .local/artifacts/monitors/.

The history is written through monitors/store.py into a real Postgres database. The failing rows are a
table in schema monitoring_failures written here in place of ``dbt build --store-failures`` (a stand-in,
so named), and the dbt manifest is an excerpt in dbt's own format: the demo and the monitor scenarios run
the real dbt (``monitors/tests/test_scenarios.py`` checks the stored failures exist)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from dashboards.tests.browser import chromium, watch
from dashboards.tests.conftest import chromium_path  # noqa: F401 - the browser tests' fixture, reused
from monitors import checks, report, store
from runtime import db
from runtime.settings import DBT_ROLE, PROJECT_ROOT
from testkit.clock import AS_OF

ARTIFACTS = PROJECT_ROOT / ".local" / "artifacts" / "monitors"
THRESHOLDS = checks.Thresholds.load()
UNMATCHED = "test.telemed.assert_feedback_forms_match_an_appointment"
LONG_NAME = (
    "accepted_values_monitor_observations_check_name__key_column_null_share__min_appointments_per_day__"
    "daily_volume_vs_same_weekday__rejected_input_share__completion_rate"
)
LONG_ID = f"test.telemed.{LONG_NAME}.eb7541952c"
PASSING_TESTS = 40


def dbt_test(name: str, unique_id: str, status: str, failures: int, message: str = "") -> checks.CheckResult:
    severity = "warn" if status == "warn" else "error"
    return checks.CheckResult(
        check_name=f"dbt_test:{name}",
        check_type="dbt_test",
        status=status,
        observed_value=float(failures),
        warn_threshold="0 failing rows" if severity == "warn" else None,
        error_threshold="0 failing rows" if severity == "error" else None,
        message=message or f"Got {failures} results, configured to {severity} if != 0",
        details={"unique_id": unique_id, "severity": severity},
    )


def run_results(run: int) -> list[checks.CheckResult]:
    """Three runs: the no-show rate climbs from pass to warn to error; the unmatched forms warn throughout."""
    no_show = (0.05, 0.09, 0.1312)[run]
    results = [
        checks.evaluate("no_show_rate", no_show, THRESHOLDS),
        checks.evaluate("completion_rate", 0.7482 - run / 100, THRESHOLDS),
        checks.evaluate("rejected_input_share", 0.0091, THRESHOLDS),
        checks.CheckResult(
            check_name="freshness:kafka.appointment_events",
            check_type="freshness",
            status="pass",
            observed_value=0.25 + run,
            warn_threshold="<= 2 hours",
            error_threshold="<= 6 hours",
        ),
        dbt_test("assert_feedback_forms_match_an_appointment", UNMATCHED, "warn", 13),
    ]
    if run == 2:
        results.append(
            dbt_test(LONG_NAME, LONG_ID, "error", 2, message="Got 2 results, configured to fail if != 0 " * 6)
        )
    results += [
        dbt_test(f"not_null_fact_appointment_column_{i}", f"test.telemed.not_null_{i}.0", "pass", 0)
        for i in range(PASSING_TESTS)
    ]
    return results


def manifest_excerpt(database: str) -> dict:
    """The nodes the report reads, as dbt's manifest.json has them."""
    return {
        "nodes": {
            UNMATCHED: {
                "name": "assert_feedback_forms_match_an_appointment",
                "description": "",
                "raw_code": "-- Feedback for an appointment that never arrived is valid input but cannot be\n"
                "-- attributed: it stays out of fact_feedback.\n{{ config(severity='warn') }}\nselect 1",
                "relation_name": f'"{database}"."monitoring_failures"."assert_feedback_forms_match_an_appointment"',
                "depends_on": {"nodes": ["model.telemed.stg_feedback_forms__patient_feedback"]},
            },
            LONG_ID: {
                "name": LONG_NAME,
                "description": "",
                "test_metadata": {
                    "name": "accepted_values",
                    "kwargs": {"column_name": "check_name", "values": ["key_column_null_share", "no_show_rate"]},
                },
                "attached_node": "model.telemed.monitor_observations",
                "column_name": "check_name",
            },
        },
        "sources": {
            "source.telemed.clinic_ops.patients": {
                "columns": {"patient_id": {"name": "patient_id", "config": {"meta": {"sensitive": True}}}}
            }
        },
    }


@pytest.fixture(scope="module")
def report_page(settings, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    conn = db.connect(settings, role=DBT_ROLE)
    try:
        store.ensure_tables(conn)
        with conn, conn.cursor() as cur:
            # Stand-in for dbt build --store-failures: the failing rows of the unmatched-forms test.
            cur.execute("create schema if not exists monitoring_failures")
            cur.execute(
                "create table monitoring_failures.assert_feedback_forms_match_an_appointment"
                " (feedback_id text, appointment_id text, patient_id text, submitted_at timestamptz)"
            )
            cur.execute(
                "insert into monitoring_failures.assert_feedback_forms_match_an_appointment"
                " select 'FBK-' || i, 'APT-9' || i, 'PAT-SECRET-' || i, %s - i * interval '1 hour'"
                " from generate_series(1, 13) as i",
                (AS_OF,),
            )
        for run in range(3):
            started = AS_OF + timedelta(hours=run)
            run_id = f"run-{run}"
            store.start_run(conn, run_id, started)
            store.store_results(conn, run_id, started, run_results(run))
            store.finish_run(conn, run_id, started + timedelta(seconds=42), {})
        manifest = out / "manifest.json"
        manifest.write_text(json.dumps(manifest_excerpt(settings.pg_database)))
        return report.write_report(conn, out / "index.html", AS_OF + timedelta(hours=3), manifest)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def page_at_1366(report_page, chromium_path):  # noqa: F811 - the fixture imported above
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(chromium_path) as context:
        page = context.new_page()
        page.set_viewport_size({"width": 1366, "height": 900})
        log = watch(page)
        page.goto(report_page.as_uri())
        page.screenshot(path=str(ARTIFACTS / "health-report-1366.png"))
        page.screenshot(path=str(ARTIFACTS / "health-report-1366-full.png"), full_page=True)
        yield page, log
        page.close()


def test_fits_a_1366_px_window_and_loads_nothing_else(page_at_1366, report_page):
    page, log = page_at_1366
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner == 1366, f"the page is {width} px wide at a {inner} px window"
    assert log.console_errors == [] and log.page_errors == []
    assert log.requests == [report_page.as_uri()]


def test_failures_and_warnings_come_first(page_at_1366):
    page, _ = page_at_1366
    rows = page.eval_on_selector_all("table.checks > tbody > tr", "rows => rows.map(r => r.dataset.status)")
    assert rows[:3] == ["error", "error", "warn"], rows[:6]
    assert set(rows[3:]) == {"pass"}
    first = page.eval_on_selector_all("#attention > tbody > tr", "rows => rows.map(r => r.dataset.check)")
    # Errors, then warnings; within a level the monitors' families in their order, data tests last.
    assert first == ["no_show_rate", f"dbt_test:{LONG_NAME}", "dbt_test:assert_feedback_forms_match_an_appointment"]
    tiles = page.inner_text(".tiles")
    assert "2\nerrors" in tiles and "1\nwarnings" in tiles


def test_values_thresholds_and_descriptions_are_for_readers(page_at_1366):
    page, _ = page_at_1366
    row = page.locator('tr[data-check="no_show_rate"]')
    assert row.locator("td.value").inner_text() == "13.12%"
    bounds = row.locator("td.bounds").inner_text()
    assert "above 8.00%" in bounds and "above 12.00%" in bounds
    what = row.locator("td.what").inner_text()
    assert what.startswith("No-show rate") and "closed appointments" in what
    assert "error for 1 run, warn before" in row.locator("td.status").inner_text()
    fresh = page.locator('tr[data-check="freshness:kafka.appointment_events"]')
    assert fresh.locator("td.value").inner_text() == "2.2 h"
    assert "above 2 hours" in fresh.locator("td.bounds").inner_text()
    long_row = page.locator(f'tr[data-check="dbt_test:{LONG_NAME}"]')
    assert long_row.locator("td.value").inner_text() == "2 failing rows"
    assert long_row.locator(".title").inner_text().startswith("monitor_observations.check_name is one of")


def test_a_failed_dbt_test_shows_a_few_failing_rows_without_sensitive_columns(page_at_1366):
    page, _ = page_at_1366
    row = page.locator('tr[data-check="dbt_test:assert_feedback_forms_match_an_appointment"]')
    assert "valid input but cannot be attributed" in row.locator(".desc").inner_text()
    headers = row.locator("table.rows th").all_inner_texts()
    assert headers == ["feedback_id", "appointment_id", "submitted_at"]
    assert row.locator("table.rows tbody tr").count() == report.SAMPLE_ROWS
    caption = row.locator(".sample").inner_text()
    assert "5 of 13 failing rows" in caption and "left out as sensitive: patient_id" in caption
    assert "PAT-SECRET" not in page.content()
    assert "Got 13 results" not in row.inner_text(), "dbt's message repeats the value and threshold"


def test_each_check_has_its_history(page_at_1366):
    page, _ = page_at_1366
    dots = page.eval_on_selector_all(
        'tr[data-check="no_show_rate"] svg.trend circle', "cs => cs.map(c => c.getAttribute('fill'))"
    )
    assert dots == [report.COLORS["pass"], report.COLORS["warn"], report.COLORS["error"]]
    assert "5.00% to 13.12%" in page.locator('tr[data-check="no_show_rate"] td.trend-cell').inner_text()
    tests = page.locator("details")
    assert "Passing dbt data tests (40)" in tests.locator("summary").inner_text()
    assert tests.get_attribute("open") is None, "the passing data tests are folded away"


def test_console_summary_names_the_value_and_the_threshold():
    warn = dbt_test("assert_feedback_forms_match_an_appointment", UNMATCHED, "warn", 13)
    assert report.plain_message(warn) == "13 failing rows (warn threshold: any failing row)"
    error = checks.evaluate("no_show_rate", 0.1312, THRESHOLDS)
    assert report.plain_message(error) == "13.12% (error threshold: above 12.00%)"
