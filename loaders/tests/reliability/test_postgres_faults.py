"""Cases 4, 5, 6, 18 and 19: Postgres crashes, drops the loader's connections, or freezes (briefly, and
for longer than the retry deadline), during a load; the feedback and reference loaders through an outage.

A paced producer keeps events flowing the whole time, so every fault lands in the middle of a load.
The consumer must retry with bounded backoff, never exit, and end with every acknowledged event once.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
import uuid

from loaders.tests.reliability.harness import (
    LOADER_APP,
    PacedProducer,
    Sent,
    check_partial_files,
    consumer_figures,
    feedback_redelivered,
    record,
    server_pids,
    stop,
    wait_for,
)


def flowing(rig, name: str, *extra: str):
    topic, group, tag = f"rel.{name}.{uuid.uuid4().hex[:6]}", f"rel-{name}", f"{name[0]}{uuid.uuid4().hex[:6]}"
    rig.produce(topic, [])
    producer = PacedProducer(rig, topic, tag, rig.scale.rate)
    proc, log = rig.consumer(topic, group, "--batch-size", "500", "--batch-ms", "100", *extra)
    producer.start()
    wait_for(lambda: rig.loaded(topic) > rig.scale.rate // 2, 60, "the consumer to load events")
    return topic, group, producer, proc, log


def committed_since(rig, topic: str, group: str, before: int) -> bool:
    return sum(rig.stored_offsets(topic, group).values()) > before


def finish(rig, case: int, title: str, topic: str, group: str, producer, proc, log, recovery_s: float, **extra):
    acked = producer.finish()
    wait_for(lambda: rig.loaded(topic) >= len(acked), 90, "every acknowledged event in raw")
    assert proc.poll() is None, "the consumer must ride out the fault:\n" + log.read_text()[-3000:]
    stop(proc, log)
    assert "retry" in log.read_text(), "the retries must be logged"
    # A crash or a dropped connection may take a commit's answer with it: the batch is then written again
    # (redelivered, measured), and its rows must still be there once only.
    record(case, title, **consumer_figures(rig, topic, group, Sent(acked, producer.failed)), recovery_s=recovery_s,
           **extra)  # fmt: skip


def test_case_04_postgres_stopped_hard_then_started(rig):
    rig = rig.on("rel_faults")
    topic, group, producer, proc, log = flowing(rig, "pgcrash")
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
    finish(rig, 4, f"Postgres crashed for {down_s:.0f}s mid-load", topic, group, producer, proc, log, recovery,
           down_s=round(down_s, 1))  # fmt: skip


def test_case_05_loader_connections_terminated_repeatedly(rig):
    rig = rig.on("rel_faults")
    topic, group, producer, proc, log = flowing(rig, "terminate")
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
    finish(rig, 5, f"loader connections terminated x{terminated}", topic, group, producer, proc, log,
           time.monotonic() - end, terminated=terminated)  # fmt: skip


def test_case_06_postgres_paused_and_resumed(rig):
    """The whole server frozen (SIGSTOP of the postmaster and every process it forked), then thawed."""
    rig = rig.on("rel_faults")
    scale = rig.scale
    topic, group, producer, proc, log = flowing(rig, "pause")
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
    # A frozen server raises no error: nothing is retried, so nothing can be committed twice.
    record(6, title, **consumer_figures(rig, topic, group, Sent(acked_ids, producer.failed)),
           redelivery_promised_zero=True, recovery_s=recovery)  # fmt: skip


@contextlib.contextmanager
def frozen(postgres):
    """SIGSTOP of the postmaster first (so it forks nothing new), then of every process it forked."""
    postmaster = postgres.pid()
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    try:
        for pid in server_pids(postgres)[1:]:
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_case_18_postgres_frozen_longer_than_the_retry_deadline(rig):
    """The whole server frozen for five times the consumer's retry deadline.

    A frozen server refuses nothing: its kernel still accepts and acknowledges, so a loader already
    connected gets no error, retries nothing and waits the freeze out (its deadline counts failures, and
    there are none); it must not exit, and must lose and repeat nothing. At soak scale, a run that
    starts during the freeze cannot connect (connect timeout), and ends after its retry deadline with
    exit 1 and the message.
    """
    rig = rig.on("rel_faults")
    deadline_s = rig.scale.freeze_s / 5
    topic, group, producer, proc, log = flowing(rig, "freeze", "--max-retry-seconds", str(deadline_s))
    message = f"cannot reach Postgres at {rig.settings.pg_host}:{rig.settings.pg_port}"
    late = None
    with frozen(rig.postgres):
        started = time.monotonic()
        if rig.scale.name == "soak":
            # Each connection attempt takes the connect timeout (10 s) on a frozen server, so this run needs
            # about 20 s; `make test` proves the same in loaders/tests/test_outage_bounds.py, on idle data.
            late = rig.run("consume-during-freeze", "consume", "--drain", "--topic", topic, "--group",
                           f"{group}-late", "--max-retry-seconds", str(deadline_s), timeout=90)  # fmt: skip
        time.sleep(max(0.0, rig.scale.freeze_s - (time.monotonic() - started)))
        assert proc.poll() is None, "the connected consumer must wait the freeze out:\n" + log.read_text()[-3000:]
        frozen_s = time.monotonic() - started
    thawed = time.monotonic()
    if late is not None:
        assert late.returncode == 1 and message in late.stderr, late.stdout[-2000:] + late.stderr[-2000:]
    acked_now = len(producer.acked)
    wait_for(lambda: rig.loaded(topic) >= acked_now, 60, "lag back to 0 after the freeze")
    recovery = time.monotonic() - thawed
    acked = producer.finish()
    wait_for(lambda: rig.loaded(topic) >= len(acked), 90, "every acknowledged event in raw")
    assert proc.poll() is None, "the consumer must ride out the freeze:\n" + log.read_text()[-3000:]
    stop(proc, log)
    assert "; retry " not in log.read_text(), "a frozen server raises nothing, so nothing is retried"
    # The run that could not connect wrote nothing, so the group's figures are the connected consumer's.
    record(18, f"Postgres frozen {frozen_s:.0f}s, retry deadline {deadline_s:.1f}s",
           **consumer_figures(rig, topic, group, Sent(acked, producer.failed)), redelivery_promised_zero=True,
           recovery_s=recovery, late_run_exit=None if late is None else late.returncode)  # fmt: skip


def feedback_form(feedback_id: str) -> dict:
    return {
        "schema_version": 1, "feedback_id": feedback_id, "appointment_id": "APT-00000001",
        "submitted_at": "2026-10-02T10:00:00Z", "provider_rating": 4, "ease_of_use_rating": 4,
        "audio_quality_rating": 5, "video_quality_rating": 3, "overall_satisfaction": 4,
        "would_recommend": True, "comments": None,
    }  # fmt: skip


def test_case_19_feedback_and_reference_loaders_through_a_postgres_outage(rig, tmp_path):
    """Postgres stopped hard while the feedback loader is mid-run, and the reference loader started
    during the outage: both retry, finish once it is back, and every form and every clinic row version
    is in raw once, no file in part."""
    rig = rig.on(f"rel_outage_{uuid.uuid4().hex[:6]}")
    rig.must("generate-clinic", "generate", "--scale", "300", "--seed", "5", "--no-files", "--out",
             str(tmp_path / "generated"))  # fmt: skip
    landing = tmp_path / "landing"
    day = landing / "2026" / "10" / "02"
    day.mkdir(parents=True)
    forms_by_file = {}
    for i in range(rig.scale.outage_files):
        ids = [f"FBK-5{i:07d}", f"FBK-6{i:07d}"]
        (day / f"form-{i:06d}.json").write_text(json.dumps([feedback_form(x) for x in ids]))
        forms_by_file[f"form-{i:06d}.json"] = set(ids)
    expected_forms = set().union(*forms_by_file.values())
    feedback, feedback_log = rig.start("feedback-outage", "feedback", "--landing", str(landing), "--batch-files",
                                       "20", "--max-retry-seconds", "120")  # fmt: skip
    down_s = random.uniform(*rig.scale.outage_s) / 2
    reference = reference_log = None
    try:
        wait_for(
            lambda: feedback.poll() is not None or rig.scalar("select count(*) from raw.feedback_files") > 0,
            60,
            "the first feedback files committed",
            interval=0.005,
        )
        rig.postgres.stop(mode="immediate")
        stopped = time.monotonic()
        reference, reference_log = rig.start("reference-outage", "reference", "--max-retry-seconds", "120")
        time.sleep(down_s)
        assert feedback.poll() is None, "the feedback loader must wait:\n" + feedback_log.read_text()[-3000:]
        assert reference.poll() is None, "the reference loader must wait:\n" + reference_log.read_text()[-3000:]
        rig.postgres.start()
        back = time.monotonic()
        codes = (feedback.wait(timeout=120), reference.wait(timeout=120))
        recovery = time.monotonic() - back
    finally:
        if not rig.postgres.pid():
            rig.postgres.start()
        for proc in (feedback, reference):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    logs = feedback_log.read_text() + (reference_log.read_text() if reference_log else "")
    assert codes == (0, 0), logs[-4000:]
    assert feedback_log.read_text().count("retry") and reference_log.read_text().count("retry"), logs[-4000:]
    loaded_forms = {row[0] for row in rig.sql("select feedback_id from raw.patient_feedback")}
    missing_versions = rig.sql(
        "(select 'providers', provider_id, updated_at from clinic_ops.providers"
        " except select 'providers', provider_id, updated_at from raw.providers)"
        " union all (select 'patients', patient_id, updated_at from clinic_ops.patients"
        " except select 'patients', patient_id, updated_at from raw.patients)"
    )
    quarantined = rig.scalar("select count(*) from raw.patient_feedback_rejected") + rig.scalar(
        "select count(*) from raw.feedback_files where status = 'failed'"
    )
    versions = rig.scalar("select count(*) from clinic_ops.providers") + rig.scalar(
        "select count(*) from clinic_ops.patients"
    )
    record(19, f"feedback mid-run and reference loaders through Postgres down {down_s:.0f}s",
           lost=(expected_forms - loaded_forms) | {tuple(row) for row in missing_versions},
           redelivered=feedback_redelivered(rig), quarantined=quarantined, bad_injected=0, recovery_s=recovery,
           failures=check_partial_files(forms_by_file, loaded_forms), files=len(forms_by_file),
           reference_versions=versions, down_s=round(back - stopped, 1))  # fmt: skip
