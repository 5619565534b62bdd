"""Monitor scenarios on generated data, end to end: generator -> Kafka -> loaders -> dbt -> monitors,
with alerts delivered to a real SMTP server and a real HTTP webhook on loopback.

The tests of this module run in order and share one pipeline database: a clean run alerts nothing,
stale data alerts, a repeat inside the re-alert interval stays quiet, fresh data recovers. A second
database holds a world with injected anomalies (a no-show spike, a day with too few appointments).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller

from loaders.tests.loader_support import valid_form
from monitors.checks import THRESHOLDS_FILE
from monitors.tests.conftest import MailSink, WebhookReceiver, free_port
from runtime import db
from runtime.settings import PROJECT_ROOT, Settings
from testkit.clock import PERIOD_END
from testkit.dbt import dbt_ok_as_child

pytestmark = pytest.mark.slow

# The worlds end on the pinned period end, the day before the as-of every test process is given.
LAST_DAY = PERIOD_END
SCALE = 6000


def run(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    return done


def must(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = run(args, env)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    work: Path

    def monitor(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run(
            [
                sys.executable,
                "-m",
                "monitors",
                "--dbt-target",
                str(self.work / "target"),
                "--thresholds",
                str(self.work / "thresholds.yml"),
                "--report",
                str(self.work / "monitoring.html"),
                *extra,
            ],
            env or self.env,
        )

    def sql(self, statement: str) -> list[tuple]:
        conn = db.connect(self.settings)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


def build_pipeline(base: Settings, work: Path, receivers: tuple, generate_args: list[str]) -> Pipeline:
    webhook, smtp = receivers
    name = f"telemed_pytest_mon_{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(base, pg_database=name)
    db.bootstrap(settings)
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **settings.libpq_env(),
        **settings.role_password_env(),  # PGHOST set: the children see a configured server
        "PGDATABASE": name,
        "TELEMED_TOPIC": f"test.monitors.{uuid.uuid4().hex[:8]}",
        "TELEMED_LANDING_DIR": str(work / "landing"),
        "SLACK_WEBHOOK_URL": webhook.url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "ALERT_EMAIL_FROM": "monitors@clinic.test",
        "ALERT_EMAIL_TO": "oncall@clinic.test",
    }
    if not base.pg_embedded:
        env.pop("TELEMED_PG_PORT", None)
    # The default bounds, widened where a small test world is noisier than a real clinic's week.
    thresholds = yaml.safe_load(THRESHOLDS_FILE.read_text())
    thresholds["checks"]["avg_overall_satisfaction"] = {"warn": {"min": 2.9}, "error": {"min": 2.5}}
    thresholds["checks"]["completion_rate"] = {"warn": {"min": 0.65}, "error": {"min": 0.55}}
    (work / "thresholds.yml").write_text(yaml.safe_dump(thresholds))
    py = sys.executable
    must(
        [py, "-m", "loaders", "generate", "--scale", str(SCALE), "--end-date", LAST_DAY.isoformat(), "--no-dirty",
         "--out", str(work / "generated"), *generate_args],
        env,
    )  # fmt: skip
    must([py, "-m", "loaders", "produce", "--from-jsonl", str(work / "generated" / "events")], env)
    # A group of its own, like its topic: worlds built at once on one broker must not share a group.
    must([py, "-m", "loaders", "load", "--group", f"{env['TELEMED_TOPIC']}.loader"], env)
    # Seeds, snapshots and models only: every monitor run below runs the data tests itself, so the build's
    # own run of them would be the same work twice. dbt runs in this process, with the environment `python
    # -m loaders env` gives a child (testkit/dbt.py).
    build = ["build", "--exclude-resource-type", "test", "unit_test", "--target-path", str(work / "target")]
    dbt_ok_as_child(env, *build, tail=3000)
    return Pipeline(settings, env, work)


@pytest.fixture(scope="module")
def receivers():
    webhook = WebhookReceiver()
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    yield webhook, sink
    controller.stop()
    webhook.close()


@pytest.fixture(scope="module")
def pipeline(base_settings, receivers, tmp_path_factory):
    built = build_pipeline(base_settings, tmp_path_factory.mktemp("monitors-clean"), receivers, [])
    yield built
    db.drop_database(base_settings, built.settings.pg_database)


def slack_texts(webhook: WebhookReceiver) -> list[str]:
    return [r["body"]["blocks"][1]["text"]["text"] for r in webhook.requests]


def mail_bodies(sink: MailSink) -> list[str]:
    out = []
    for envelope in sink.messages:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        out.append(next(p for p in parsed.walk() if p.get_content_type() == "text/plain").get_content())
    return out


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


@pytest.mark.dates
def test_no_show_spike_and_a_thin_day_raise_business_and_volume_alerts(base_settings, receivers, tmp_path):
    webhook, sink = receivers
    before = len(webhook.requests)
    # The window is the last 7 days of data; pick its most recent weekdays.
    weekdays = [LAST_DAY - timedelta(days=i) for i in range(1, 7) if (LAST_DAY - timedelta(days=i)).weekday() < 5]
    spike_days, thin_day = weekdays[:2], weekdays[2]
    args = [arg for day in spike_days for arg in ("--anomaly", f"no_show_spike:{day}:9")]
    args += ["--anomaly", f"low_volume:{thin_day}:0.08"]
    odd = build_pipeline(base_settings, tmp_path / "anomalies", receivers, args)
    try:
        done = odd.monitor()
        assert done.returncode == 1
        text = slack_texts(webhook)[before]
        assert "no_show_rate: ERROR (new)" in text
        assert "min_appointments_per_day: ERROR (new)" in text
        assert "daily_volume_vs_same_weekday: ERROR (new)" in text
        assert "no_show_rate: ERROR (new)" in mail_bodies(sink)[-1]
        # Nothing else: the world is recent as of its as-of date and every other check passes, whatever
        # day the test runs (a lower completion rate is what a no-show spike means).
        alerted = set(re.findall(r"(\S+): (?:ERROR|WARN) \(new\)", text))
        assert alerted == {
            "no_show_rate",
            "completion_rate",
            "min_appointments_per_day",
            "daily_volume_vs_same_weekday",
        }
    finally:
        db.drop_database(base_settings, odd.settings.pg_database)
