"""Monitor scenarios on generated data, end to end: generator -> Kafka -> loaders -> dbt -> monitors,
with alerts delivered to a real SMTP server and a real HTTP webhook on loopback.

The tests of this module run in order and share one pipeline database: a clean run alerts nothing,
stale data alerts, a repeat inside the re-alert interval stays quiet, fresh data recovers.
(test_business_alerts.py holds the world with injected anomalies.)
"""

from __future__ import annotations

import json
import sys

import pytest

from loaders.tests.loader_support import valid_form
from monitors.tests.scenario_world import build_pipeline, mail_bodies, must, slack_texts
from runtime import db

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(base_settings, receivers, tmp_path_factory):
    built = build_pipeline(base_settings, tmp_path_factory.mktemp("monitors-clean"), receivers, [])
    yield built
    db.drop_database(base_settings, built.settings.pg_database)


def test_clean_run_stores_every_check_and_alerts_nothing(pipeline, receivers):
    webhook, sink = receivers
    done = pipeline.monitor()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert webhook.requests == [] and sink.messages == [], slack_texts(webhook)
    rows = dict(
        pipeline.sql(
            "select check_name, status from monitoring.monitor_results"
            " where run_id = (select max(run_id) from monitoring.monitor_runs)"
        )
    )
    for check in ("no_show_rate", "min_appointments_per_day", "daily_volume_vs_same_weekday", "pipeline_run_seconds"):
        assert rows[check] == "pass"
    assert any(name.startswith("freshness:kafka.appointment_events") for name in rows)
    assert any(name.startswith("dbt_test:") for name in rows)
    observed = dict(pipeline.sql("select check_name, observed_value from monitoring.monitor_observations"))
    assert 0.02 < observed["no_show_rate"] < 0.08
    assert "Data health: monitors" in (pipeline.work / "monitoring.html").read_text()
    # Failing rows are kept only for tests that failed or warned: nothing here.
    assert failure_tables(pipeline) == set()


def test_stale_data_alerts_on_both_channels(pipeline, receivers):
    webhook, sink = receivers
    for table in ("appointment_events", "patient_feedback", "providers", "patients", "feedback_files"):
        pipeline.sql(f"update raw.{table} set _loaded_at = _loaded_at - interval '12 hours'")
    done = pipeline.monitor()
    assert done.returncode == 1, "an error-level check must make the run fail for the scheduler"
    assert len(webhook.requests) == 1 and len(sink.messages) == 1
    text = slack_texts(webhook)[0]
    assert "freshness:kafka.appointment_events: ERROR (new), observed 12" in text
    assert "thresholds warn <= 2 hours; error <= 6 hours" in text
    assert "freshness:kafka.appointment_events: ERROR (new)" in mail_bodies(sink)[0]


def test_still_failing_inside_the_realert_interval_sends_nothing(pipeline, receivers):
    webhook, sink = receivers
    done = pipeline.monitor()
    assert done.returncode == 1
    assert len(webhook.requests) == 1 and len(sink.messages) == 1, "no repeat alert inside the interval"


def test_next_good_run_sends_a_recovery(pipeline, receivers):
    webhook, sink = receivers
    for table in ("appointment_events", "patient_feedback", "providers", "patients", "feedback_files"):
        pipeline.sql(f"update raw.{table} set _loaded_at = _loaded_at + interval '12 hours'")
    done = pipeline.monitor()
    assert done.returncode == 0, done.stdout[-2000:]
    assert len(webhook.requests) == 2 and len(sink.messages) == 2
    assert "freshness:kafka.appointment_events: PASS (recovered)" in slack_texts(webhook)[1]
    assert "Recovered:" in mail_bodies(sink)[1]


def test_monitors_do_not_depend_on_the_session_time_zone(pipeline, receivers):
    webhook, _ = receivers
    far_away = {**pipeline.env, "PGTZ": "Pacific/Kiritimati", "TZ": "America/Los_Angeles"}
    done = pipeline.monitor(env=far_away)
    assert done.returncode == 0, done.stdout[-2000:]
    assert len(webhook.requests) == 2, "a time zone change must not look like stale data"
    (hours,) = pipeline.sql(
        "select observed_value from monitoring.monitor_results"
        " where check_name = 'freshness:kafka.appointment_events' order by result_id desc limit 1"
    )[0]
    assert 0 <= hours < 2


def failure_tables(pipeline) -> set[str]:
    rows = pipeline.sql("select table_name from information_schema.tables where table_schema = 'monitoring_failures'")
    return {name for (name,) in rows}


def test_a_warning_data_test_keeps_a_sample_of_its_rows_for_the_report(pipeline):
    """A form whose appointment never arrived lands through the feedback loader: the warn test that reports
    such forms stores its failing rows (and only it does), and the report shows them. (The last test on this
    world: the form stays.)"""
    landing = pipeline.work / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    form = valid_form("FBK-99000001", appointment_id="APT-99000001")
    (landing / "no-such-visit.json").write_text(json.dumps(form))
    must([sys.executable, "-m", "loaders", "feedback"], pipeline.env)
    done = pipeline.monitor()
    errors = [line for line in done.stdout.splitlines() if "ERROR" in line and "upstream node failed" not in line]
    assert done.returncode == 0, "\n".join(errors) or done.stdout[-3000:]
    assert failure_tables(pipeline) == {"assert_feedback_forms_match_an_appointment"}
    kept = pipeline.sql(
        "select feedback_id, appointment_id from monitoring_failures.assert_feedback_forms_match_an_appointment"
    )
    assert kept == [("FBK-99000001", "APT-99000001")]
    assert "APT-99000001" in (pipeline.work / "monitoring.html").read_text()
