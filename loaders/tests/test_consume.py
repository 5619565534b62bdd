"""The consumer on the real broker and Postgres, as a subprocess: edge cases, restarts after kill -9,
and two consumers sharing a group."""

from __future__ import annotations

import json
import signal
import time

from confluent_kafka import Consumer, TopicPartition

from loaders.tests.loader_support import (
    FIXTURES,
    loader_env,
    new_topic,
    query,
    run_loader,
    scalar,
    start_loader,
    stop,
    valid_events,
    wait_for,
    write_jsonl,
)
from runtime.kafka import client_config

EDGE_CASES = FIXTURES / "events_edge_cases.jsonl"


def produce_file(env, path, topic):
    done = run_loader(env, "produce", "--from-jsonl", str(path), "--topic", topic)
    assert done.returncode == 0, done.stderr
    return done


def test_edge_cases_land_once_with_reasons(settings):
    expected = json.loads((FIXTURES / "events_edge_cases.expected.json").read_text())
    topic, group = new_topic(), "edge-cases"
    env = loader_env(settings)
    produced = produce_file(env, EDGE_CASES, topic)
    assert f"{expected['messages']} delivered, 0 failed" in produced.stdout

    first = run_loader(env, "consume", "--drain", "--idle-seconds", "2", "--topic", topic, "--group", group)
    assert first.returncode == 0, first.stderr
    assert (
        f"read {expected['messages']}, loaded {expected['valid_distinct']}, "
        f"rejected {sum(expected['rejected'].values())}, duplicates skipped {expected['duplicates']}" in first.stdout
    )
    rows = query(
        settings, "select event_id, payload, kafka_topic from raw.appointment_events where kafka_topic = %s", (topic,)
    )
    assert len(rows) == expected["valid_distinct"]
    by_id = {row[0]: row[1] for row in rows}
    # Text with tabs, newlines, backslashes and non-ASCII survives the COPY path unchanged.
    assert by_id["e-valid-4"]["reason"] == "tab\there, newline\nhere, backslash \\ and caf\u00e9 \u2603"
    assert by_id["e-valid-3"]["new_field"] == "schema drift is kept"
    reasons = dict(
        query(
            settings,
            "select reason, count(*) from raw.appointment_events_rejected where kafka_topic = %s group by 1",
            (topic,),
        )
    )
    assert reasons == expected["rejected"]
    # The rejected rows keep the raw message: text when it is UTF-8, the exact bytes otherwise.
    raw = query(
        settings,
        "select raw_text, raw_bytes from raw.appointment_events_rejected"
        " where kafka_topic = %s and raw_bytes is not null",
        (topic,),
    )
    assert [bytes(row[1]) for row in raw] == [b"\xff\xfe not utf-8"]
    assert (
        scalar(
            settings,
            "select count(*) from raw.appointment_events_rejected where kafka_topic = %s and raw_text like %s",
            (topic, '%"e-bad-trunc"%'),
        )
        == 1
    )

    offsets = dict(
        query(
            settings,
            "select partition, next_offset from raw.kafka_offsets where consumer_group = %s and topic = %s",
            (group, topic),
        )
    )
    assert sum(offsets.values()) == expected["messages"]
    # Kafka's copy of the offsets (for lag tools) matches Postgres after the run.
    consumer = Consumer(client_config(settings, **{"group.id": group}))
    committed = consumer.committed([TopicPartition(topic, p) for p in offsets], timeout=10)
    consumer.close()
    assert {tp.partition: tp.offset for tp in committed} == offsets

    run = query(
        settings,
        "select rows_read, rows_loaded, rows_rejected, duplicates_skipped, status, details->'next_offsets'"
        " from raw.load_runs where loader = 'consume' and details->>'topic' = %s",
        (topic,),
    )
    assert run == [
        (
            expected["messages"],
            expected["valid_distinct"],
            sum(expected["rejected"].values()),
            expected["duplicates"],
            "succeeded",
            {str(p): o for p, o in offsets.items()},
        )
    ]

    again = run_loader(env, "consume", "--drain", "--idle-seconds", "1", "--topic", topic, "--group", group)
    assert again.returncode == 0, again.stderr
    assert "read 0, loaded 0" in again.stdout, "offsets stored in Postgres must be honoured"

    # Another group reads everything again: nothing is duplicated, every valid event counts as a duplicate.
    other = run_loader(env, "consume", "--drain", "--idle-seconds", "1", "--topic", topic, "--group", "another")
    assert other.returncode == 0, other.stderr
    assert f"loaded 0, rejected 0, duplicates skipped {expected['messages']}" in other.stdout
    assert scalar(settings, "select count(*) from raw.appointment_events where kafka_topic = %s", (topic,)) == 7


def test_kill_9_mid_batch_then_restart_loads_every_event_once(settings, tmp_path):
    # Big enough that a restarted consumer cannot drain it in the moment between its first batch and the
    # kill on a fast, quiet machine (60k sometimes could).
    topic, total = new_topic(), 150_000
    env = loader_env(settings)
    produce_file(env, write_jsonl(tmp_path / "events.jsonl", valid_events(total)), topic)
    args = ("consume", "--topic", topic, "--group", "kill9", "--batch-size", "2000", "--batch-ms", "200")

    count = "select count(*) from raw.appointment_events where kafka_topic = %s"
    for attempt in range(2):
        proc = start_loader(env, tmp_path / f"consume-{attempt}.log", *args)
        try:
            before = scalar(settings, count, (topic,))
            wait_for(lambda b=before: scalar(settings, count, (topic,)) > b, 60, "the consumer to load a batch")
            time.sleep(0.15)  # land inside a later batch
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    loaded_before_restart = scalar(settings, count, (topic,))
    assert loaded_before_restart < total, "the consumer finished before it could be killed; make the topic bigger"

    done = run_loader(env, *args, "--drain", "--idle-seconds", "2")
    assert done.returncode == 0, done.stderr
    assert scalar(settings, count, (topic,)) == total
    assert (
        scalar(settings, "select count(distinct event_id) from raw.appointment_events where kafka_topic = %s", (topic,))
        == total
    )
    stored = scalar(
        settings,
        "select sum(next_offset) from raw.kafka_offsets where consumer_group = 'kill9' and topic = %s",
        (topic,),
    )
    assert stored == total
    # The killed runs are marked interrupted by the next run, with the counts of the batches they committed.
    killed = query(
        settings,
        "select status, rows_loaded from raw.load_runs where details->>'topic' = %s order by run_id",
        (topic,),
    )
    assert [row[0] for row in killed] == ["interrupted", "interrupted", "succeeded"]
    assert sum(row[1] for row in killed) == total


def test_two_consumers_in_one_group_share_the_partitions(settings, tmp_path):
    topic, total = new_topic(), 30_000
    env = loader_env(settings)
    lines = valid_events(total)
    # Create the topic first so both consumers get partitions before any event exists.
    produce_file(env, write_jsonl(tmp_path / "first.jsonl", lines[:3]), topic)
    args = ("consume", "--topic", topic, "--group", "pair", "--batch-size", "1000", "--batch-ms", "200")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_loader(env, logs[0], *args), start_loader(env, logs[1], *args)]
    try:
        wait_for(
            lambda: all("assigned partition" in log.read_text() for log in logs),
            60,
            "both consumers to get partitions",
        )
        # Wait for the group to settle: both logs' latest assignments cover the three partitions once.
        time.sleep(4)
        produce_file(env, write_jsonl(tmp_path / "rest.jsonl", lines[3:]), topic)
        count = "select count(*) from raw.appointment_events where kafka_topic = %s"
        wait_for(lambda: scalar(settings, count, (topic,)) == total, 90, "every event in raw")
    finally:
        codes = [stop(proc) for proc in procs]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    runs = query(
        settings,
        "select rows_read, rows_loaded, status from raw.load_runs where details->>'topic' = %s",
        (topic,),
    )
    assert [row[2] for row in runs] == ["succeeded", "succeeded"]
    assert all(row[0] > 0 for row in runs), f"both consumers must have read events: {runs}"
    assert sum(row[1] for row in runs) == total, f"each event loaded by exactly one consumer: {runs}"
    assert sum(row[0] for row in runs) == total, f"no event read twice: {runs}"
