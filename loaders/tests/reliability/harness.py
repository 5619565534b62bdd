"""The reliability suite's rig: its own Postgres and broker, loaders as subprocesses, and the figures.

Every case ends with ``record(...)``, which computes the figures from what the database holds and
asserts the hard gates (lost = 0, dup_rows = 0, quarantined = the bad inputs injected). The figures:

- ``lost``: events the broker acknowledged that are not in raw;
- ``dup_rows``: rows beyond one per event_id (and per rejected topic/partition/offset);
- ``redelivered``: messages committed to Postgres more than once (the loaders' own ``rows_read`` summed
  over every run, minus the messages on the topic), so a re-read after a crash shows here;
- ``quarantined``: rows in the ``_rejected`` tables for the case;
- ``recovery_s``: from the end of the fault to the loader having caught up (or committed again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
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


SCALES = {
    "fast": Scale("fast", 4000, 20, 3, (5.0, 6.0), 4.0, 2, 2.0, 5.0, 400, 5, 1200),
    "soak": Scale("soak", 50_000, 60, 10, (5.0, 30.0), 30.0, 6, 10.0, 30.0, 1500, 5, 6000),
}


def current_scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "fast")
    if name not in SCALES:
        raise ValueError(f"RELIABILITY_SCALE must be one of {sorted(SCALES)}, got {name!r}")
    return SCALES[name]


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
    def produce(self, topic: str, messages: list[bytes], keys: list[bytes | None] | None = None) -> int:
        """Send ``messages`` in order; returns how many the broker acknowledged (all must be)."""
        ensure_topic(admin_client(self.settings), topic)
        acked = [0]

        def on_delivery(err, _msg):
            if err is None:
                acked[0] += 1

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
        assert acked[0] == len(messages)
        return acked[0]

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
        self.acked: set[str] = set()
        self.failed = 0
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
            if err is None:
                self.acked.add(msg.key().decode())
            else:
                self.failed += 1

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

    def finish(self) -> set[str]:
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


# ------------------------------------------------------------------------- figures and gates


def figures(rig: Rig, topic: str, tags: list[str], acked: int, expected_ids: int) -> dict:
    """lost, dup_rows, redelivered and quarantined for the events of ``tags`` on ``topic``."""
    like = [f"{tag}-%" for tag in tags]
    distinct, rows = rig.sql(
        "select count(distinct event_id), count(*) from raw.appointment_events where event_id like any(%s)", (like,)
    )[0]
    rejected, rejected_distinct = rig.sql(
        "select count(*), count(distinct (kafka_topic, kafka_partition, kafka_offset))"
        " from raw.appointment_events_rejected where kafka_topic = %s",
        (topic,),
    )[0]
    read = rig.scalar(
        "select coalesce(sum(rows_read), 0) from raw.load_runs where loader = 'consume' and details->>'topic' = %s",
        (topic,),
    )
    return {
        "lost": expected_ids - distinct,
        "dup_rows": (rows - distinct) + (rejected - rejected_distinct),
        "redelivered": int(read) - acked,
        "quarantined": rejected,
    }


def record(case: int, title: str, found: dict, bad_injected: int, recovery_s: float | None = None, **extra) -> dict:
    """Keep the case's figures for the summary, then assert the hard gates."""
    row = {
        "case": case,
        "title": title,
        **found,
        "bad_injected": bad_injected,
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
        **extra,
    }
    FIGURES.append(row)
    assert found["lost"] == 0, f"case {case}: {found['lost']} acknowledged events are not in raw"
    assert found["dup_rows"] == 0, f"case {case}: {found['dup_rows']} duplicate rows"
    assert found["quarantined"] == bad_injected, (
        f"case {case}: {found['quarantined']} quarantined, {bad_injected} bad inputs injected"
    )
    return row
