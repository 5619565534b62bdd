"""The consumer through a Postgres restart and a broker restart.

These stop and start servers, so they run on a Postgres and a broker of their own (own state folder,
free ports), never the session's shared ones.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loaders.tests.loader_support import (
    loader_env,
    new_topic,
    run_loader,
    scalar,
    start_loader,
    stop,
    valid_events,
    wait_for,
    write_jsonl,
)
from testkit.fixtures import own_services as isolated_services

COUNT = "select count(*) from raw.appointment_events where kafka_topic = %s"


@pytest.fixture(scope="module")
def own_services():
    with isolated_services("test-loaders", "telemed_outages") as servers:
        yield servers


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_postgres_restart_mid_run_loses_and_duplicates_nothing(own_services, tmp_path):
    settings, postgres, _ = own_services
    topic, env = new_topic(), loader_env(own_services[0])
    lines = valid_events(40_000)
    assert (
        run_loader(
            env, "produce", "--from-jsonl", str(write_jsonl(tmp_path / "a.jsonl", lines[:30_000])), "--topic", topic
        ).returncode
        == 0
    )
    log = tmp_path / "consume.log"
    proc = start_loader(env, log, "consume", "--topic", topic, "--batch-size", "1000", "--batch-ms", "100")
    try:
        wait_for(lambda: scalar(settings, COUNT, (topic,)) > 0, 60, "the first batches")
        postgres.stop(mode="immediate")  # a crash, not a polite shutdown
        time.sleep(3)
        assert proc.poll() is None, "the consumer must survive a Postgres outage:\n" + log.read_text()[-3000:]
        postgres.start()
        produced = run_loader(
            env, "produce", "--from-jsonl", str(write_jsonl(tmp_path / "b.jsonl", lines[30_000:])), "--topic", topic
        )
        assert produced.returncode == 0, produced.stderr
        wait_for(lambda: scalar(settings, COUNT, (topic,)) == 40_000, 90, "every event after the restart")
    finally:
        code = stop(proc)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "retry" in output, "the outage must be logged with its retries"
    assert (
        scalar(settings, "select count(distinct event_id) from raw.appointment_events where kafka_topic = %s", (topic,))
        == 40_000
    )
    assert scalar(settings, "select sum(next_offset) from raw.kafka_offsets where topic = %s", (topic,)) == 40_000


def test_broker_restart_resumes_without_spinning_and_reads_the_new_log(own_services, tmp_path):
    settings, _, broker = own_services
    topic, env = new_topic(), loader_env(own_services[0])
    first, later = valid_events(5_000, "before"), valid_events(3_000, "after")
    assert (
        run_loader(
            env, "produce", "--from-jsonl", str(write_jsonl(tmp_path / "a.jsonl", first)), "--topic", topic
        ).returncode
        == 0
    )
    log = tmp_path / "consume.log"
    proc = start_loader(env, log, "consume", "--topic", topic, "--batch-ms", "200")
    try:
        wait_for(lambda: scalar(settings, COUNT, (topic,)) == 5_000, 60, "the events before the restart")
        broker.stop()
        cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(5)
        assert proc.poll() is None, "the consumer must survive the broker going away:\n" + log.read_text()[-3000:]
        busy = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - wall_before)
        assert busy < 0.25, f"the consumer spins while the broker is down ({busy:.0%} of a core)"
        broker.start()
        # The in-memory broker lost the topic: producing creates it again, with offsets from 0.
        produced = run_loader(
            env, "produce", "--from-jsonl", str(write_jsonl(tmp_path / "b.jsonl", later)), "--topic", topic
        )
        assert produced.returncode == 0, produced.stderr
        wait_for(lambda: scalar(settings, COUNT, (topic,)) == 8_000, 90, "the events produced after the restart")
    finally:
        code = stop(proc)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "was recreated" in output, "the reset of the stored offsets must be logged"
    assert (
        scalar(
            settings,
            "select count(*) from raw.appointment_events where kafka_topic = %s and event_id like 'after-%%'",
            (topic,),
        )
        == 3_000
    )
