"""The real-time ingestion checks on the real broker and Postgres: consumer lag from the broker's end
offsets and raw.kafka_offsets, seconds since each loader's last successful load from raw.load_runs, and
their alerts through the real channels (HTTP webhook and SMTP on loopback)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import subprocess
import sys
import uuid

import pytest
import yaml
from confluent_kafka import Producer

from loaders.tests.loader_support import loader_env
from monitors import checks, ingestion
from runtime import db
from runtime.kafka import client_config
from runtime.settings import DBT_ROLE, PROJECT_ROOT
from testkit.fixtures import free_port

PER_PARTITION = 100


def thresholds(tmp_path, **bounds: dict) -> checks.Thresholds:
    """The configured thresholds with some checks' bounds replaced (written out, loaded as the monitors do)."""
    raw = yaml.safe_load(checks.THRESHOLDS_FILE.read_text())
    raw["checks"].update(bounds)
    path = tmp_path / "thresholds.yml"
    path.write_text(yaml.safe_dump(raw))
    return checks.Thresholds.load(path)


@pytest.fixture
def clean_raw(pg):
    with pg, pg.cursor() as cur:
        cur.execute("truncate raw.kafka_offsets, raw.load_runs")
    return pg


@pytest.fixture
def filled_topic(base_settings, kafka_topic):
    """PER_PARTITION messages in each of the topic's three partitions, one record batch each, so that the
    embedded broker's end offset (the first offset of the last batch) is at most one below the true end."""
    producer = Producer(client_config(base_settings, **{"linger.ms": 0}))
    for _ in range(PER_PARTITION):
        for partition in range(3):
            producer.produce(kafka_topic, value=b"{}", partition=partition)
        producer.flush(10)
    assert len(producer) == 0
    return kafka_topic


def store_offsets(pg, group: str, topic: str, next_offset: int, updated: str = "now()") -> None:
    with pg, pg.cursor() as cur:
        for partition in range(3):
            cur.execute(
                "insert into raw.kafka_offsets (consumer_group, topic, partition, next_offset, updated_at)"
                f" values (%s, %s, %s, %s, {updated})"
                " on conflict (consumer_group, topic, partition) do update set next_offset = excluded.next_offset",
                (group, topic, partition, next_offset),
            )


def dbt_conn(settings):
    return db.connect(settings, role=DBT_ROLE)


def test_consumer_lag_is_what_the_broker_holds_beyond_the_stored_offsets(settings, clean_raw, filled_topic, tmp_path):
    bounds = thresholds(tmp_path, consumer_lag_messages={"warn": {"max": 10}, "error": {"max": 100}})
    conn = dbt_conn(settings)
    try:
        # Nothing loaded yet: every message is lag (the embedded broker may report each end one low).
        store_offsets(clean_raw, "loader", filled_topic, 0)
        (behind,) = ingestion.lag_results(conn, settings, bounds)
        assert behind.check_name == f"consumer_lag_messages:loader/{filled_topic}"
        assert behind.check_type == "ingestion"
        assert 3 * (PER_PARTITION - 1) <= behind.observed_value <= 3 * PER_PARTITION
        assert behind.status == "error" and "outside the error bound (<= 100)" in behind.message
        assert set(behind.details["partitions"]) == {"0", "1", "2"}

        # Loaded a few short of the end: a warning at most; everything loaded: 0, pass.
        store_offsets(clean_raw, "loader", filled_topic, PER_PARTITION - 4)
        (close,) = ingestion.lag_results(conn, settings, bounds)
        assert close.observed_value <= 12 and close.status in ("pass", "warn")
        store_offsets(clean_raw, "loader", filled_topic, PER_PARTITION)
        (done,) = ingestion.lag_results(conn, settings, bounds)
        assert (done.status, done.observed_value) == ("pass", 0)

        # A group whose topic is gone from the broker has nothing left to load; each pair is its own check.
        never_there = f"test.events.gone-{uuid.uuid4().hex[:10]}"
        store_offsets(clean_raw, "old-loader", never_there, 7)
        results = {r.check_name: r for r in ingestion.lag_results(conn, settings, bounds)}
        gone = results[f"consumer_lag_messages:old-loader/{never_there}"]
        assert (gone.status, gone.observed_value) == ("pass", 0)
        assert "does not exist on the broker" in gone.message
        assert results[f"consumer_lag_messages:loader/{filled_topic}"].status == "pass"
        # Reading the lag never creates the topic (a broker may create topics on a metadata request).
        again = {r.check_name: r for r in ingestion.lag_results(conn, settings, bounds)}
        assert "does not exist on the broker" in again[f"consumer_lag_messages:old-loader/{never_there}"].message
    finally:
        conn.close()


def test_an_unreachable_broker_makes_the_lag_check_fail(settings, clean_raw, tmp_path):
    store_offsets(clean_raw, "loader", "telemed.appointment-events", 5)
    nowhere = dataclasses.replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    conn = dbt_conn(settings)
    try:
        (result,) = ingestion.lag_results(conn, nowhere, checks.Thresholds.load(), timeout=1)
    finally:
        conn.close()
    assert result.status == "error" and result.observed_value is None
    assert f"cannot read end offsets from the broker at {nowhere.kafka_bootstrap_servers}" in result.message


def test_no_stored_offsets_is_an_error_not_a_silent_pass(settings, clean_raw):
    conn = dbt_conn(settings)
    try:
        (result,) = ingestion.lag_results(conn, settings, checks.Thresholds.load())
    finally:
        conn.close()
    assert result.status == "error" and "has the consumer run?" in result.message


@pytest.mark.dates
def test_seconds_since_each_loaders_last_successful_load(settings, clean_raw):
    # Load times are the warehouse's (stamped by Postgres), so the runs are placed relative to its now().
    with clean_raw, clean_raw.cursor() as cur:
        cur.execute(
            """
            insert into raw.load_runs (loader, started_at, finished_at, status) values
                ('feedback', now() - interval '3 hours', now() - interval '3 hours' + interval '5 seconds',
                 'succeeded'),
                ('feedback', now() - interval '10 minutes', now() - interval '9 minutes', 'failed'),
                ('reference', now() - interval '8 hours', now() - interval '7 hours', 'succeeded'),
                ('consume', now() - interval '2 days', now() - interval '2 days', 'succeeded'),
                ('consume', now() - interval '1 day', null, 'running')
            """
        )
    # The running consumer committed a batch a minute ago: that is its last successful load.
    store_offsets(clean_raw, "loader", "telemed.appointment-events", 42, updated="now() - interval '1 minute'")
    conn = dbt_conn(settings)
    try:
        results = {r.check_name: r for r in ingestion.last_load_results(conn, checks.Thresholds.load())}
    finally:
        conn.close()
    assert set(results) == {
        "seconds_since_last_load:consume",
        "seconds_since_last_load:feedback",
        "seconds_since_last_load:reference",
    }
    consume, feedback, reference = (
        results[f"seconds_since_last_load:{name}"] for name in ("consume", "feedback", "reference")
    )
    assert 60 <= consume.observed_value < 600 and consume.status == "pass"
    # A failed run is not a load: the last success is three hours back (warn above 2 h, error above 6 h).
    assert 3 * 3600 - 10 <= feedback.observed_value < 3 * 3600 + 600 and feedback.status == "warn"
    assert reference.status == "error" and reference.error_threshold == "<= 21600"
    assert consume.check_type == feedback.check_type == "ingestion"


def test_ingestion_checks_alert_on_both_channels(settings, clean_raw, filled_topic, webhook, smtp, tmp_path):
    """`python -m monitors` evaluates the ingestion checks with the others and alerts them like any check."""
    store_offsets(clean_raw, "loader", filled_topic, 0)
    with clean_raw, clean_raw.cursor() as cur:
        cur.execute(
            "insert into raw.load_runs (loader, started_at, finished_at, status)"
            " values ('feedback', now() - interval '7 hours', now() - interval '7 hours', 'succeeded')"
        )
    thresholds(tmp_path, consumer_lag_messages={"warn": {"max": 10}, "error": {"max": 100}})
    env = loader_env(
        settings,
        SLACK_WEBHOOK_URL=webhook.url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        ALERT_EMAIL_FROM="monitors@clinic.test",
        ALERT_EMAIL_TO="oncall@clinic.test",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitors",
            "--skip-dbt",  # no dbt here: the dbt-based checks report their missing artifacts as errors
            "--dbt-target",
            str(tmp_path / "target"),
            "--thresholds",
            str(tmp_path / "thresholds.yml"),
            "--report",
            str(tmp_path / "monitoring.html"),
        ],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(webhook.requests) == 1 and len(smtp.messages) == 1
    text = webhook.requests[0]["body"]["blocks"][1]["text"]["text"]
    lag_line = rf"consumer_lag_messages:loader/{re.escape(filled_topic)}: ERROR \(new\), observed (29[7-9]|300),"
    assert re.search(lag_line, text), text
    assert "thresholds warn <= 10; error <= 100" in text
    assert "seconds_since_last_load:feedback: ERROR (new), observed 252" in text
    parsed = email.message_from_bytes(smtp.messages[0].content, policy=email.policy.default)
    body = next(p for p in parsed.walk() if p.get_content_type() == "text/plain").get_content()
    assert f"consumer_lag_messages:loader/{filled_topic}: ERROR (new)" in body
    assert "seconds_since_last_load:feedback: ERROR (new)" in body
