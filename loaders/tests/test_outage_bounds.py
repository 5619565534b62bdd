"""Outages are bounded (issue 15, case 6): a broker or Postgres that is not there ends a run after the retry
deadline with a message that says what to check, SIGINT/SIGTERM cut any retry wait short, and loader
sessions carry keepalives, tcp_user_timeout and statement_timeout.

These stop and freeze servers, so they run on a Postgres and a broker of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from loaders.tests.loader_support import (
    loader_env,
    new_topic,
    run_loader,
    scalar,
    send,
    start_loader,
    valid_events,
    wait_for,
)
from runtime import db
from runtime.settings import LOADER_ROLE, Settings
from testkit.fixtures import own_services as isolated_services

# Generous for a loaded 2-core machine: the deadline itself is 4 s.
DEADLINE_S = 4
BOUND_S = 40
SIGNAL_BOUND_S = 5


@pytest.fixture(scope="module")
def own_services():
    with isolated_services("test-outage-bounds", "telemed_outage_bounds") as servers:
        yield servers


@contextlib.contextmanager
def broker_stopped(broker):
    broker.stop()
    try:
        yield
    finally:
        broker.start()


@contextlib.contextmanager
def postgres_frozen(postgres):
    """SIGSTOP of the postmaster and every process it forked: connections hang instead of failing."""
    main = postgres.pid()
    frozen = [main]
    os.kill(main, signal.SIGSTOP)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == main:
                os.kill(int(stat.parent.name), signal.SIGSTOP)
                frozen.append(int(stat.parent.name))
    try:
        yield
    finally:
        for pid in reversed(frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def timed(env, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = run_loader(env, *args, timeout=BOUND_S * 3)
    return done, time.monotonic() - started


def assert_interrupted_promptly(env, tmp_path, wait_s: float, sig: int, *args: str) -> None:
    """Start a loader, let it wait out the outage ``wait_s``, signal it: it must end soon, non-zero, saying why."""
    code, seconds, output = interrupted_after(env, tmp_path, wait_s, sig, *args)
    assert code != 0, output[-3000:]
    assert "interrupted" in output, output[-3000:]
    assert seconds < SIGNAL_BOUND_S, f"the signal took {seconds:.1f}s to end the run"


def interrupted_after(env, tmp_path, wait_s: float, sig: int, *args: str) -> tuple[int, float, str]:
    log = tmp_path / "loader.log"
    proc = start_loader(env, log, *args)
    time.sleep(wait_s)
    assert proc.poll() is None, "the loader must still be waiting out the outage:\n" + log.read_text()[-3000:]
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the loader ignored the signal:\n" + log.read_text()[-3000:]) from None
    return code, time.monotonic() - sent, log.read_text()


def test_drain_with_the_broker_stopped_ends_at_the_deadline_and_says_what_to_check(own_services):
    settings, _, broker = own_services
    env = loader_env(settings)
    with broker_stopped(broker):
        done, seconds = timed(env, "consume", "--drain", "--topic", new_topic(), "--max-retry-seconds", str(DEADLINE_S))
    assert done.returncode != 0
    assert (
        f"cannot reach the broker at {settings.kafka_bootstrap_servers}: is it running? (make status / make up)"
        in done.stderr
    ), done.stderr[-3000:]
    assert seconds < BOUND_S, f"took {seconds:.0f}s"


def test_follow_mode_takes_the_same_deadline_as_an_option(own_services):
    settings, _, broker = own_services
    env = loader_env(settings)
    with broker_stopped(broker):
        done, seconds = timed(
            env, "consume", "--topic", new_topic(), "--broker-deadline", "--max-retry-seconds", str(DEADLINE_S)
        )
    assert done.returncode != 0
    assert f"cannot reach the broker at {settings.kafka_bootstrap_servers}" in done.stderr, done.stderr[-3000:]
    assert seconds < BOUND_S, f"took {seconds:.0f}s"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_consumer_waiting_for_the_broker(own_services, tmp_path, sig):
    settings, _, broker = own_services
    env = loader_env(settings)
    with broker_stopped(broker):
        assert_interrupted_promptly(env, tmp_path, 6, sig, "consume", "--drain", "--topic", new_topic())


def test_a_frozen_postgres_ends_drain_runs_at_the_deadline(own_services, tmp_path):
    settings, postgres, _ = own_services
    # Each attempt may take the connect timeout on a frozen server: 2 s here instead of the default 10 s.
    env = {**loader_env(settings), "PGCONNECT_TIMEOUT": "2"}
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "x.json").write_text(json.dumps({"schema_version": 1}))
    message = f"cannot reach Postgres at {settings.pg_host}:{settings.pg_port}: is it running? (make status / make up)"
    with postgres_frozen(postgres):
        for args in (
            ("consume", "--drain", "--topic", new_topic()),
            ("feedback", "--landing", str(landing)),
            ("reference",),
        ):
            done, seconds = timed(env, *args, "--max-retry-seconds", str(DEADLINE_S))
            assert done.returncode != 0, (args, done.stderr[-3000:])
            assert message in done.stderr, (args, done.stderr[-3000:])
            assert seconds < BOUND_S, f"{args[0]} took {seconds:.0f}s"


def test_a_server_frozen_under_a_connected_consumer_is_cut_off_by_the_watchdog(own_services, tmp_path):
    """A Postgres frozen while the consumer holds a connection: the kernel still acknowledges every packet,
    so neither keepalives nor tcp_user_timeout fire, and the server cannot enforce its statement_timeout.
    The session's watchdog severs the connection, the retries then run into the deadline, and the run ends
    with the outage message instead of waiting for the freeze to end; nothing is lost afterwards."""
    settings, postgres, _ = own_services
    topic, group = new_topic(), f"watchdog-{uuid.uuid4().hex[:6]}"
    env = {**loader_env(settings), "PGCONNECT_TIMEOUT": "2", "TELEMED_PG_WATCHDOG_S": "2"}
    follow = start_loader(
        env, tmp_path / "consume.log", "consume", "--topic", topic, "--group", group,
        "--max-retry-seconds", str(DEADLINE_S),
    )  # fmt: skip
    try:
        wait_for(lambda: loader_sessions(settings) > 0, 60, "the consumer's Postgres session")
        with postgres_frozen(postgres):
            send(settings, topic, valid_events(50))  # the next batch's write meets the frozen server
            try:
                status = follow.wait(timeout=BOUND_S)
            except subprocess.TimeoutExpired:
                status = None
        assert status is not None, "the consumer waited for the frozen server past the bound"
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    log = (tmp_path / "consume.log").read_text()
    assert status == 1, log[-3000:]
    assert f"cannot reach Postgres at {settings.pg_host}:{settings.pg_port}" in log, log[-3000:]
    done = run_loader(env, "consume", "--drain", "--idle-seconds", "2", "--topic", topic, "--group", group)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = scalar(settings, "select count(*) from raw.appointment_events where kafka_topic = %s", (topic,))
    assert loaded == 50


def loader_sessions(settings) -> int:
    return scalar(
        settings,
        "select count(*) from pg_stat_activity where application_name = 'telemed-elt'"
        " and datname = current_database() and pid <> pg_backend_pid()",
    )


def test_a_signal_ends_the_feedback_loader_waiting_for_postgres(own_services, tmp_path):
    settings, postgres, _ = own_services
    env = loader_env(settings)
    landing = tmp_path / "landing"
    landing.mkdir()
    postgres.stop(mode="immediate")
    try:
        assert_interrupted_promptly(env, tmp_path, 4, signal.SIGINT, "feedback", "--landing", str(landing))
    finally:
        postgres.start()


def test_loader_sessions_carry_keepalives_and_timeouts(own_services):
    settings, _, _ = own_services
    tuned = Settings.from_env(
        {
            "TELEMED_STATE_DIR": str(settings.state_dir),
            "TELEMED_PG_PORT": str(settings.pg_port),
            "PGDATABASE": settings.pg_database,
            "TELEMED_PG_STATEMENT_TIMEOUT_MS": "45000",
            "TELEMED_PG_TCP_USER_TIMEOUT_MS": "15000",
            "PGCONNECT_TIMEOUT": "3",
        }
    )
    for current, statement, user_ms, connect_s in ((settings, "5min", "30000", "10"), (tuned, "45s", "15000", "3")):
        conn = db.connect(current, role=LOADER_ROLE)
        try:
            with conn.cursor() as cur:
                cur.execute("show statement_timeout")
                assert cur.fetchone()[0] == statement
            params = conn.get_dsn_parameters()
            assert params.get("tcp_user_timeout") == user_ms
            assert params.get("keepalives") == "1" and int(params["keepalives_idle"]) > 0
            assert params.get("connect_timeout") == connect_s
        finally:
            conn.close()
