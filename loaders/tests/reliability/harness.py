"""The reliability suite's rig: its own Postgres and broker, loaders as subprocesses, and the gates.

Each case measures what the database holds and ends with ``record(...)``, which keeps the figures for
the summary and asserts the gates. A figure a case did not measure stays ``None`` (an empty cell in the
summary), never a 0. The figures:

- ``lost``: the SET of messages the broker acknowledged (delivery report without error) that are in
  neither raw nor quarantine: ``acknowledged - landed``. A message is known by its event_id and by the
  sha256 of its bytes (poison has no event_id; its raw text or bytes are kept in quarantine);
- ``failed_deliveries``: messages the producer was told were NOT delivered; reported, never counted lost;
- ``dup_rows``: rows beyond one per key where a duplicate could reach the marts: ``fact_appointment`` per
  appointment_id, ``fact_feedback`` per feedback_id (raw cannot hold one: its keys refuse it);
- ``redelivered``: messages committed to Postgres more than once: the messages counted in committed
  batches (``rows_read`` advances inside each batch's transaction) over every run of the case's group,
  minus the distinct offsets that group has consumed (its stored next offsets). A kill before a commit
  re-reads work that was never committed, so it does not count; a commit whose answer was lost (the
  server crashed or dropped the connection after committing) is read and committed again, and does;
- ``quarantined``: rows in the ``_rejected`` tables (and ``failed`` file rows) for the case;
- ``recovery_s``: from the end of the fault to the loader having caught up (or committed again).

The gates are plain functions over measured sets and counts (``check_*``), so that a negative test can
hand them a planted fault and show that they catch it (``test_gates.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from confluent_kafka import Consumer, Producer, TopicPartition

from loaders.tests.loader_support import loader_env
from runtime import db
from runtime.kafka import admin_client, client_config, ensure_topic
from runtime.services import EmbeddedBroker, EmbeddedPostgres
from runtime.settings import PROJECT_ROOT, Settings

ARTIFACTS = PROJECT_ROOT / ".local" / "artifacts"
# The suite's own connections are named, so faults aimed at the loaders' connections spare them.
PROBE_APP = "telemed-reliability"
LOADER_APP = "telemed-elt"


@dataclass(frozen=True)
class Scale:
    """How big and how long each case is: ``fast`` for `make test`, ``soak`` for `make soak`."""

    name: str
    events: int  # events per consumer case
    kills: int  # case 2
    copy_kills: int  # case 3
    outage_s: tuple[float, float]  # case 4: Postgres down for a random time in this range
    terminate_s: float  # case 5: how long connections keep being terminated
    pauses: int  # case 6
    pause_s: float
    pause_every_s: float
    rate: int  # events per second of the paced producer
    churn: int  # case 8
    pipeline_scale: int  # generated appointments for the dbt cases
    member_kills: int  # case 17
    freeze_s: float  # case 18: a freeze this long, the retry deadline a fifth of it
    outage_files: int  # case 19: feedback files loaded across a Postgres outage


SCALES = {
    "fast": Scale("fast", 4000, 20, 3, (5.0, 6.0), 4.0, 2, 2.0, 5.0, 400, 5, 1200, 1, 6.0, 600),
    "soak": Scale("soak", 50_000, 60, 10, (5.0, 30.0), 30.0, 6, 10.0, 30.0, 1500, 5, 6000, 10, 60.0, 20_000),
}


def current_scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "fast")
    if name not in SCALES:
        raise ValueError(f"RELIABILITY_SCALE must be one of {sorted(SCALES)}, got {name!r}")
    return SCALES[name]


@dataclass(frozen=True)
class Message:
    """A message as the producer sent it: its event_id (None when it has none) and the sha256 of its bytes."""

    event_id: str | None
    sha256: str


def identify(value: bytes | None) -> Message:
    data = value or b""
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):  # poison: not UTF-8, not JSON, nested too deep
        event = None
    event_id = event.get("event_id") if isinstance(event, dict) else None
    return Message(event_id if isinstance(event_id, str) else None, hashlib.sha256(data).hexdigest())


@dataclass
class Sent:
    """What a producer learnt from its delivery reports."""

    acked: set[Message] = field(default_factory=set)
    failed: set[Message] = field(default_factory=set)


# One row per case, printed and written at the end of the session (see conftest.py).
FIGURES: list[dict] = []


@dataclass
class Rig:
    """The suite's own services and one database on them; ``work`` keeps every loader's log."""

    settings: Settings
    postgres: EmbeddedPostgres
    broker: EmbeddedBroker
    work: Path
    scale: Scale
    logs: list[Path] = field(default_factory=list)

    def on(self, database: str) -> Rig:
        db.bootstrap(dataclasses.replace(self.settings, pg_database=database))
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, pg_database=database))

    @property
    def env(self) -> dict[str, str]:
        return loader_env(self.settings)

    # --------------------------------------------------------------- database
    def connect(self, **kwargs):
        return db.connect(self.settings, application_name=PROBE_APP, **kwargs)

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def scalar(self, statement: str, params: tuple = ()):
        return self.sql(statement, params)[0][0]

    def stored_offsets(self, topic: str, group: str) -> dict[int, int]:
        rows = self.sql(
            "select partition, next_offset from raw.kafka_offsets where consumer_group = %s and topic = %s",
            (group, topic),
        )
        return dict(rows)

    def loaded(self, topic: str) -> int:
        return self.scalar("select count(*) from raw.appointment_events where kafka_topic = %s", (topic,))

    # --------------------------------------------------------------- loaders
    def log_path(self, name: str) -> Path:
        path = self.work / "logs" / f"{name}-{uuid.uuid4().hex[:6]}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.logs.append(path)
        return path

    def start(self, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        """A loader as a subprocess of its own, output in a log file of the rig."""
        path = self.log_path(name)
        out = path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "loaders", *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        return proc, path

    def run(self, name: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        path = self.log_path(name)
        done = subprocess.run(
            [sys.executable, "-m", "loaders", *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        path.write_text(done.stdout + done.stderr)
        return done

    def must(self, name: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        done = self.run(name, *args, timeout=timeout)
        assert done.returncode == 0, f"loaders {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done

    def drain(self, topic: str, group: str, *extra: str) -> subprocess.CompletedProcess:
        return self.must(
            "consume-drain",
            "consume", "--drain", "--idle-seconds", "1.5", "--topic", topic, "--group", group,
            "--session-timeout-ms", "1500", *extra,
        )  # fmt: skip

    def consumer(self, topic: str, group: str, *extra: str) -> tuple[subprocess.Popen, Path]:
        return self.start(
            "consume",
            "consume", "--topic", topic, "--group", group, "--session-timeout-ms", "1500",
            "--max-retry-seconds", "120", *extra,
        )  # fmt: skip

    # --------------------------------------------------------------- kafka
    def produce(self, topic: str, messages: list[bytes], keys: list[bytes | None] | None = None) -> Sent:
        """Send ``messages`` in order; every one must be acknowledged. Returns what was acknowledged."""
        ensure_topic(admin_client(self.settings), topic)
        sent = Sent()

        def on_delivery(err, msg):
            (sent.failed if err is not None else sent.acked).add(identify(msg.value()))

        producer = Producer(
            client_config(self.settings, **{"acks": "all", "linger.ms": 5, "message.max.bytes": 4 << 20})
        )
        for i, value in enumerate(messages):
            key = keys[i] if keys else None
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.2)
        assert producer.flush(60) == 0, "the broker did not acknowledge every message"
        assert not sent.failed, f"{len(sent.failed)} messages were not delivered"
        assert len(sent.acked) == len({identify(value) for value in messages})
        return sent

    def kafka_committed(self, topic: str, group: str, partitions: int = 3) -> dict[int, int]:
        consumer = Consumer(client_config(self.settings, **{"group.id": group, "enable.auto.commit": False}))
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


class PacedProducer(threading.Thread):
    """Valid events at ``rate`` per second until stopped; remembers which ones the broker acknowledged.

    ``hold()`` / ``go()`` pause it; messages sent while the broker is away are retried by librdkafka and
    count only once acknowledged.
    """

    def __init__(self, rig: Rig, topic: str, tag: str, rate: int):
        super().__init__(name=f"paced-{tag}", daemon=True)
        self.rig, self.topic, self.tag, self.rate = rig, topic, tag, rate
        self.acked: set[Message] = set()
        self.failed: set[Message] = set()
        self.sent = 0
        self._done = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._idle = threading.Event()

    def run(self) -> None:
        producer = Producer(
            client_config(self.rig.settings, **{"acks": "all", "linger.ms": 5, "message.timeout.ms": 120_000})
        )

        def on_delivery(err, msg):
            (self.failed if err is not None else self.acked).add(identify(msg.value()))

        step = 1 / self.rate
        next_at = time.monotonic()
        while not self._done.is_set():
            if not self._go.is_set():
                producer.flush(30)
                self._idle.set()
                self._go.wait(0.1)
                continue
            self._idle.clear()
            event_id = f"{self.tag}-{self.sent:07d}"
            line = event_line(event_id, self.sent)
            try:
                producer.produce(self.topic, value=line, key=event_id.encode(), on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.1)
                continue
            self.sent += 1
            producer.poll(0)
            next_at += step
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        producer.flush(120)

    def hold(self, timeout: float = 60) -> None:
        self._go.clear()
        assert self._idle.wait(timeout), "the producer did not flush in time"

    def go(self) -> None:
        self._idle.clear()
        self._go.set()

    def finish(self) -> set[Message]:
        self._done.set()
        self._go.set()
        self.join(150)
        assert not self.is_alive(), "the paced producer did not finish"
        return self.acked


def event_line(event_id: str, i: int) -> bytes:
    """One valid event (a patient joining a visit), as the message bytes."""
    event = {
        "schema_version": 1,
        "event_id": event_id,
        "event_type": "started",
        "event_ts": "2026-10-01T09:00:00Z",
        "appointment_id": f"APT-{i // 3:08d}",
        "device_type": "Tablet",
        "wait_time_minutes": i % 60,
    }
    return json.dumps(event).encode()


# ------------------------------------------------------------------------- processes and faults


def kill9(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """SIGTERM and a bounded wait; the loader must end cleanly (exit 0)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill9(proc)
        raise AssertionError(f"loader {proc.pid} ignored SIGTERM for {timeout}s:\n{log.read_text()[-3000:]}") from None
    assert code == 0, f"loader exited {code}:\n{log.read_text()[-3000:]}"


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (psycopg2.Error, OSError) as exc:  # a server may be restarting: poll on until the bound
            last = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""))


def server_pids(postgres: EmbeddedPostgres) -> list[int]:
    """The postmaster and every process it forked (backends, checkpointer, walwriter, ...)."""
    main = postgres.pid()
    assert main, "Postgres is not running"
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == main:
                children.append(int(stat.parent.name))
    return [main, *children]


# ------------------------------------------------------------------------- measurements


@dataclass
class Landed:
    """What reached raw or quarantine: event ids (loaded or quarantined) and the sha256 of quarantined bytes."""

    event_ids: set[str]
    sha256s: set[str]


def landed_messages(rig: Rig, topic: str, fetch=None) -> Landed:
    """What reached raw or quarantine from ``topic``; ``fetch(statement, params) -> rows`` reads it
    (default: a connection of the rig; a negative test passes its own transaction's cursor)."""
    fetch = fetch or rig.sql
    loaded = fetch("select event_id from raw.appointment_events where kafka_topic = %s", (topic,))
    rejected = fetch(
        "select event_id, encode(sha256(coalesce(convert_to(raw_text, 'UTF8'), raw_bytes)), 'hex')"
        " from raw.appointment_events_rejected where kafka_topic = %s",
        (topic,),
    )
    return Landed(
        {row[0] for row in loaded} | {row[0] for row in rejected if row[0] is not None},
        {row[1] for row in rejected if row[1] is not None},
    )


def lost_messages(acked: Iterable[Message], landed: Landed) -> set[Message]:
    """Acknowledged messages found neither in raw nor in quarantine (by event_id, or by their bytes)."""
    return {m for m in acked if m.event_id not in landed.event_ids and m.sha256 not in landed.sha256s}


def consume_redelivered(rig: Rig, topic: str, group: str, earlier_logs: int = 0) -> int:
    """Messages committed more than once by ``group`` on ``topic``: messages counted in committed batches
    over all its runs, minus the distinct offsets consumed (stored next offsets, plus ``earlier_logs``:
    offsets consumed from a log the broker has since lost). Negative: offsets ran ahead of the reads."""
    reads = rig.scalar(
        "select coalesce(sum(rows_read), 0) from raw.load_runs"
        " where loader = 'consume' and details->>'topic' = %s and details->>'group' = %s",
        (topic, group),
    )
    return int(reads) - sum(rig.stored_offsets(topic, group).values()) - earlier_logs


def feedback_redelivered(rig: Rig) -> int:
    """Forms committed more than once: forms counted in committed batches over every feedback run, minus
    the forms of the file records (a file's record commits once, with its forms)."""
    reads = rig.scalar("select coalesce(sum(rows_read), 0) from raw.load_runs where loader = 'feedback'")
    files = rig.scalar("select coalesce(sum(forms_read), 0) from raw.feedback_files")
    return int(reads) - int(files)


def quarantined_events(rig: Rig, topic: str) -> int:
    return rig.scalar("select count(*) from raw.appointment_events_rejected where kafka_topic = %s", (topic,))


def mart_duplicates(rig: Rig, schema: str = "marts") -> dict[tuple[str, str], int]:
    """Rows beyond one per appointment in fact_appointment and per form in fact_feedback, by key."""
    found = {}
    for table, key in (("fact_appointment", "appointment_id"), ("fact_feedback", "feedback_id")):
        for value, extra in rig.sql(
            f'select {key}, count(*) - 1 from "{schema}".{table} group by {key} having count(*) > 1'
        ):
            found[(table, value)] = extra
    return found


# ------------------------------------------------------------------------- gates
# Each returns the failures it finds in what was measured (empty: the gate holds).


def check_lost(lost: set) -> list[str]:
    if not lost:
        return []
    sample = sorted(str(m) for m in lost)[:5]
    return [f"{len(lost)} acknowledged messages are in neither raw nor quarantine, e.g. {sample}"]


def check_duplicates(duplicates: dict) -> list[str]:
    if not duplicates:
        return []
    sample = sorted(duplicates.items())[:5]
    return [f"{sum(duplicates.values())} duplicate rows, e.g. {sample}"]


def check_redelivered(redelivered: int, promised_zero: bool) -> list[str]:
    if redelivered < 0:
        return [f"stored offsets are {-redelivered} messages ahead of the messages committed: messages skipped"]
    if promised_zero and redelivered:
        return [f"{redelivered} messages committed twice where the design promises none"]
    return []


def check_quarantined(quarantined: int, injected: int) -> list[str]:
    if quarantined != injected:
        return [f"{quarantined} quarantined, {injected} bad inputs injected"]
    return []


def check_partial_files(forms_by_file: dict[str, set[str]], loaded: set[str]) -> list[str]:
    """Every file's forms are in raw all together or not at all."""
    partial = sorted(f for f, forms in forms_by_file.items() if forms & loaded and not forms <= loaded)
    return [f"{len(partial)} files loaded in part: {partial[:5]}"] if partial else []


def check_final_states(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    wrong = {a: (actual.get(a), want) for a, want in expected.items() if actual.get(a) != want}
    if not wrong:
        return []
    return [f"{len(wrong)} final states not by event time (got, want): {dict(sorted(wrong.items())[:5])}"]


def check_kafka_not_ahead(stored: dict[int, int], committed: dict[int, int]) -> list[str]:
    """Kafka's committed offsets (for lag tools) never run ahead of the offsets stored in Postgres."""
    ahead = {p: (o, stored.get(p, 0)) for p, o in committed.items() if o > stored.get(p, 0)}
    return [f"Kafka's committed offsets ahead of Postgres' (kafka, postgres): {ahead}"] if ahead else []


# The suite's target for catching up after a fault ends.
RECOVERY_TARGET_S = 60


def check_recovery(recovery_s: float, target_s: float = RECOVERY_TARGET_S) -> list[str]:
    if recovery_s <= target_s:
        return []
    return [f"caught up {recovery_s:.1f}s after the fault, the target is {target_s:.0f}s"]


# What the consumer logs when the stored offsets belong to a log the broker no longer has.
LOG_RESTART = re.compile(r"was recreated \(topic id changed\)|the stored offset is out of range")


def check_restart_noticed(log_text: str) -> list[str]:
    if LOG_RESTART.search(log_text):
        return []
    return ["the consumer did not log that the topic was recreated or its stored offset was out of range"]


# ------------------------------------------------------------------------- the summary row and the gates


def record(
    case: int,
    title: str,
    *,
    lost: set | None = None,
    failed_deliveries: int | None = None,
    duplicates: dict | None = None,
    redelivered: int | None = None,
    redelivery_promised_zero: bool = False,
    quarantined: int | None = None,
    bad_injected: int | None = None,
    recovery_s: float | None = None,
    failures: Iterable[str] = (),
    **extra,
) -> dict:
    """Keep the case's figures for the summary (None: not measured), then assert every gate on them."""
    row = {
        "case": case,
        "title": title,
        "lost": None if lost is None else len(lost),
        "failed_deliveries": failed_deliveries,
        "dup_rows": None if duplicates is None else sum(duplicates.values()),
        "redelivered": redelivered,
        "quarantined": quarantined,
        "bad_injected": bad_injected,
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
        **extra,
    }
    FIGURES.append(row)
    problems = list(failures)
    if lost is not None:
        problems += check_lost(lost)
    if duplicates is not None:
        problems += check_duplicates(duplicates)
    if redelivered is not None:
        problems += check_redelivered(redelivered, redelivery_promised_zero)
    if quarantined is not None or bad_injected is not None:
        problems += check_quarantined(quarantined or 0, bad_injected or 0)
    if recovery_s is not None:
        problems += check_recovery(recovery_s)
    assert not problems, f"case {case}: " + "; ".join(problems)
    return row


def consumer_figures(
    rig: Rig, topic: str, group: str, sent: Sent, bad_injected: int = 0, earlier_logs: int = 0
) -> dict:
    """The figures of a consumer case, for ``record(case, title, **figures)``."""
    return {
        "lost": lost_messages(sent.acked, landed_messages(rig, topic)),
        "failed_deliveries": len(sent.failed),
        "redelivered": consume_redelivered(rig, topic, group, earlier_logs),
        "quarantined": quarantined_events(rig, topic),
        "bad_injected": bad_injected,
    }
