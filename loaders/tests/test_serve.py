"""The ingest service (`python -m loaders serve`) as a real process tree on the real broker and Postgres,
its metrics read by real HTTP scrapes of its endpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loaders.tests.loader_support import (
    loader_env,
    query,
    run_loader,
    scalar,
    start_loader,
    stop,
    valid_events,
    valid_form,
    wait_for,
    write_jsonl,
)
from testkit.fixtures import free_port

# It starts a process tree and waits for a consumer group to form.
pytestmark = pytest.mark.slow

EVENTS = "select count(*) from raw.appointment_events where kafka_topic = %s"


class Service:
    def __init__(self, env: dict[str, str], log: Path, topic: str, landing: Path, *extra: str):
        self.port = free_port()
        self.topic, self.group, self.log = topic, f"{topic}.serve", log
        args = ["serve", "--topic", topic, "--group", self.group, "--landing", str(landing)]
        args += ["--metrics-port", str(self.port), "--poll-seconds", "0.5", *extra]
        self.proc = start_loader(env, log, *args)

    def scrape(self) -> dict[tuple[str, tuple], float]:
        """Every sample of a real scrape of /metrics: (name, sorted labels) -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, tuple(sorted(labels.items()))))

    def lags(self) -> dict[str, float]:
        return {
            dict(labels)["partition"]: value
            for (name, labels), value in self.scrape().items()
            if name == "telemed_consumer_lag_messages" and dict(labels)["topic"] == self.topic
        }

    def wait_in_log(self, text: str, timeout: float = 60) -> None:
        wait_for(lambda: text in self.log.read_text(), timeout, f"{text!r} in the service's log")

    def child_pid(self, name: str) -> int:
        return int(re.findall(rf"started {name} \(pid (\d+)\)", self.log.read_text())[-1])


def produce(env: dict[str, str], path: Path, topic: str) -> None:
    done = run_loader(env, "produce", "--from-jsonl", str(path), "--topic", topic)
    assert done.returncode == 0, done.stderr


def test_input_arriving_while_it_runs_lands_without_a_restart_and_the_lag_falls_to_0(settings, kafka_topic, tmp_path):
    env = loader_env(settings)
    landing = tmp_path / "landing"
    lines = valid_events(900)
    service = Service(env, tmp_path / "serve.log", kafka_topic, landing, "--batch-ms", "200")
    try:
        service.wait_in_log("assigned partition")
        produce(env, write_jsonl(tmp_path / "first.jsonl", lines[:300]), kafka_topic)
        wait_for(lambda: scalar(settings, EVENTS, (kafka_topic,)) == 300, 30, "the first events in raw")
        produce(env, write_jsonl(tmp_path / "second.jsonl", lines[300:]), kafka_topic)
        (landing / "2026" / "10" / "02").mkdir(parents=True)
        form = valid_form("FBK-88000001")
        (landing / "2026" / "10" / "02" / "form.json").write_text(json.dumps(form))
        wait_for(lambda: scalar(settings, EVENTS, (kafka_topic,)) == 900, 30, "the later events in raw")
        wait_for(
            lambda: scalar(settings, "select count(*) from raw.patient_feedback where feedback_id = 'FBK-88000001'"),
            30,
            "the form dropped into the landing folder in raw",
        )

        # The endpoint: lag read per partition (the topic's three), falling to 0 once everything is in raw.
        wait_for(lambda: service.lags() == {"0": 0, "1": 0, "2": 0}, 30, "a lag of 0 on every partition")
        wait_for(lambda: service.value("telemed_rows_loaded_total", loader="feedback") == 1, 30, "the form counted")
        metrics = service.scrape()
        consume = (("loader", "consume"),)
        assert metrics[("telemed_rows_loaded_total", consume)] == 900
        assert metrics[("telemed_rows_rejected_total", consume)] == 0
        assert metrics[("telemed_messages_received_total", consume)] == 900
        assert metrics[("telemed_batch_commit_seconds_count", consume)] >= 2, "two waves, two batches at least"
        assert metrics[("telemed_seconds_since_last_commit", consume)] >= 0
        assert metrics[("telemed_retries_total", consume)] == 0
        assert metrics[("telemed_consumer_lag_probe_success", ())] == 1
        for child in ("consume", "feedback"):
            assert metrics[("telemed_child_up", (("child", child),))] == 1
            assert metrics[("telemed_child_restarts_total", (("child", child),))] == 0
        stored = scalar(
            settings,
            "select sum(next_offset) from raw.kafka_offsets where consumer_group = %s and topic = %s",
            (service.group, kafka_topic),
        )
        assert stored == 900
    finally:
        code = stop(service.proc)
    assert code == 0, service.log.read_text()[-3000:]
    # One consumer run from start to stop: nothing was restarted to see the later input.
    runs = query(settings, "select status from raw.load_runs where details->>'topic' = %s", (kafka_topic,))
    assert runs == [("succeeded",)]


def test_sigterm_finishes_the_batch_in_hand(settings, kafka_topic, tmp_path):
    env = loader_env(settings)
    # Batches that never fill on their own: whatever the consumer reads stays in hand until it is stopped.
    service = Service(
        env, tmp_path / "serve.log", kafka_topic, tmp_path / "landing", "--batch-ms", "600000", "--batch-size", "100000"
    )
    try:
        service.wait_in_log("assigned partition")
        produce(env, write_jsonl(tmp_path / "events.jsonl", valid_events(500)), kafka_topic)
        wait_for(
            lambda: service.value("telemed_messages_received_total", loader="consume") == 500,
            30,
            "the consumer to hold the 500 events",
        )
        assert scalar(settings, EVENTS, (kafka_topic,)) == 0, "nothing committed before the stop"
        # No loader has committed a batch yet: no last commit and no seconds since (absent, not 1970).
        metrics = service.scrape()
        for loader in ("consume", "feedback"):
            assert ("telemed_last_commit_timestamp_seconds", (("loader", loader),)) not in metrics
            assert ("telemed_seconds_since_last_commit", (("loader", loader),)) not in metrics
            assert metrics[("telemed_rows_loaded_total", (("loader", loader),))] == 0
        assert ("telemed_messages_received_total", (("loader", "feedback"),)) not in metrics
    finally:
        service.proc.send_signal(signal.SIGTERM)
        code = stop(service.proc)
    log = service.log.read_text()
    assert code == 0, log[-3000:]
    assert "finishing the batch in hand" in log
    assert scalar(settings, EVENTS, (kafka_topic,)) == 500
    assert (
        scalar(
            settings,
            "select sum(next_offset) from raw.kafka_offsets where consumer_group = %s and topic = %s",
            (service.group, kafka_topic),
        )
        == 500
    )
    assert query(
        settings, "select status, rows_loaded from raw.load_runs where details->>'topic' = %s", (kafka_topic,)
    ) == [("succeeded", 500)]


@pytest.mark.faults
def test_a_killed_child_is_restarted_and_loading_goes_on(settings, kafka_topic, tmp_path):
    env = loader_env(settings)
    lines = valid_events(400)
    service = Service(env, tmp_path / "serve.log", kafka_topic, tmp_path / "landing", "--batch-ms", "200")
    try:
        service.wait_in_log("assigned partition")
        produce(env, write_jsonl(tmp_path / "first.jsonl", lines[:200]), kafka_topic)
        wait_for(lambda: scalar(settings, EVENTS, (kafka_topic,)) == 200, 30, "the first events in raw")
        killed = service.child_pid("consume")
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: service.child_pid("consume") != killed, 30, "the consumer started again")
        produce(env, write_jsonl(tmp_path / "second.jsonl", lines[200:]), kafka_topic)
        wait_for(lambda: scalar(settings, EVENTS, (kafka_topic,)) == 400, 60, "the later events in raw")
        wait_for(lambda: service.lags() == {"0": 0, "1": 0, "2": 0}, 30, "a lag of 0 on every partition")
        metrics = service.scrape()
        assert metrics[("telemed_child_restarts_total", (("child", "consume"),))] == 1
        assert metrics[("telemed_child_restarts_total", (("child", "feedback"),))] == 0
        # The counters of the killed child are kept: rows committed by both lives of the consumer.
        assert metrics[("telemed_rows_loaded_total", (("loader", "consume"),))] == 400
    finally:
        code = stop(service.proc)
    assert code == 0, service.log.read_text()[-3000:]
    runs = "select status from raw.load_runs where details->>'topic' = %s order by run_id"
    assert query(settings, runs, (kafka_topic,)) == [("interrupted",), ("succeeded",)]


def test_children_that_keep_dying_stop_the_service_with_a_clear_error(settings, kafka_topic, tmp_path):
    # Postgres where nobody listens: each child retries, gives up after a second and exits 1.
    env = {**loader_env(settings), "PGHOST": "127.0.0.1", "PGPORT": str(free_port())}
    service = Service(
        env,
        tmp_path / "serve.log",
        kafka_topic,
        tmp_path / "landing",
        "--max-retry-seconds",
        "1",
        "--max-restarts",
        "2",
    )
    try:
        retries = wait_for(
            lambda: service.value("telemed_retries_total", loader="consume"), 30, "a retry counted by the endpoint"
        )
        assert retries >= 1
        assert service.value("telemed_consumer_lag_probe_success") == 0, "no lag without Postgres, and it says so"
        code = service.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the service did not give up:\n{service.log.read_text()[-3000:]}") from None
    finally:
        stop(service.proc)
    log = service.log.read_text()
    assert code == 1, log[-3000:]
    gave_up = r"serve: error: (consume|feedback) exited with code 1 and was restarted 2 times in 600s"
    assert re.search(gave_up, log), log[-3000:]
    assert "cannot reach Postgres" in log


def test_a_busy_metrics_port_is_a_clear_error(settings, tmp_path):
    env = loader_env(settings)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_loader(env, "serve", "--metrics-port", str(port), "--landing", str(tmp_path))
    assert done.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "TELEMED_METRICS_PORT" in done.stderr
