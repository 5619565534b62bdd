"""``python -m loaders serve`` (``make serve``): ingest as a service, until SIGTERM or Ctrl-C.

One parent process supervises two children, each a ``python -m loaders serve --child ...`` process:

- ``consume``: the Kafka consumer in follow mode (loaders/consume.py), exactly once as ever;
- ``feedback``: a watcher that looks at the landing every ``--poll-seconds`` and runs the feedback
  loader (loaders/feedback.py) when it changed (a file added, replaced, grown or removed; judged by
  name, size and modification time, so a quiet folder costs a directory walk, not a read of every file;
  a bucket's prefix is polled the same way, by key, size and ETag, a listing and no fetch).

A child that dies is started again after a backoff (1 s, doubling, at most 30 s); when it dies again
after ``--max-restarts`` restarts within ``--restart-window`` seconds the parent stops the other child and
exits 1, naming the child, its exit code and its restarts. A child exits on its own when its parent is gone (it
never outlives a killed parent). SIGTERM or SIGINT (Ctrl-C) to the parent is passed to the children,
which finish the batch in hand and close their runs; the parent waits up to ``--stop-timeout`` seconds,
kills what is left (exit 1) and exits 0 when every child stopped cleanly.

Metrics (loaders/metrics.py) are served on http://127.0.0.1:<port>/metrics, port ``--metrics-port`` or
TELEMED_METRICS_PORT (9108): consumer lag per partition, rows loaded, rejected and skipped as
duplicates, batch commit latency, the last commit and the seconds since, retries, and the children's
state and restarts. Loopback only: put a proxy in front to expose it further.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from prometheus_client import start_http_server
from prometheus_client.multiprocess import mark_process_dead

from loaders.consume import DEFAULT_GROUP, ConsumeOptions, EventConsumer, run_and_report
from loaders.feedback import FeedbackLoader
from loaders.lag import LagProbe
from loaders.landing import LandingUnavailable, open_landing
from loaders.metrics import (
    DEFAULT_METRICS_PORT,
    METRICS_PORT_ENV,
    MULTIPROC_ENV,
    LoaderMetrics,
    ServiceCollector,
    service_registry,
)
from loaders.retry import Backoff, RetryGaveUp
from runtime import db, objectstore
from runtime.settings import LOADER_ROLE, PROJECT_ROOT, Settings, SettingsError

log = logging.getLogger(__name__)

CHILDREN = ("consume", "feedback")
FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0


@dataclass
class ServeOptions:
    topic: str
    group: str
    landing: str  # a folder (resolved) or s3://bucket/prefix/
    metrics_port: int
    poll_seconds: float = 5.0
    batch_size: int = 50000
    batch_ms: int = 1000
    max_retry_seconds: float = 300.0
    max_restarts: int = 5
    restart_window: float = 600.0
    stop_timeout: float = 60.0

    def child_args(self, name: str) -> list[str]:
        """The command line of a child: the same options, resolved, so both see one configuration."""
        args = ["--child", name, "--topic", self.topic, "--group", self.group, "--landing", self.landing]
        args += ["--poll-seconds", str(self.poll_seconds), "--batch-size", str(self.batch_size)]
        args += ["--batch-ms", str(self.batch_ms), "--max-retry-seconds", str(self.max_retry_seconds)]
        return args


# --------------------------------------------------------------------------- the supervisor (parent)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    recent: deque = field(default_factory=deque)  # monotonic times of recent restarts
    start_at: float | None = None  # a pending restart, after its backoff
    last_code: int | None = None


class Supervisor:
    """Starts the children, restarts one that dies (with backoff, within a limit), stops them on request."""

    def __init__(self, options: ServeOptions, env: dict[str, str], on_exit=None):
        self.options = options
        self.env = env
        self.on_exit = on_exit  # called with the pid of a child that ended (multiprocess bookkeeping)
        self.children = [
            Child(name, [sys.executable, "-m", "loaders", "serve", *options.child_args(name)]) for name in CHILDREN
        ]
        self._lock = threading.Lock()

    def _spawn(self, child: Child) -> None:
        # A session of its own: Ctrl-C reaches the parent only, which passes SIGTERM on (one way to stop).
        child.proc = subprocess.Popen(child.argv, env=self.env, cwd=PROJECT_ROOT, start_new_session=True)
        child.start_at = None
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    def start(self) -> None:
        with self._lock:
            for child in self.children:
                self._spawn(child)

    def check(self) -> str | None:
        """Restart children that died (once their backoff is over); a message when one died too often."""
        now = time.monotonic()
        with self._lock:
            for child in self.children:
                if child.proc is not None:
                    code = child.proc.poll()
                    if code is None:
                        continue
                    self._ended(child, code)
                    while child.recent and now - child.recent[0] > self.options.restart_window:
                        child.recent.popleft()
                    if len(child.recent) >= self.options.max_restarts:
                        return (
                            f"{child.name} exited with code {code} and was restarted {len(child.recent)} times in"
                            f" {self.options.restart_window:.0f}s (--max-restarts {self.options.max_restarts}):"
                            " giving up; its messages above say why"
                        )
                    delay = min(MAX_RESTART_DELAY_S, FIRST_RESTART_DELAY_S * 2 ** len(child.recent))
                    child.start_at = now + delay
                    log.error("%s exited with code %d; restarting it in %.0fs", child.name, code, delay)
                if child.start_at is not None and now >= child.start_at:
                    child.restarts += 1
                    child.recent.append(now)
                    self._spawn(child)
        return None

    def _ended(self, child: Child, code: int) -> None:
        child.last_code = code
        if self.on_exit is not None:
            self.on_exit(child.proc.pid)
        child.proc = None

    def stop(self, timeout: float) -> bool:
        """SIGTERM to every child, then wait; True when each stopped by itself with exit code 0."""
        with self._lock:
            running = [child for child in self.children if child.proc is not None]
            for child in self.children:
                child.start_at = None
            for child in running:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
            clean = True
            deadline = time.monotonic() + timeout
            for child in running:
                try:
                    code = child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("%s did not stop within %.0fs of SIGTERM: killing it", child.name, timeout)
                    child.proc.kill()
                    code = child.proc.wait()
                    clean = False
                if code != 0:
                    clean = False
                    log.error("%s stopped with exit code %d", child.name, code)
                self._ended(child, code)
        return clean

    def states(self) -> list[tuple[str, bool, int]]:
        with self._lock:
            return [(child.name, child.proc is not None, child.restarts) for child in self.children]


class LagReader:
    """The consumer's lag for the metrics: offsets stored in Postgres, end offsets from the broker."""

    def __init__(self, settings: Settings, group: str, topic: str):
        self.settings, self.group, self.topic = settings, group, topic
        self.probe = LagProbe(settings, timeout=3.0)
        self._conn = None

    def __call__(self) -> tuple[str, str, list[tuple[int, int, int, int]]]:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(self.settings, role=LOADER_ROLE)
                self._conn.autocommit = True
            with self._conn.cursor() as cur:
                cur.execute(
                    "select partition, next_offset, topic_id from raw.kafka_offsets"
                    " where consumer_group = %s and topic = %s",
                    (self.group, self.topic),
                )
                stored = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        except psycopg2.Error:
            self.close_connection()
            raise
        measured = self.probe.measure(self.group, self.topic, stored)
        if measured.missing:
            raise RuntimeError(measured.missing)
        return self.group, self.topic, [(p.partition, p.end_offset, p.next_offset, p.lag) for p in measured.partitions]

    def close_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self.close_connection()
        self.probe.close()


def serve(options: ServeOptions, settings: Settings) -> int:
    multiproc_dir = tempfile.mkdtemp(prefix="telemed-metrics-")
    env = {**os.environ, MULTIPROC_ENV: multiproc_dir}
    supervisor = Supervisor(options, env, on_exit=lambda pid: mark_process_dead(pid, multiproc_dir))
    lag = LagReader(settings, options.group, options.topic)
    collector = ServiceCollector(multiproc_dir, lag, supervisor.states)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        if not stop.is_set():
            log.info("%s: stopping the children (each finishes the batch in hand)", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = None
    try:
        try:
            registry = service_registry(collector)
            server, _thread = start_http_server(options.metrics_port, addr="127.0.0.1", registry=registry)
        except OSError as exc:
            print(
                f"error: cannot serve metrics on 127.0.0.1:{options.metrics_port} ({exc.strerror}): choose another"
                f" port with --metrics-port or {METRICS_PORT_ENV}",
                file=sys.stderr,
            )
            return 2
        port = server.server_port
        supervisor.start()
        log.info(
            "serving: topic %s (group %s), landing folder %s; metrics on http://127.0.0.1:%d/metrics",
            options.topic,
            options.group,
            options.landing,
            port,
        )
        failure = None
        while not stop.wait(0.5):
            failure = supervisor.check()
            if failure is not None:
                log.error("%s", failure)
                break
        clean = supervisor.stop(options.stop_timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.shutdown()
            server.server_close()
        lag.close()
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    if failure is not None:
        print(f"serve: error: {failure}", file=sys.stderr)
        return 1
    print(f"serve: stopped{'' if clean else ' (a child did not stop cleanly: see above)'}")
    return 0 if clean else 1


# --------------------------------------------------------------------------- the children


def _stop_when_orphaned() -> None:
    """A child ends like on SIGTERM when its parent is gone (killed, so it could not pass the signal on)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        log.warning("the serve process %d is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def run_consumer(options: ServeOptions, settings: Settings) -> int:
    metrics = LoaderMetrics("consume")
    metrics.count_retries()
    consume_options = ConsumeOptions(
        group=options.group,
        topic=options.topic,
        batch_size=options.batch_size,
        batch_ms=options.batch_ms,
        max_retry_seconds=options.max_retry_seconds,
    )
    consumer = EventConsumer(settings, consume_options)
    consumer.writer.on_commit = metrics.batch_committed
    consumer.on_receive = metrics.messages_received
    _stop_when_orphaned()
    return run_and_report(consumer, options.group, "consume: error", ok=("succeeded",))


def watch_feedback(options: ServeOptions, settings: Settings) -> int:
    metrics = LoaderMetrics("feedback")
    metrics.count_retries()
    stop = threading.Event()
    current: list[FeedbackLoader] = []  # the loader of the run in progress, if any
    # One source for the watcher's polls and every run: a bucket's client (and its connections) is reused.
    # Its backoff bounds a store that stays unreachable, during a poll or a run.
    polling = Backoff(options.max_retry_seconds)
    source = open_landing(options.landing, polling)

    def on_signal(_signum, _frame) -> None:
        first = not stop.is_set()
        stop.set()
        polling.request_stop()
        if current and first:
            # As `python -m loaders feedback` on SIGTERM: the batches the writer holds commit, the run is
            # closed as interrupted, the files not yet written are read again by the next run.
            current[0].backoff.request_stop()
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    _stop_when_orphaned()
    log.info("watching %s every %.1fs", options.landing, options.poll_seconds)
    loaded_signature = None
    try:
        while not stop.is_set():
            try:
                signature = source.signature() if source.exists() else ""
            except (RetryGaveUp, LandingUnavailable) as exc:
                if stop.is_set():
                    return 0
                print(f"feedback: error: {exc}", file=sys.stderr)
                return 1
            if signature != loaded_signature:
                loader = FeedbackLoader(settings, source, max_retry_seconds=options.max_retry_seconds)
                loader.on_commit = metrics.batch_committed
                try:
                    current.append(loader)
                    status, error = loader.run_once()
                except KeyboardInterrupt:
                    status, error = "interrupted", "interrupted by a signal"
                finally:
                    current.clear()
                f, c = loader.files, loader.counts
                if f["seen"] - f["skipped"] or status != "succeeded":
                    log.info(
                        "feedback %s: files %d new (%d failed), forms loaded %d, rejected %d, duplicates %d (run %s)",
                        status,
                        f["loaded"] + f["failed"],
                        f["failed"],
                        c.loaded,
                        c.rejected,
                        c.duplicates,
                        loader.run.run_id,
                    )
                if status == "failed":
                    print(f"feedback: error: {error}", file=sys.stderr)
                    return 1
                if status == "succeeded":
                    loaded_signature = signature
            stop.wait(options.poll_seconds)
        return 0
    finally:
        source.close()


# --------------------------------------------------------------------------- command line


def _default_port() -> int:
    raw = os.environ.get(METRICS_PORT_ENV, "")
    if not raw:
        return DEFAULT_METRICS_PORT
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{METRICS_PORT_ENV} must be a port number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"{METRICS_PORT_ENV} must be a port number, got {raw!r}")
    return port


def _landing(value: str) -> str:
    """The landing as both children and every log line name it: a resolved folder or s3://bucket/prefix/."""
    where = objectstore.parse_landing(value)
    return str(where) if isinstance(where, Path) else where.url


def parse_args(argv: list[str] | None, settings: Settings) -> tuple[ServeOptions, str | None]:
    parser = argparse.ArgumentParser(prog="python -m loaders serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", default=settings.kafka_topic, help="topic (default TELEMED_TOPIC or the events')")
    parser.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group id (default {DEFAULT_GROUP})")
    parser.add_argument(
        "--landing",
        default=settings.landing_url,
        help="feedback landing folder or s3://bucket/prefix/ (default TELEMED_LANDING_URL or the landing folder)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_default_port(),
        help=f"metrics on 127.0.0.1:PORT/metrics (default {METRICS_PORT_ENV} or {DEFAULT_METRICS_PORT}; 0: any free)",
    )
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="how often the landing is looked at")
    parser.add_argument("--batch-size", type=int, default=50000, help="consumer: messages per transaction, at most")
    parser.add_argument("--batch-ms", type=int, default=1000, help="consumer: milliseconds a batch may wait to fill")
    parser.add_argument(
        "--max-retry-seconds",
        type=float,
        default=300.0,
        help="a child ends (and is restarted) when Postgres stays unreachable this long (default 300)",
    )
    parser.add_argument("--max-restarts", type=int, default=5, help="restarts of one child allowed in the window")
    parser.add_argument("--restart-window", type=float, default=600.0, help="seconds the restart limit counts over")
    parser.add_argument("--stop-timeout", type=float, default=60.0, help="seconds the children get to stop")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    options = ServeOptions(
        topic=args.topic,
        group=args.group,
        landing=_landing(args.landing),
        metrics_port=args.metrics_port,
        poll_seconds=args.poll_seconds,
        batch_size=args.batch_size,
        batch_ms=args.batch_ms,
        max_retry_seconds=args.max_retry_seconds,
        max_restarts=args.max_restarts,
        restart_window=args.restart_window,
        stop_timeout=args.stop_timeout,
    )
    return options, args.child


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
        options, child = parse_args(argv, settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if child == "consume":
        return run_consumer(options, settings)
    if child == "feedback":
        return watch_feedback(options, settings)
    return serve(options, settings)
