"""Cases 4, 5 and 6: Postgres crashes, drops the loader's connections, or freezes, during a load.

A paced producer keeps events flowing the whole time, so every fault lands in the middle of a load.
The consumer must retry with bounded backoff, never exit, and end with every acknowledged event once.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid

from loaders.tests.reliability.harness import (
    LOADER_APP,
    PacedProducer,
    figures,
    record,
    server_pids,
    stop,
    wait_for,
)

RECOVERY_TARGET_S = 60


def flowing(rig, name: str):
    topic, group, tag = f"rel.{name}.{uuid.uuid4().hex[:6]}", f"rel-{name}", f"{name[0]}{uuid.uuid4().hex[:6]}"
    rig.produce(topic, [])
    producer = PacedProducer(rig, topic, tag, rig.scale.rate)
    proc, log = rig.consumer(topic, group, "--batch-size", "500", "--batch-ms", "100")
    producer.start()
    wait_for(lambda: rig.loaded(topic) > rig.scale.rate // 2, 60, "the consumer to load events")
    return topic, group, tag, producer, proc, log


def committed_since(rig, topic: str, group: str, before: int) -> bool:
    return sum(rig.stored_offsets(topic, group).values()) > before


def finish(rig, case: int, title: str, topic: str, tag: str, producer, proc, log, recovery_s: float, **extra):
    acked = producer.finish()
    wait_for(lambda: rig.loaded(topic) >= len(acked), 90, "every acknowledged event in raw")
    assert proc.poll() is None, "the consumer must ride out the fault:\n" + log.read_text()[-3000:]
    stop(proc, log)
    assert "retry" in log.read_text(), "the retries must be logged"
    record(case, title, figures(rig, topic, [tag], len(acked), len(acked)), 0, recovery_s, **extra)
    assert recovery_s <= RECOVERY_TARGET_S


def test_case_04_postgres_stopped_hard_then_started(rig):
    rig = rig.on("rel_faults")
    topic, group, tag, producer, proc, log = flowing(rig, "pgcrash")
    down_s = random.uniform(*rig.scale.outage_s)
    try:
        rig.postgres.stop(mode="immediate")  # a crash: no checkpoint, clients cut off
        time.sleep(down_s)
        assert proc.poll() is None, "the consumer must not exit while Postgres is down:\n" + log.read_text()[-3000:]
        rig.postgres.start()
        back = time.monotonic()
        before = wait_for(lambda: sum(rig.stored_offsets(topic, group).values()) + 1, 30, "Postgres to answer") - 1
        wait_for(lambda: committed_since(rig, topic, group, before), 90, "a batch committed after the restart")
        recovery = time.monotonic() - back
    finally:
        if not rig.postgres.pid():
            rig.postgres.start()
    finish(rig, 4, f"Postgres crashed for {down_s:.0f}s mid-load", topic, tag, producer, proc, log, recovery,
           down_s=round(down_s, 1))  # fmt: skip


def test_case_05_loader_connections_terminated_repeatedly(rig):
    rig = rig.on("rel_faults")
    topic, group, tag, producer, proc, log = flowing(rig, "terminate")
    terminated = 0
    until = time.monotonic() + rig.scale.terminate_s
    while time.monotonic() < until:
        terminated += rig.scalar(
            "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity"
            " where application_name = %s and datname = current_database()",
            (LOADER_APP,),
        )
        time.sleep(0.3)
    assert terminated > 0, "no loader connection was caught"
    end = time.monotonic()
    before = sum(rig.stored_offsets(topic, group).values())
    wait_for(lambda: committed_since(rig, topic, group, before), 90, "a batch committed after the terminations")
    finish(rig, 5, f"loader connections terminated x{terminated}", topic, tag, producer, proc, log,
           time.monotonic() - end, terminated=terminated)  # fmt: skip


def test_case_06_postgres_paused_and_resumed(rig):
    """The whole server frozen (SIGSTOP of the postmaster and every process it forked), then thawed."""
    rig = rig.on("rel_faults")
    scale = rig.scale
    topic, _group, tag, producer, proc, log = flowing(rig, "pause")
    frozen: list[int] = []
    try:
        for _ in range(scale.pauses):
            # The postmaster first: stopped, it neither forks new backends nor reacts to its children stopping.
            postmaster = rig.postgres.pid()
            os.kill(postmaster, signal.SIGSTOP)
            frozen = [postmaster]
            for pid in server_pids(rig.postgres)[1:]:
                with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
            time.sleep(scale.pause_s)
            for pid in reversed(frozen):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            frozen = []
            assert proc.poll() is None, "the consumer must wait out the pause:\n" + log.read_text()[-3000:]
            time.sleep(scale.pause_every_s - scale.pause_s)
        last_pause_end = time.monotonic() - (scale.pause_every_s - scale.pause_s)
        acked = len(producer.acked)
        wait_for(lambda: rig.loaded(topic) >= acked, 60, "lag back to 0 after the last pause")
        recovery = time.monotonic() - last_pause_end
    finally:
        for pid in reversed(frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    # A frozen server raises no error, so the loader needs no retry: the log check does not apply here.
    acked_ids = producer.finish()
    wait_for(lambda: rig.loaded(topic) >= len(acked_ids), 90, "every acknowledged event in raw")
    assert proc.poll() is None, "the consumer must ride out the pauses:\n" + log.read_text()[-3000:]
    stop(proc, log)
    title = f"Postgres paused {scale.pause_s:.0f}s every {scale.pause_every_s:.0f}s x{scale.pauses}"
    record(6, title, figures(rig, topic, [tag], len(acked_ids), len(acked_ids)), 0, recovery)
    assert recovery <= RECOVERY_TARGET_S
