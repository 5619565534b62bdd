"""The producer: exact bytes, keys by appointment_id, counts, and clear failures."""

from __future__ import annotations

import json

from confluent_kafka import Consumer, TopicPartition

from loaders.tests.loader_support import FIXTURES, loader_env, new_topic, run_loader, wait_for
from runtime.kafka import client_config
from testkit.fixtures import free_port

EDGE_CASES = FIXTURES / "events_edge_cases.jsonl"


def no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def read_back(settings, topic: str, count: int) -> list:
    """The topic's first ``count`` messages (its three partitions from the start)."""
    consumer = Consumer(client_config(settings, **{"group.id": f"check-{topic}", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    received: list = []
    try:
        wait_for(lambda: received.extend(consumer.consume(100, 0.5)) or len(received) >= count, 30, "messages")
    finally:
        consumer.close()
    return received


def test_each_line_is_one_message_with_its_exact_bytes_and_key(settings):
    topic = new_topic()
    env = loader_env(settings)
    done = run_loader(env, "produce", "--from-jsonl", str(EDGE_CASES), "--topic", topic)
    lines = EDGE_CASES.read_bytes().split(b"\n")[:-1]
    assert done.returncode == 0, done.stderr
    assert f"produce: {len(lines)} delivered, 0 failed of {len(lines)} sent" in done.stdout

    received = read_back(settings, topic, len(lines))
    assert sorted(m.value() for m in received) == sorted(lines)
    by_partition: dict[bytes, set[int]] = {}
    for message in received:
        value, key = message.value(), message.key()
        try:
            # Strict JSON, as the consumer reads it: NaN is no number, so such a line gets no key.
            event = json.loads(value, parse_constant=no_constants)
        except ValueError:
            event = None
        expected = event.get("appointment_id") if isinstance(event, dict) else None
        assert key == (expected.encode() if isinstance(expected, str) else None), value
        if key:
            by_partition.setdefault(key, set()).add(message.partition())
    assert all(len(parts) == 1 for parts in by_partition.values()), "one appointment, one partition"


def test_an_appointment_id_without_utf_8_is_sent_keyless_and_the_rest_go_on(settings, tmp_path):
    """An unpaired surrogate is valid JSON but has no UTF-8 bytes: that line goes out as it came, without a
    key (the consumer then rejects it), and neither it nor the lines after it stop the producer."""
    lines = [
        b'{"event_id":"e1","appointment_id":"APT-00000001"}',
        b'{"event_id":"e2","appointment_id":"\\ud800"}',
        b'{"event_id":"e3","appointment_id":"APT-\\udfff-2"}',
        b'{"event_id":"e4","appointment_id":"APT-00000002"}',
    ]
    source = tmp_path / "surrogates.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    topic = new_topic()
    done = run_loader(loader_env(settings), "produce", "--from-jsonl", str(source), "--topic", topic)
    assert done.returncode == 0, done.stderr
    assert "produce: 4 delivered, 0 failed of 4 sent" in done.stdout
    received = read_back(settings, topic, len(lines))
    assert sorted((m.value(), m.key()) for m in received) == sorted(
        [(lines[0], b"APT-00000001"), (lines[1], None), (lines[2], None), (lines[3], b"APT-00000002")]
    )


def test_unreachable_broker_and_missing_input_are_clear_errors(settings, tmp_path):
    env = loader_env(settings, TELEMED_KAFKA_PORT=str(free_port()))
    down = run_loader(env, "produce", "--from-jsonl", str(EDGE_CASES), "--topic", new_topic(), "--timeout", "2")
    assert down.returncode == 1
    assert "cannot create or reach the topic" in down.stderr
    missing = run_loader(loader_env(settings), "produce", "--from-jsonl", str(tmp_path / "nothing-here"))
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_loader(loader_env(settings), "produce", "--from-jsonl", str(tmp_path / "empty"))
    assert empty.returncode == 1
    assert "no *.jsonl files" in empty.stderr
