"""The DAG's drain step in the project's environment: it drains the topic, unless a consumer follows it
already (the ingest service), which it tells by that consumer's running row in raw.load_runs."""

from __future__ import annotations

import subprocess
import sys

from loaders.tests.loader_support import (
    loader_env,
    run_loader,
    scalar,
    start_loader,
    stop,
    valid_events,
    wait_for,
    write_jsonl,
)
from orchestration.steps import SKIPPED
from runtime.settings import PROJECT_ROOT


def drain(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestration.steps", "drain-events", "--idle-seconds", "2"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_drain_is_skipped_while_a_follower_consumes_the_topic(settings, kafka_topic, tmp_path):
    env = loader_env(settings, TELEMED_TOPIC=kafka_topic, TELEMED_CONSUMER_GROUP=f"{kafka_topic}.loader")
    events = write_jsonl(tmp_path / "events.jsonl", valid_events(20))
    done = run_loader(env, "produce", "--from-jsonl", str(events))
    assert done.returncode == 0, done.stderr[-2000:]

    follower = start_loader(env, tmp_path / "follower.log", "consume", "--group", f"{kafka_topic}.service")
    try:
        wait_for(
            lambda: scalar(
                settings,
                "select count(*) from raw.load_runs where loader = 'consume' and status = 'running'"
                " and details->>'mode' = 'follow' and details->>'topic' = %s",
                (kafka_topic,),
            ),
            timeout=60,
            what="the follower's running load run",
        )
        skipped = drain(env)
        assert skipped.returncode == SKIPPED, skipped.stdout + skipped.stderr
        assert f"the ingest service consumes {kafka_topic}" in skipped.stdout
    finally:
        assert stop(follower) == 0, (tmp_path / "follower.log").read_text()[-3000:]

    drained = drain(env)
    assert drained.returncode == 0, drained.stdout[-2000:] + drained.stderr[-3000:]
    runs = scalar(
        settings,
        "select count(*) from raw.load_runs where loader = 'consume' and status = 'succeeded'"
        " and details->>'mode' = 'drain' and details->>'topic' = %s",
        (kafka_topic,),
    )
    assert runs == 1
