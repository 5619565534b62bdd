"""``python -m loaders consume``: appointment events from Kafka into raw.appointment_events, exactly once.

How exactly-once holds (docs/architecture.md, Guarantees):
- each batch's valid rows, its rejected rows and the next offset of every partition in it are written in
  ONE Postgres transaction (loaders/rawwrite.py: COPY, or after a key conflict ``insert ... on conflict
  (event_id) do nothing``; rejected rows are unique on topic/partition/offset);
- on every (re)assignment the consumer seeks to the offsets stored in Postgres, so Postgres is the truth;
- offsets are committed to Kafka only after the Postgres commit, so lag tools never run ahead of raw;
- a topic whose id changed (deleted and created again, or an in-memory broker that restarted) makes the
  stored offsets meaningless: that is logged and the partition is read from its earliest offset, letting
  event_id dedupe.

Throughput: the main thread polls Kafka and turns messages into COPY text while a writer thread holds
the Postgres transaction of the previous batch (psycopg2 releases the GIL while the server works), so
Python and Postgres work in parallel. Per event the Python work is one JSON decode, dict/set checks and
one formatted line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg2
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from loaders.pgcopy import escape
from loaders.rawwrite import BackgroundWriter, PgSession, RawTable, insert_values
from loaders.retry import (
    Backoff,
    RetryDeadlineExceeded,
    RetryGaveUp,
    RetryInterrupted,
    deadline_message,
    stop_on_signals,
)
from loaders.runs import LoadRun, RunCounts
from loaders.validation import (
    INVALID_JSON,
    JSON_DECODER,
    UNDECODABLE,
    UNSTORABLE,
    check_event,
    storable_json_text,
    storable_text,
)
from runtime.kafka import admin_client, client_config, topic_exists, topic_id
from runtime.progress import Progress
from runtime.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GROUP = "telemed-raw-loader"
LOADER_NAME = "consume"
_NULL = "\\N"

# Columns in the order of the COPY lines built by add_messages; the constant ones come last.
_COLUMNS = (
    "event_id, appointment_id, event_type, event_ts, payload, kafka_partition, kafka_offset, kafka_timestamp,"
    " schema_version, kafka_topic, _load_run_id"
)
_INSERT_REJECTED = """
insert into raw.appointment_events_rejected (
    reason, error_detail, event_id, raw_text, raw_bytes, kafka_topic, kafka_partition, kafka_offset,
    kafka_key, kafka_timestamp, _load_run_id
) values %s
on conflict (kafka_topic, kafka_partition, kafka_offset) do nothing
"""
_REJECTED_TEMPLATE = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), %s)"
_UPSERT_OFFSETS = """
insert into raw.kafka_offsets (consumer_group, topic, partition, next_offset, topic_id, updated_at)
values %s
on conflict (consumer_group, topic, partition) do update
set next_offset = excluded.next_offset, topic_id = excluded.topic_id, updated_at = excluded.updated_at
"""


@dataclass
class Batch:
    """Messages turned into COPY lines and rejected rows, with the next offset of each partition.

    ``tail`` ends every line with the constant columns (schema version, topic, load run).
    """

    tail: str = "\n"
    ids: list[str] = field(default_factory=list)  # COPY-escaped event_id of each line
    lines: list[str] = field(default_factory=list)
    messages: list = field(default_factory=list)  # the Kafka message of each line
    seen: set[str] = field(default_factory=set)
    rejects: list[tuple] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    read: int = 0
    duplicates: int = 0  # repeats of an event_id within this batch
    started: float = field(default_factory=time.monotonic)


def _reject(batch: Batch, reason: str, detail: str, value: bytes | None, msg, event_id: str | None = None) -> None:
    batch.rejects.append(_rejected_row(reason, detail, value, msg, event_id))


def _rejected_row(reason: str, detail: str, value: bytes | None, msg, event_id: str | None = None) -> tuple:
    """A raw.appointment_events_rejected row (without the run id): the message as it came, and its lineage."""
    text = None
    raw = None
    if value is not None:
        try:
            text = value.decode()
        except UnicodeDecodeError:
            raw = value
        else:
            if "\x00" in text:  # text columns cannot hold NUL: keep the exact bytes instead
                text, raw = None, value
    key = msg.key()
    if key is not None:
        key = key.decode("utf-8", "replace").replace("\x00", "\ufffd")
    ts_type, ts_ms = msg.timestamp()
    return (
        reason,
        detail,
        event_id,
        text,
        psycopg2.Binary(raw) if raw is not None else None,
        msg.topic(),
        msg.partition(),
        msg.offset(),
        key,
        ts_ms if ts_type else None,
    )


def add_messages(batch: Batch, messages: list) -> list:
    """Validate and stage ``messages`` into ``batch``; returns the error events among them."""
    errors = []
    ids, lines, seen, tail, messages_kept = batch.ids, batch.lines, batch.seen, batch.tail, batch.messages
    next_offsets = batch.next_offsets
    raw_decode = JSON_DECODER.raw_decode
    last_ms, last_ts = None, _NULL
    for msg in messages:
        if msg.error() is not None:
            errors.append(msg)
            continue
        partition = msg.partition()
        offset = msg.offset()
        next_offsets[partition] = offset + 1
        value = msg.value()
        try:
            try:
                text = value.decode()
                # raw_decode skips the whitespace regexes of decode(); trailing text is checked below.
                event, end = raw_decode(text)
                if end != len(text) and text[end:].strip():
                    raise ValueError("extra data after the JSON value")
            except (AttributeError, UnicodeDecodeError, ValueError) as exc:
                if value is not None and value[:1].isspace():
                    event = _decode_padded(value)
                    if event is not _INVALID:
                        text = value.decode()
                else:
                    event = _INVALID
                if event is _INVALID:
                    detail = "empty message" if not value else f"not valid UTF-8 JSON ({type(exc).__name__})"
                    _reject(batch, INVALID_JSON, detail, value, msg)
                    continue
            problem, event_ts = check_event(event)
            if problem is not None:
                event_id = event.get("event_id") if type(event) is dict else None
                # The id is kept for lineage when a text column can hold it (no NUL, no lone surrogate).
                _reject(batch, problem[0], problem[1], value, msg, event_id if storable_text(event_id) else None)
                continue
            if not storable_json_text(text):
                _reject(batch, INVALID_JSON, "holds a NUL character or an unpaired surrogate", value, msg)
                continue
            event_id = escape(event["event_id"])
            if event_id in seen:
                batch.duplicates += 1
                continue
            ts_type, ts_ms = msg.timestamp()
            if ts_ms != last_ms:
                last_ms = ts_ms
                last_ts = datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat() if ts_type else _NULL
            line = (
                f"{event_id}\t{escape(event['appointment_id'])}\t{event['event_type']}\t{event_ts}\t{escape(text)}\t"
                f"{partition}\t{offset}\t{last_ts}{tail}"
            )
            seen.add(event_id)
            ids.append(event_id)
            lines.append(line)
            messages_kept.append(msg)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder or a check raises about one message
            # RecursionError on deep nesting, for one: the message is quarantined, the batch goes on.
            _reject(batch, UNDECODABLE, f"the decoder or validator raised {type(exc).__name__}", value, msg)
    batch.read += len(messages) - len(errors)
    return errors


_INVALID = object()


def _unstorable(msg, detail: str) -> tuple:
    """The rejected row of a valid event that Postgres refused (its bytes decoded before, so again now)."""
    event_id = JSON_DECODER.decode(msg.value().decode())["event_id"]
    return _rejected_row(UNSTORABLE, detail, msg.value(), msg, event_id)


def _decode_padded(value: bytes) -> object:
    """The slow path for a message with leading whitespace, which raw_decode does not skip."""
    try:
        return JSON_DECODER.decode(value.decode())
    except (UnicodeDecodeError, ValueError):
        return _INVALID


class EventWriter:
    """The consumer's side of Postgres: stored offsets, and one transaction per batch (events, rejected
    messages, next offsets and the run's counters)."""

    def __init__(self, settings: Settings, run: LoadRun, group: str, topic: str, backoff: Backoff):
        self.run, self.group, self.topic = run, group, topic
        self.topic_id: str | None = None
        self.events = RawTable("raw.appointment_events", _COLUMNS, "event_id", "_stage_events")
        self.session = PgSession(settings, backoff, setup=self.events.ddl)
        # The ingest service's metrics (loaders/serve.py): told each batch's counts and the seconds its
        # transaction took, once it is committed.
        self.on_commit: Callable[[RunCounts, float], None] | None = None

    def open_run(self, details: dict) -> None:
        self.session.run("opening the load run", lambda conn: self.run.open(conn, details))

    def close_run(self, status: str, error: str | None, details: dict) -> None:
        self.session.run("closing the load run", lambda conn: self.run.close(conn, status, error, details))

    def stored_offsets(self) -> dict[int, tuple[int, str | None]]:
        def fetch(cur):
            cur.execute(
                "select partition, next_offset, topic_id from raw.kafka_offsets"
                " where consumer_group = %s and topic = %s",
                (self.group, self.topic),
            )
            return {row[0]: (row[1], row[2]) for row in cur.fetchall()}

        return self.session.transaction("reading stored offsets", fetch)

    def write(self, batch: Batch) -> RunCounts:
        started = time.monotonic()

        def work(cur) -> RunCounts:
            counts = RunCounts(read=batch.read, duplicates=batch.duplicates)
            rejects = batch.rejects
            if batch.lines:
                inserted, refused = self.events.insert(cur, batch.ids, batch.lines)
                counts.loaded = len(inserted)
                counts.duplicates += len(batch.lines) - counts.loaded - len(refused)
                if refused:
                    rejects = rejects + [_unstorable(batch.messages[i], detail) for i, detail in refused]
            if rejects:
                rows = [(*reject, self.run.run_id) for reject in rejects]
                counts.rejected = insert_values(cur, _INSERT_REJECTED, rows, _REJECTED_TEMPLATE, droppable=(3, 4))
                # A rejected message seen again (re-read after a crash) is not a new rejection.
                counts.duplicates += len(rows) - counts.rejected
            offsets = [(self.group, self.topic, p, o, self.topic_id) for p, o in sorted(batch.next_offsets.items())]
            insert_values(cur, _UPSERT_OFFSETS, offsets, "(%s, %s, %s, %s, %s, now())")
            self.run.advance(cur, counts)
            return counts

        counts = self.session.transaction(f"writing a batch of {batch.read} messages", work)
        if self.on_commit is not None:
            self.on_commit(counts, time.monotonic() - started)
        return counts

    def close(self) -> None:
        self.session.close()


@dataclass
class ConsumeOptions:
    group: str = DEFAULT_GROUP
    topic: str | None = None
    drain: bool = False
    idle_seconds: float = 5.0
    batch_size: int = 50000
    batch_ms: int = 1000
    max_retry_seconds: float = 300.0
    # Follow mode: end the run, as drain mode does, when the broker stays unreachable for max_retry_seconds.
    broker_deadline: bool = False
    session_timeout_ms: int = 6000
    # Fault injection for the reliability suite only: hold each Kafka offset commit this long after the
    # Postgres commit, so a test's kill lands between the two commits every time, not by luck of scheduling.
    kafka_commit_delay_ms: int = 0


@dataclass
class ConsumeResult:
    status: str
    counts: RunCounts
    run_id: int | None
    seconds: float
    # monotonic time of the last Postgres commit, so a benchmark can leave out the drain's idle wait
    last_commit_at: float | None = None
    first_message_at: float | None = None
    error: str | None = None
    offsets: dict[int, int] = field(default_factory=dict)


class EventConsumer:
    def __init__(self, settings: Settings, options: ConsumeOptions):
        self.settings = settings
        self.options = options
        self.topic = options.topic or settings.kafka_topic
        self.run = LoadRun(LOADER_NAME)
        self.backoff = Backoff(options.max_retry_seconds)
        self.writer = EventWriter(settings, self.run, options.group, self.topic, self.backoff)
        self.admin = admin_client(settings)
        self.stop_requested = False
        self.counts = RunCounts()
        self.offsets: dict[int, int] = {}
        self.assigned: set[int] = set()
        self.last_commit_at: float | None = None
        self.first_message_at: float | None = None
        self._pending: Batch | None = None
        self._writer: BackgroundWriter[Batch, RunCounts] | None = None
        self._consumer: Consumer | None = None
        self._progress: Progress | None = None
        self._last_broker_error = 0.0
        self._broker_down_since: float | None = None
        self._last_probe = 0.0
        self.broker = f"the broker at {settings.kafka_bootstrap_servers}"
        self._last_error_log = 0.0
        self._failed = False
        # The ingest service's metrics: told how many messages each poll brought (read, not yet committed).
        self.on_receive: Callable[[int], None] | None = None

    # ------------------------------------------------------------------ writer thread

    def _submit(self, batch: Batch) -> None:
        self._count(self._writer.submit(batch))

    def _collect(self, block: bool) -> None:
        """Take finished batches from the writer: count them, then commit their offsets to Kafka."""
        try:
            done = self._writer.finished(block)
        except BaseException:
            self._failed = True
            raise
        self._count(done)

    def _count(self, done: list[tuple[Batch, RunCounts]]) -> None:
        for batch, counts in done:
            self.last_commit_at = time.monotonic()
            self.counts.add(counts)
            self.offsets.update(batch.next_offsets)
            if self._progress:
                self._progress.update(batch.read)
            self._commit_to_kafka(batch.next_offsets)

    def _commit_to_kafka(self, next_offsets: dict[int, int]) -> None:
        # Only partitions we still own: after a rebalance another member commits its own.
        parts = [TopicPartition(self.topic, p, o) for p, o in next_offsets.items() if p in self.assigned]
        if parts and self._consumer is not None:
            if self.options.kafka_commit_delay_ms:
                time.sleep(self.options.kafka_commit_delay_ms / 1000)
            try:
                self._consumer.commit(offsets=parts, asynchronous=True)
            except Exception as exc:  # noqa: BLE001 - Postgres holds the truth; Kafka's copy is for lag tools
                log.debug("offset commit to Kafka skipped: %s", exc)

    def _flush(self) -> None:
        """Hand the batch in hand to the writer and wait until every batch is in Postgres."""
        if self._pending is not None and self._pending.read:
            self._submit(self._pending)
        self._pending = None
        self._collect(block=True)

    # ------------------------------------------------------------------ rebalancing

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        current_id = topic_id(self.admin, self.topic)
        self.writer.topic_id = current_id
        stored = self.writer.stored_offsets()
        for tp in partitions:
            found = stored.get(tp.partition)
            if found is None:
                tp.offset = OFFSET_BEGINNING
            elif found[1] and current_id and found[1] != current_id:
                log.warning(
                    "topic %s was recreated (topic id changed): the stored offset %d of partition %d belongs to "
                    "the old topic, so the partition is read from its earliest offset (event_id dedupes)",
                    self.topic,
                    found[0],
                    tp.partition,
                )
                tp.offset = OFFSET_BEGINNING
            else:
                tp.offset = found[0]
        consumer.assign(partitions)
        self.assigned = {tp.partition for tp in partitions}
        # Bring Kafka's copy (for lag tools) up to Postgres: a run killed between its two commits left it
        # behind, and a partition with nothing new to read would otherwise never be committed again.
        self._commit_to_kafka({tp.partition: tp.offset for tp in partitions if tp.offset >= 0})
        log.info(
            "assigned %s", ", ".join(f"partition {tp.partition} from {_offset_name(tp.offset)}" for tp in partitions)
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Finish what we hold for these partitions before another member may take them over. After a
        # failure nothing more is written: the batch in hand is read again by whoever owns it next.
        if not self._failed:
            self._flush()
        self.assigned -= {tp.partition for tp in partitions}
        consumer.unassign()
        if partitions:
            log.info("revoked partitions %s", ", ".join(str(tp.partition) for tp in partitions))

    # ------------------------------------------------------------------ main loop

    def _handle_errors(self, errors: list) -> None:
        for msg in errors:
            err = msg.error()
            code = err.code()
            if code == KafkaError._PARTITION_EOF:
                continue
            if code == KafkaError._AUTO_OFFSET_RESET or code == KafkaError.OFFSET_OUT_OF_RANGE:
                log.warning(
                    "partition %s: the stored offset is out of range (%s); reading from the earliest offset, "
                    "event_id dedupes",
                    msg.partition(),
                    err.str(),
                )
                if msg.partition() is not None and msg.partition() >= 0:
                    self._consumer.seek(TopicPartition(self.topic, msg.partition(), OFFSET_BEGINNING))
                continue
            if err.fatal():
                raise RuntimeError(f"fatal Kafka error: {err.str()}")
            # Transport errors, a missing topic, a restarting broker: librdkafka retries by itself.
            self._last_broker_error = time.monotonic()
            if self._broker_down_since is None:
                self._broker_down_since = self._last_broker_error
            if time.monotonic() - self._last_error_log > 10:
                self._last_error_log = time.monotonic()
                log.warning("Kafka: %s (retrying)", err.str())

    def _consumer_config(self) -> dict[str, object]:
        return client_config(
            self.settings,
            **{
                "group.id": self.options.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # Out-of-range offsets become an error event we handle (log, then earliest).
                "auto.offset.reset": "error",
                "session.timeout.ms": self.options.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.options.session_timeout_ms // 3),
                # Notice a topic created again after a broker restart within seconds.
                "topic.metadata.refresh.interval.ms": 5000,
                "on_commit": _log_commit,
            },
        )

    def request_stop(self, *_args) -> None:
        if not self.stop_requested:
            log.info("stop requested: finishing the batch in hand")
        self.stop_requested = True
        self.backoff.request_stop()  # a wait for Postgres or the broker ends now, the run with it

    def _watch_broker(self, now: float) -> None:
        """After a broker error, ask the broker once a second whether it is back; give up at the deadline
        (drain mode, or follow mode with ``broker_deadline``). Without a deadline librdkafka retries forever."""
        if self._broker_down_since is None or now - self._last_probe < 1:
            return
        self._last_probe = now
        try:
            topic_exists(self.admin, self.topic, timeout=1)
        except Exception as exc:
            down_for = now - self._broker_down_since
            if (self.options.drain or self.options.broker_deadline) and down_for >= self.options.max_retry_seconds:
                message = deadline_message(
                    "reading from Kafka", exc, self.broker, down_for, self.options.max_retry_seconds
                )
                raise RetryDeadlineExceeded(message) from exc
            return
        self._broker_down_since = None

    def run_loop(self) -> ConsumeResult:
        started = time.monotonic()
        opts = self.options
        details = {"group": opts.group, "topic": self.topic, "mode": "drain" if opts.drain else "follow"}
        self.writer.open_run(details)
        self._tail = f"\t1\t{escape(self.topic)}\t{self.run.run_id}\n"
        status, error = "succeeded", None
        self._writer = BackgroundWriter(self.writer.write, "raw-writer")
        try:
            if opts.drain and not self._topic_ready():
                log.info("topic %s does not exist: nothing to drain", self.topic)
            else:
                self._poll_until_done()
            if self.stop_requested and opts.drain:
                status = "interrupted"
        except RetryInterrupted as exc:
            self._failed = True
            status, error = "interrupted", str(exc)
            log.error("%s", error)
        except (RetryGaveUp, RuntimeError) as exc:
            self._failed = True
            status, error = "failed", str(exc)
            log.error("%s", error)
        finally:
            if self._consumer is not None:
                self._consumer.close()
            self._writer.close()
            if self._progress:
                self._progress.close()
        seconds = time.monotonic() - started
        try:
            self.writer.close_run(status, error, {**details, "next_offsets": _str_keys(self.offsets)})
        except RetryGaveUp as exc:
            log.error("could not record the end of run %s: %s", self.run.run_id, exc)
        self.writer.close()
        return ConsumeResult(
            status,
            self.counts,
            self.run.run_id,
            seconds,
            self.last_commit_at,
            self.first_message_at,
            error,
            self.offsets,
        )

    def _topic_ready(self) -> bool:
        while True:
            try:
                # Short attempts: a signal is handled between them, and the backoff paces them.
                return topic_exists(self.admin, self.topic, timeout=2)
            except Exception as exc:  # noqa: BLE001 - the broker is not there yet
                self.backoff.wait("reaching the broker", exc, self.broker)

    def _poll_until_done(self) -> None:
        opts = self.options
        self._consumer = Consumer(self._consumer_config())
        self._consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self._progress = Progress("consume", "events")
        batch_s = opts.batch_ms / 1000
        # Not known to answer until a probe says so (librdkafka reports no error for a broker that was
        # never reached), so a broker down from the start meets the deadline too.
        self._broker_down_since = time.monotonic()
        last_message = time.monotonic()
        waiting_since = time.monotonic()
        while not self.stop_requested:
            room = opts.batch_size - (self._pending.read if self._pending else 0)
            messages = self._consumer.consume(num_messages=max(1, room), timeout=0.2)
            now = time.monotonic()
            if messages:
                if self.first_message_at is None:
                    self.first_message_at = now
                if self._pending is None:
                    self._pending = Batch(tail=self._tail)
                errors = add_messages(self._pending, messages)
                if errors:
                    self._handle_errors(errors)
                if len(errors) < len(messages):
                    last_message = now
                    if self.on_receive is not None:
                        self.on_receive(len(messages) - len(errors))
                    self._broker_down_since = None
            self._watch_broker(now)
            pending = self._pending
            if (
                pending is not None
                and pending.read
                and (pending.read >= opts.batch_size or now - pending.started >= batch_s)
            ):
                self._submit(pending)
                self._pending = None
            self._collect(block=False)
            if opts.drain:
                if not self.assigned:
                    # No partitions yet (group joining, broker away): that is not "idle".
                    last_message = now
                    if now - waiting_since > opts.max_retry_seconds:
                        raise RuntimeError(
                            f"no partitions of {self.topic} were assigned within {opts.max_retry_seconds:.0f}s"
                        )
                    continue
                waiting_since = now
                # A broker error restarts the idle clock: an unreachable broker is not an empty topic.
                last_message = max(last_message, self._last_broker_error)
                if now - last_message >= opts.idle_seconds:
                    # Quiet because the topic is drained, or because the broker is away? Only the first ends.
                    try:
                        topic_exists(self.admin, self.topic, timeout=2)
                    except Exception as exc:  # noqa: BLE001 - any failure means the broker did not answer
                        self.backoff.wait("reaching the broker", exc, self.broker)
                        continue
                    self.backoff.reset()
                    log.info("nothing new for %.1fs: drained", opts.idle_seconds)
                    break
        self._flush()


def _log_commit(err, partitions) -> None:
    if err is not None:
        log.debug("offset commit to Kafka failed: %s", err)


def _offset_name(offset: int) -> str:
    return "earliest" if offset == OFFSET_BEGINNING else f"offset {offset}"


def _str_keys(offsets: dict[int, int]) -> dict[str, int]:
    return {str(p): o for p, o in sorted(offsets.items())}


def parse_args(argv: list[str] | None) -> ConsumeOptions:
    parser = argparse.ArgumentParser(prog="python -m loaders consume", description=__doc__.split("\n\n")[0])
    parser.add_argument("--drain", action="store_true", help="exit once nothing new arrives for --idle-seconds")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="drain mode: idle time that ends the run")
    parser.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group id (default {DEFAULT_GROUP})")
    parser.add_argument("--topic", help="topic (default TELEMED_TOPIC or telemed.appointment-events)")
    parser.add_argument("--batch-size", type=int, default=50000, help="messages per transaction, at most")
    parser.add_argument("--batch-ms", type=int, default=1000, help="milliseconds a batch may wait to fill")
    parser.add_argument(
        "--max-retry-seconds",
        type=float,
        default=300.0,
        help="give up when Postgres or the broker stay unreachable this long (default 300)",
    )
    parser.add_argument(
        "--broker-deadline",
        action="store_true",
        help="follow mode: end the run when the broker stays unreachable for --max-retry-seconds, as --drain does"
        " (default: wait for it as long as it takes)",
    )
    parser.add_argument("--session-timeout-ms", type=int, default=6000, help="consumer group session timeout")
    # Test-only fault injection (see ConsumeOptions), hidden from --help.
    parser.add_argument("--kafka-commit-delay-ms", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return ConsumeOptions(
        group=args.group,
        topic=args.topic,
        drain=args.drain,
        idle_seconds=args.idle_seconds,
        batch_size=args.batch_size,
        batch_ms=args.batch_ms,
        max_retry_seconds=args.max_retry_seconds,
        broker_deadline=args.broker_deadline,
        session_timeout_ms=args.session_timeout_ms,
        kafka_commit_delay_ms=args.kafka_commit_delay_ms,
    )


def run_and_report(
    consumer: EventConsumer, group: str, error_prefix: str = "error", ok: tuple[str, ...] = ("succeeded", "interrupted")
) -> int:
    """Run ``consumer`` under the signal handlers, print its summary line; the exit code: 0 when the run ended
    with a status in ``ok`` and no error. (By default a stop that cut an outage's wait short is an error; one
    that ended a healthy run is not.)"""
    try:
        with stop_on_signals(consumer.backoff, consumer.request_stop):
            result = consumer.run_loop()
    except RetryGaveUp as exc:
        print(f"{error_prefix}: {exc}", file=sys.stderr)
        return 1
    c = result.counts
    print(
        f"consume {result.status}: read {c.read}, loaded {c.loaded}, rejected {c.rejected}, "
        f"duplicates skipped {c.duplicates} in {result.seconds:.1f}s (run {result.run_id}, topic {consumer.topic}, "
        f"group {group})"
    )
    if result.error:
        print(f"{error_prefix}: {result.error}", file=sys.stderr)
    return 0 if result.status in ok and not result.error else 1


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    consumer = EventConsumer(Settings.from_env(), options)
    return run_and_report(consumer, options.group)
