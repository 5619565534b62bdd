"""End-to-end latency: an appointment event produced while the ingest service runs, until it is visible
in marts.fact_appointment through the scheduled dbt run.

Setup (not timed): a demo-scale world (``python -m loaders generate``, 50k appointments by default) in a
database of its own, its events produced to a fresh topic, the reference loader, then the ingest
service (``python -m loaders serve``, as shipped: default batch and poll settings) drains the backlog
and the feedback files, and a first ``dbt build`` builds every model.

Measured: a scheduler runs ``dbt run --selector hourly`` on a near-real-time schedule (a run starts
every ``TELEMED_BENCH_LATENCY_INTERVAL`` seconds, 30 by default, or at once when the previous one took
longer), while a producer sends marked ``scheduled`` events of new appointments at a steady rate
(``TELEMED_BENCH_LATENCY_RATE`` per second, 0.5; for ``TELEMED_BENCH_LATENCY_SECONDS``, 300). A poller
looks for the marks four times a second, in raw.appointment_events (the ingest's share) and in
marts.fact_appointment (end to end). Reported: p50, p90, p95 and max of both, with the sample count,
the scheduled runs' mean duration (the reference the latencies are compared with, by time) and how
many runs there were. Target: end-to-end p95 under 60 s.

What bounds it: an event waits for the consumer's batch (up to 1 s), then for the next scheduled run to
start (up to the interval), then for that run to finish; so p95 is about the interval plus one run.

Scale: ``TELEMED_BENCH_LATENCY_SCALE`` (default 50000 appointments, the demo's).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg2
from confluent_kafka import Producer

from benchmarks.dbt_build import PROJECT_DIR
from benchmarks.harness import BenchContext, Result
from runtime import db
from runtime.dbt_cli import command as dbt_command
from runtime.envcmd import child_env
from runtime.kafka import client_config
from runtime.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 0.25


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(f"TELEMED_BENCH_LATENCY_{name}", default))


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _run(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _drained(settings: Settings, topic: str, delivered: int) -> bool:
    """Every message of the topic loaded (the offsets stored with the rows add up to what was delivered to
    the fresh topic; the metrics' lag cannot say it, the embedded broker reports end offsets up to a
    producer batch low) and the feedback folder loaded once."""
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select coalesce(sum(next_offset), 0) from raw.kafka_offsets where topic = %s", (topic,))
            (stored,) = cur.fetchone()
            cur.execute(
                "select count(*) from raw.load_runs where loader = 'feedback' and status = 'succeeded'"
                " and (details->'files'->>'loaded')::int > 0"
            )
            (feedback_runs,) = cur.fetchone()
    finally:
        conn.close()
    return stored == delivered and feedback_runs > 0


class Scheduler(threading.Thread):
    """``dbt run --selector hourly`` every ``interval`` seconds (at once after a longer run), until stopped."""

    def __init__(self, env: dict[str, str], interval: float, command: list[str]):
        super().__init__(name="dbt-scheduler", daemon=True)
        self.env, self.interval, self.command = env, interval, command
        self.stopping = threading.Event()
        self.durations: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            done = subprocess.run(self.command, env=self.env, cwd=PROJECT_DIR, capture_output=True, text=True)
            if done.returncode != 0:
                self.error = f"{' '.join(self.command[1:4])} failed:\n{done.stdout[-3000:]}"
                return
            self.durations.append(time.monotonic() - started)
            self.stopping.wait(max(0.0, started + self.interval - time.monotonic()))


def _marked_event(appointment_id: str, provider_id: str, patient_id: str) -> bytes:
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "event_type": "scheduled",
        "event_ts": "2026-10-31T12:00:00Z",
        "appointment_id": appointment_id,
        "patient_id": patient_id,
        "provider_id": provider_id,
        "appointment_type": "follow_up",
        "scheduled_for": "2026-11-09T15:00:00Z",
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _seen(settings: Settings, table: str, column: str, ids: list[str]) -> set[str]:
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"select {column} from {table} where {column} = any(%s)", (ids,))
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def measure(settings: Settings, work: Path, scale: int) -> dict:
    duration = _setting("SECONDS", 300)
    rate = _setting("RATE", 0.5)
    interval = _setting("INTERVAL", 30)
    env = {**os.environ, **child_env(settings), "DBT_TARGET_PATH": str(work / "dbt-target")}
    env["DBT_LOG_PATH"] = str(work / "dbt-logs")
    env.pop("TELEMED_AS_OF", None)  # the warehouse's own clock: a live run
    py = sys.executable
    dbt = dbt_command()
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    landing = work / "landing"
    setup_started = time.monotonic()
    _run(
        env,
        py,
        "-m",
        "loaders",
        "generate",
        "--scale",
        str(scale),
        "--out",
        str(work / "gen"),
        "--landing",
        str(landing),
    )
    produced = _run(env, py, "-m", "loaders", "produce", "--from-jsonl", str(work / "gen" / "events"), "--topic", topic)
    delivered = int(re.search(r"(\d+) delivered", produced.stdout).group(1))
    _run(env, py, "-m", "loaders", "reference")
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("select provider_id from clinic_ops.providers where active order by provider_id limit 1")
        (provider_id,) = cur.fetchone()
        cur.execute("select patient_id from clinic_ops.patients order by patient_id limit 1")
        (patient_id,) = cur.fetchone()

    port = _free_port()
    service_log = (work / "serve.log").open("w")
    service = subprocess.Popen(
        [py, "-m", "loaders", "serve", "--topic", topic, "--group", f"{topic}.serve", "--landing", str(landing),
         "--metrics-port", str(port)],
        env=env, cwd=PROJECT_DIR, stdout=service_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    scheduler = None
    try:
        _wait(lambda: _drained(settings, topic, delivered), 900, "the ingest service to load the backlog", service)
        _run(env, *dbt, "seed", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR))
        _run(env, *dbt, "build", "--exclude", "tag:monitor", "--project-dir", str(PROJECT_DIR),
             "--profiles-dir", str(PROJECT_DIR))  # fmt: skip
        setup_s = time.monotonic() - setup_started

        command = [*dbt, "run", "--selector", "hourly", "--project-dir", str(PROJECT_DIR)]
        command += ["--profiles-dir", str(PROJECT_DIR)]
        scheduler = Scheduler(env, interval, command)
        scheduler.start()
        marks = _produce_and_watch(settings, topic, duration, rate, interval, provider_id, patient_id, scheduler)
    finally:
        if scheduler is not None:
            scheduler.stopping.set()
            scheduler.join(timeout=600)
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=120)
        except subprocess.TimeoutExpired:
            service.kill()
        service_log.close()
    if scheduler.error:
        raise RuntimeError(scheduler.error)
    return {**marks, "setup_s": setup_s, "runs": scheduler.durations, "interval": interval, "rate": rate}


def _produce_and_watch(
    settings: Settings,
    topic: str,
    duration: float,
    rate: float,
    interval: float,
    provider_id: str,
    patient_id: str,
    scheduler: Scheduler,
) -> dict:
    tag = uuid.uuid4().int % 10**5
    count = max(1, int(duration * rate))
    ids = [f"APT-9{tag:05d}{i:06d}" for i in range(count)]
    sent: dict[str, float] = {}
    in_raw: dict[str, float] = {}
    in_mart: dict[str, float] = {}
    producer = Producer(client_config(settings, **{"linger.ms": 0, "acks": "all"}))
    lock = threading.Lock()

    def produce() -> None:
        start = time.monotonic()
        for i, appointment_id in enumerate(ids):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            with lock:
                sent[appointment_id] = time.monotonic()
            producer.produce(topic, value=_marked_event(appointment_id, provider_id, patient_id),
                             key=appointment_id.encode())  # fmt: skip
            producer.flush(30)

    thread = threading.Thread(target=produce, name="marked-producer", daemon=True)
    thread.start()
    # Everything should be visible within a few intervals after the last event; the bound is generous.
    deadline = time.monotonic() + duration + 10 * interval + 300
    while time.monotonic() < deadline and len(in_mart) < count:
        if scheduler.error:
            break
        with lock:
            produced = list(sent)
        waiting = [a for a in produced if a not in in_raw]
        now = time.monotonic()
        for found in _seen(settings, "raw.appointment_events", "appointment_id", waiting) if waiting else ():
            in_raw[found] = now
        waiting = [a for a in produced if a not in in_mart]
        now = time.monotonic()
        for found in _seen(settings, "marts.fact_appointment", "appointment_id", waiting) if waiting else ():
            in_mart[found] = now
        time.sleep(POLL_S)
    thread.join(timeout=60)
    if len(in_mart) < count:
        raise RuntimeError(f"only {len(in_mart)} of {count} marked events became visible in marts.fact_appointment")
    return {
        "raw": [in_raw[a] - sent[a] for a in ids],
        "mart": [in_mart[a] - sent[a] for a in ids],
    }


def _wait(check, timeout: float, what: str, service: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"the ingest service exited with code {service.returncode} while waiting for {what}")
        try:
            if check():
                return
        except psycopg2.Error:
            pass  # a table the service creates is not there yet
        time.sleep(1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(ctx: BenchContext) -> list[Result]:
    scale = int(_setting("SCALE", 50000))
    with ctx.database("latency") as settings:
        found = measure(settings, ctx.work_dir / "latency", scale)
    runs, mart, raw = found["runs"], found["mart"], found["raw"]
    n = len(mart)
    mean_run = sum(runs) / len(runs)
    schedule = f"dbt run --selector hourly every {found['interval']:.0f}s"
    results = [
        Result(
            "latency_dbt_hourly_run",
            len(runs),
            mean_run,
            reference=None,
            note=f"mean of {len(runs)} scheduled runs ({min(runs):.1f}-{max(runs):.1f}s); {scale} appointments",
        )
    ]
    for label, share in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("max", 1.0)):
        note = f"{n} events at {found['rate']:g}/s, {schedule}"
        if label == "p95":
            note += "; target < 60s"
        results.append(
            Result(
                f"latency_e2e_{label}",
                n,
                percentile(mart, share),
                reference="latency_dbt_hourly_run",
                compare_by="seconds",
                note=note,
            )
        )
    for label, share in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
        results.append(
            Result(
                f"latency_raw_{label}",
                n,
                percentile(raw, share),
                reference=None,
                note="produce -> raw.appointment_events (the ingest service's share)",
            )
        )
    log.warning("latency bench setup (world, backlog, first build) took %.0fs", found["setup_s"])
    return results
