"""``python -m loaders produce``: send appointment events to Kafka from JSONL files.

Each line's exact bytes become one message (malformed lines too: the consumer must see them to reject
them), keyed by ``appointment_id`` when the line is a JSON object that has one, so an appointment's
events share a partition and keep their order. Delivery reports count what the broker acknowledged;
the exit code is non-zero when any message failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException, Producer

from runtime.kafka import DEFAULT_PARTITIONS, admin_client, client_config, ensure_topic
from runtime.progress import Progress
from runtime.settings import Settings

log = logging.getLogger(__name__)

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


@dataclass
class ProduceResult:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    seconds: float = 0.0


def jsonl_files(source: Path) -> list[Path]:
    """The files to send: one file, or every *.jsonl under a folder in name order."""
    if source.is_file():
        return [source]
    if source.is_dir():
        return sorted(path for path in source.rglob("*.jsonl") if path.is_file())
    raise FileNotFoundError(f"{source} does not exist")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# A line's key is read as strictly as the consumer reads the line: NaN and Infinity are not JSON, so a
# line holding them is keyless, like any other malformed line.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def read_lines(path: Path) -> Iterator[bytes]:
    """Every line's bytes without its newline; the newline that ends the file makes no extra message."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    yield from lines


def key_of(line: bytes) -> bytes | None:
    try:
        event = _DECODER.decode(line.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):  # nesting beyond the decoder's depth: keyless
        return None
    if type(event) is dict:
        appointment_id = event.get("appointment_id")
        if type(appointment_id) is str and appointment_id:
            try:
                return appointment_id.encode()
            except UnicodeEncodeError:  # an unpaired surrogate (\ud800) has no UTF-8: sent keyless, as it came
                return None
    return None


def produce(
    settings: Settings,
    files: list[Path],
    topic: str | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    timeout_s: float = 60.0,
    compression: str = "none",
) -> ProduceResult:
    """Send every line of ``files``; a message the broker has not acknowledged within ``timeout_s`` fails.

    ``compression`` is librdkafka's ``compression.type`` for the batches: the embedded broker keeps topics
    in memory as the batches arrive, so a compressed batch costs it less memory (``make scale``)."""
    topic = topic or settings.kafka_topic
    ensure_topic(admin_client(settings), topic, partitions, timeout=timeout_s)
    result = ProduceResult()
    failures: dict[str, int] = {}

    def on_delivery(err, _msg) -> None:
        if err is None:
            result.delivered += 1
        else:
            result.failed += 1
            failures[err.str()] = failures.get(err.str(), 0) + 1

    producer = Producer(
        client_config(
            settings,
            **{
                "acks": "all",
                "linger.ms": 20,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 200000,
                "compression.type": compression,
                # A broker that is down for longer than this fails the message (counted, non-zero exit).
                "message.timeout.ms": int(timeout_s * 1000),
            },
        )
    )
    started = time.monotonic()
    progress = Progress("produce", "events")
    for path in files:
        for line in read_lines(path):
            key = key_of(line)
            while True:
                try:
                    producer.produce(topic, value=line, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    # The local queue is full: serve delivery reports until there is room.
                    producer.poll(0.5)
            result.sent += 1
            if result.sent % 1000 == 0:
                producer.poll(0)
                progress.update(1000)
        log.info("queued %s", path)
    remaining = producer.flush(timeout_s + 10)
    progress.close()
    if remaining:
        result.failed += remaining
        failures["not delivered before the flush timeout"] = remaining
    result.seconds = time.monotonic() - started
    for reason, count in failures.items():
        log.error("%d messages failed: %s", count, reason)
    return result


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m loaders produce", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--from-jsonl",
        type=Path,
        default=settings.state_dir / "generated" / "events",
        help="a JSONL file or a folder of *.jsonl files (default: the generator's output)",
    )
    parser.add_argument("--topic", help=f"topic (default {settings.kafka_topic})")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS, help="partitions of a new topic")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds the broker has to acknowledge a message (default 60)"
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="compression of the message batches (default none; the embedded broker accepts each of them)",
    )
    args = parser.parse_args(argv)
    try:
        files = jsonl_files(args.from_jsonl)
    except FileNotFoundError as exc:
        print(f"error: {exc} (run `make generate` first, or pass --from-jsonl)", file=sys.stderr)
        return 1
    if not files:
        print(f"error: no *.jsonl files under {args.from_jsonl}", file=sys.stderr)
        return 1
    try:
        result = produce(settings, files, args.topic, args.partitions, args.timeout, args.compression)
    except (KafkaException, TimeoutError) as exc:
        print(
            f"error: cannot create or reach the topic on {settings.kafka_bootstrap_servers}: {str(exc) or 'timed out'}",
            file=sys.stderr,
        )
        return 1
    print(
        f"produce: {result.delivered} delivered, {result.failed} failed of {result.sent} sent "
        f"from {len(files)} file(s) to {args.topic or settings.kafka_topic} in {result.seconds:.1f}s"
    )
    return 1 if result.failed else 0
