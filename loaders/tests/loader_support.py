"""Helpers for the loader tests: run loaders as real subprocesses, query raw, wait with a bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from runtime import db
from runtime.kafka import client_config
from runtime.settings import PROJECT_ROOT, Settings

FIXTURES = Path(__file__).parent / "fixtures"


def loader_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a loader subprocess that reaches exactly the services and database of ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env["TELEMED_STATE_DIR"] = str(settings.state_dir)
    if settings.pg_embedded:
        env["TELEMED_PG_PORT"] = str(settings.pg_port)
    else:
        env.update(settings.libpq_env())
        env.update(settings.role_password_env())
    env["PGDATABASE"] = settings.pg_database
    if settings.kafka_embedded:
        env["TELEMED_KAFKA_PORT"] = settings.kafka_bootstrap_servers.rsplit(":", 1)[1]
    else:
        env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    if settings.video_api_embedded:
        env["TELEMED_VIDEO_API_PORT"] = str(settings.video_api_port)
    else:
        env["TELEMED_VIDEO_API_URL"] = settings.video_api_url
    env.update(extra)
    return env


def run_loader(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loaders", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_loader(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen:
    """A loader in the background, its output in ``log_path`` (read it with ``log_path.read_text()``)."""
    out = log_path.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "loaders", *args], env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT
    )


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM, then wait (bounded); a process that does not stop is killed and the test fails."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process {proc.pid} did not stop within {timeout}s of SIGTERM") from None


def query(settings: Settings, statement: str, params: tuple = ()) -> list[tuple]:
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(settings: Settings, statement: str, params: tuple = ()):
    return query(settings, statement, params)[0][0]


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - a service may be restarting; keep polling until the bound
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


def valid_events(count: int, tag: str | None = None) -> list[bytes]:
    """``count`` valid, distinct events as JSONL lines (bytes), spread over appointments."""
    tag = tag or uuid.uuid4().hex[:8]
    lines = []
    for i in range(count):
        event = {
            "schema_version": 1,
            "event_id": f"{tag}-{i:07d}",
            "event_type": "started",
            "event_ts": "2026-10-01T09:00:00Z",
            "appointment_id": f"APT-{i // 3:08d}",
            "device_type": "Tablet",
            "wait_time_minutes": i % 60,
        }
        lines.append(json.dumps(event).encode())
    return lines


def valid_form(feedback_id: str, appointment_id: str = "APT-00000001", **fields) -> dict:
    """A valid feedback form (all ratings 4), with ``fields`` set over it."""
    form = {
        "schema_version": 1,
        "feedback_id": feedback_id,
        "appointment_id": appointment_id,
        "submitted_at": "2026-10-02T10:00:00Z",
        "provider_rating": 4,
        "ease_of_use_rating": 4,
        "audio_quality_rating": 4,
        "video_quality_rating": 4,
        "overall_satisfaction": 4,
        "would_recommend": True,
        "comments": None,
    }
    return {**form, **fields}


def send(settings: Settings, topic: str, values: list[bytes]) -> None:
    """Each value as one message (keys spread over five), every one acknowledged by the broker."""
    producer = Producer(client_config(settings))
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=f"k{i % 5}".encode())
    assert producer.flush(30) == 0


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def new_topic() -> str:
    return f"test.events.{uuid.uuid4().hex[:10]}"
