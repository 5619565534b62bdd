"""Alert channels against real loopback endpoints, and the per-channel alert state on real Postgres."""

from __future__ import annotations

import email
import socket
from datetime import timedelta

import pytest

from monitors import alerts, checks, store
from runtime import db
from runtime.settings import DBT_ROLE
from testkit.clock import AS_OF

pytestmark = pytest.mark.dates

THRESHOLDS = checks.Thresholds.load()


def result(name: str, value: float) -> checks.CheckResult:
    return checks.evaluate(name, value, THRESHOLDS)


def message(*transitions: store.Transition) -> alerts.AlertMessage:
    return alerts.AlertMessage(run_id="run-1", project="telemed-elt", transitions=list(transitions))


def test_evaluation_against_configured_bounds():
    assert result("no_show_rate", 0.05).status == "pass"
    assert result("no_show_rate", 0.09).status == "warn"
    spike = result("no_show_rate", 0.30)
    assert spike.status == "error"
    assert spike.error_threshold == "<= 0.12" and spike.warn_threshold == "<= 0.08"
    assert result("completion_rate", 0.65).status == "warn"
    assert checks.evaluate("completion_rate", None, THRESHOLDS).status == "error"


def test_slack_message_lists_failures_with_values_and_thresholds(webhook):
    failing = store.Transition("new", result("no_show_rate", 0.3), None)
    recovered = store.Transition("recovered", result("completion_rate", 0.8), "warn")
    alerts.SlackChannel(webhook.url).send(message(failing, recovered))
    assert len(webhook.requests) == 1
    body = webhook.requests[0]["body"]
    assert webhook.requests[0]["path"] == "/services/T000/B000/XXXX"
    assert "1 error" in body["text"] and "1 recovered" in body["text"]
    section = body["blocks"][1]["text"]["text"]
    assert "no_show_rate: ERROR (new), observed 0.3, thresholds warn <= 0.08; error <= 0.12" in section
    assert "completion_rate: PASS (recovered)" in section


def test_email_has_plain_text_and_html(smtp):
    channel = alerts.EmailChannel("127.0.0.1", smtp.port, "monitors@clinic.test", ["oncall@clinic.test"])
    channel.send(message(store.Transition("new", result("technical_issue_share", 0.4), None)))
    assert len(smtp.messages) == 1
    envelope = smtp.messages[0]
    assert envelope.rcpt_tos == ["oncall@clinic.test"]
    parsed = email.message_from_bytes(envelope.content)
    assert parsed["Subject"] == "[telemed-elt] monitors: 1 error"
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in parsed.walk()
        if not part.is_multipart()
    }
    assert "technical_issue_share: ERROR (new), observed 0.4" in parts["text/plain"]
    assert "<td>technical_issue_share</td>" in parts["text/html"]


@pytest.mark.parametrize("failure", ["http_500", "timeout", "refused"])
def test_failing_channel_is_retried_then_reported(webhook, failure):
    url = webhook.url
    if failure == "http_500":
        webhook.status = 500
    elif failure == "timeout":
        webhook.delay = 1.5
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"  # closed again: nobody listens
    channel = alerts.SlackChannel(url, timeout=0.5)
    error = alerts.deliver(channel, message(store.Transition("new", result("no_show_rate", 0.3), None)), 3, 0.01)
    assert error is not None
    if failure == "http_500":
        assert "HTTP 500" in error
        assert len(webhook.requests) == 3, "three attempts"
    elif failure == "timeout":
        assert "unreachable" in error


@pytest.fixture
def monitor_conn(settings):
    conn = db.connect(settings, role=DBT_ROLE)
    store.ensure_tables(conn)
    with conn, conn.cursor() as cur:
        cur.execute("truncate monitoring.alert_state")
    yield conn
    conn.close()


def test_alert_state_new_quiet_repeat_worse_recovered(monitor_conn):
    realert = timedelta(minutes=THRESHOLDS.realert_after_minutes)
    t0 = AS_OF

    run1 = [result("no_show_rate", 0.09), result("completion_rate", 0.8)]
    sent = store.transitions(monitor_conn, "slack", run1, t0, realert)
    assert [(t.kind, t.result.check_name) for t in sent] == [("new", "no_show_rate")]
    store.record_delivery(monitor_conn, "slack", run1, sent, t0)

    # Still failing at the same level inside the interval: nothing new.
    assert store.transitions(monitor_conn, "slack", run1, t0 + timedelta(minutes=5), realert) == []
    # Worse (warn -> error) is news at once.
    run3 = [result("no_show_rate", 0.3), result("completion_rate", 0.8)]
    sent = store.transitions(monitor_conn, "slack", run3, t0 + timedelta(minutes=10), realert)
    assert [(t.kind, t.previous_status) for t in sent] == [("worse", "warn")]
    store.record_delivery(monitor_conn, "slack", run3, sent, t0 + timedelta(minutes=10))
    # After the interval the still-failing check is repeated once.
    later = t0 + timedelta(minutes=10) + realert
    sent = store.transitions(monitor_conn, "slack", run3, later, realert)
    assert [t.kind for t in sent] == ["repeat"]
    store.record_delivery(monitor_conn, "slack", run3, sent, later)
    # Recovery is reported, then silence.
    run5 = [result("no_show_rate", 0.05), result("completion_rate", 0.8)]
    sent = store.transitions(monitor_conn, "slack", run5, later + timedelta(minutes=1), realert)
    assert [(t.kind, t.previous_status) for t in sent] == [("recovered", "error")]
    store.record_delivery(monitor_conn, "slack", run5, sent, later + timedelta(minutes=1))
    assert store.transitions(monitor_conn, "slack", run5, later + timedelta(minutes=2), realert) == []


def test_channels_keep_separate_state(monitor_conn):
    """A channel whose delivery failed (nothing recorded) is told again next run; the other is not."""
    realert = timedelta(hours=6)
    now = AS_OF
    run = [result("technical_issue_share", 0.5)]
    for channel in ("slack", "email"):
        assert [t.kind for t in store.transitions(monitor_conn, channel, run, now, realert)] == ["new"]
    store.record_delivery(monitor_conn, "email", run, store.transitions(monitor_conn, "email", run, now, realert), now)
    assert store.transitions(monitor_conn, "email", run, now + timedelta(minutes=1), realert) == []
    assert [t.kind for t in store.transitions(monitor_conn, "slack", run, now + timedelta(minutes=1), realert)] == [
        "new"
    ]


def test_freshness_and_window_have_one_home_in_dbt_project(tmp_path):
    """`make freshness` and `make monitor` read the same dbt vars; thresholds.yml does not repeat them, and
    an old thresholds file that still does is refused with where they went."""
    import yaml

    from runtime.settings import PROJECT_ROOT

    project_vars = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())["vars"]
    assert {"freshness_warn_after_hours", "freshness_error_after_hours", "monitor_window_days"} <= set(project_vars)
    raw = yaml.safe_load(checks.THRESHOLDS_FILE.read_text())
    assert "freshness" not in raw and "window_days" not in raw
    raw["freshness"] = {"warn_after_hours": 2, "error_after_hours": 6}
    (tmp_path / "old.yml").write_text(yaml.safe_dump(raw))
    with pytest.raises(checks.ConfigError, match=r"freshness moved to dbt_project\.yml's vars"):
        checks.Thresholds.load(tmp_path / "old.yml")


def test_thresholds_file_rejects_unknown_and_missing_checks(tmp_path):
    import yaml

    raw = yaml.safe_load(checks.THRESHOLDS_FILE.read_text())
    raw["checks"]["no_such_check"] = {"warn": {"max": 1}}
    (tmp_path / "extra.yml").write_text(yaml.safe_dump(raw))
    with pytest.raises(checks.ConfigError, match="unknown check 'no_such_check'"):
        checks.Thresholds.load(tmp_path / "extra.yml")
    del raw["checks"]["no_such_check"], raw["checks"]["no_show_rate"]
    (tmp_path / "missing.yml").write_text(yaml.safe_dump(raw))
    with pytest.raises(checks.ConfigError, match="no_show_rate"):
        checks.Thresholds.load(tmp_path / "missing.yml")
