"""Cases 11, 12 and 13: poison messages, schema drift, and feedback files that are broken, repeated,
replaced or cut off by a kill."""

from __future__ import annotations

import json
import shutil
import uuid

from loaders.tests.reliability.harness import (
    LOADER_APP,
    check_partial_files,
    consumer_figures,
    event_line,
    feedback_redelivered,
    kill9,
    record,
    wait_for,
)


def keyed(lines: list[bytes]) -> list[bytes]:
    """Keys spread over the partitions, so every partition holds poison between valid events."""
    return [f"k{i % 7}".encode() for i in range(len(lines))]


def test_case_11_poison_messages_are_quarantined_and_the_partition_moves_on(rig):
    rig = rig.on("rel_faults")
    topic, group, tag = f"rel.poison.{uuid.uuid4().hex[:6]}", "rel-poison", f"p{uuid.uuid4().hex[:6]}"
    base = json.loads(event_line("x", 0))
    poison = {
        "non_utf8": (b"\xff\xfe\x80 not utf-8 \xc3\x28", "invalid_json"),
        "invalid_json": (b'{"schema_version": 1, "event_id": "broken", ', "invalid_json"),
        "missing_event_id": (json.dumps({k: v for k, v in base.items() if k != "event_id"}).encode(), "missing_field"),
        "wrong_type": (json.dumps({**base, "event_id": f"{tag}-bad", "wait_time_minutes": "ten"}).encode(),
                       "invalid_type"),
        "two_megabytes": (b'{"schema_version": 1, "padding": "' + b"x" * (2 << 20), "invalid_json"),
    }  # fmt: skip
    lines, expected = [], {}
    valid = 0
    for round_ in range(3):
        for name, (value, reason) in poison.items():
            for _ in range(20):
                lines.append(event_line(f"{tag}-{valid:07d}", valid))
                valid += 1
            expected[len(lines)] = (name, reason)
            lines.append(value)
        del round_
    lines += [event_line(f"{tag}-{valid + i:07d}", valid + i) for i in range(20)]
    valid += 20
    keys = keyed(lines)
    sent = rig.produce(topic, lines, keys)
    rig.drain(topic, group)
    rejected = rig.sql(
        "select kafka_partition, kafka_offset, reason, raw_text is not null or raw_bytes is not null"
        " from raw.appointment_events_rejected where kafka_topic = %s",
        (topic,),
    )
    by_reason: dict[str, int] = {}
    for reason in (reason for _, reason in expected.values()):
        by_reason[reason] = by_reason.get(reason, 0) + 1
    got: dict[str, int] = {}
    for partition, offset, reason, kept in rejected:
        assert partition is not None and offset is not None and kept, "lineage and the raw message are kept"
        got[reason] = got.get(reason, 0) + 1
    assert got == by_reason
    # Never stalled: every partition was read to its end, past every poison message.
    assert sum(rig.stored_offsets(topic, group).values()) == len(lines)
    # Poison without an event_id is found in quarantine by its bytes: lost counts every message, not only valid ones.
    record(11, "poison messages (non-UTF-8, invalid JSON, missing id, wrong type, 2 MB)",
           **consumer_figures(rig, topic, group, sent, bad_injected=len(expected)), redelivery_promised_zero=True,
           poison_kinds=len(poison), valid=valid)  # fmt: skip


def test_case_12_schema_drift(rig):
    """An extra field lands with the payload kept; a renamed required field or a new timestamp format
    is quarantined with its reason (the loader's contract check takes this branch, before dbt)."""
    rig = rig.on("rel_faults")
    topic, group, tag = f"rel.drift.{uuid.uuid4().hex[:6]}", "rel-drift", f"d{uuid.uuid4().hex[:6]}"
    lines = [event_line(f"{tag}-{i:07d}", i) for i in range(30)]
    extra = {**json.loads(event_line(f"{tag}-extra", 1)), "clinic_region": "north", "app_version": "7.1"}
    renamed = json.loads(event_line(f"{tag}-renamed", 2))
    renamed["eventTimestamp"] = renamed.pop("event_ts")
    epoch = {**json.loads(event_line(f"{tag}-epoch", 3)), "event_ts": 1790000000}
    no_offset = {**json.loads(event_line(f"{tag}-nooffset", 4)), "event_ts": "2026-10-01 09:00:00"}
    lines += [json.dumps(e).encode() for e in (extra, renamed, epoch, no_offset)]
    sent = rig.produce(topic, lines, keyed(lines))
    rig.drain(topic, group)
    payload = rig.scalar("select payload from raw.appointment_events where event_id = %s", (f"{tag}-extra",))
    assert payload["clinic_region"] == "north" and payload["app_version"] == "7.1"
    reasons = dict(
        rig.sql("select event_id, reason from raw.appointment_events_rejected where kafka_topic = %s", (topic,))
    )
    assert reasons == {
        f"{tag}-renamed": "missing_field",
        f"{tag}-epoch": "invalid_type",
        f"{tag}-nooffset": "invalid_timestamp",
    }
    record(12, "schema drift (extra field kept; renamed field, new timestamp formats quarantined)",
           **consumer_figures(rig, topic, group, sent, bad_injected=3), redelivery_promised_zero=True)  # fmt: skip


def form(feedback_id: str, rating: int = 4) -> dict:
    return {
        "schema_version": 1,
        "feedback_id": feedback_id,
        "appointment_id": "APT-00000001",
        "submitted_at": "2026-10-02T10:00:00Z",
        "provider_rating": rating,
        "ease_of_use_rating": 4,
        "audio_quality_rating": 5,
        "video_quality_rating": 3,
        "overall_satisfaction": rating,
        "would_recommend": True,
        "comments": None,
    }


def loader_in_transaction(rig) -> bool:
    """A loader session of this database has a transaction open (a batch being written)."""
    return bool(
        rig.scalar(
            "select count(*) from pg_stat_activity where application_name = %s and datname = current_database()"
            " and xact_start is not null",
            (LOADER_APP,),
        )
    )


def test_case_13_feedback_files(rig, tmp_path):
    rig = rig.on("rel_feedback")
    landing = tmp_path / "landing"
    day = landing / "2026" / "10" / "02"
    day.mkdir(parents=True)
    # Many files, so a kill lands between batches and inside one.
    files = rig.scale.events // 2
    forms_by_file = {}
    for i in range(files):
        ids = [f"FBK-1{i:07d}", f"FBK-2{i:07d}"]
        (day / f"form-{i:06d}.json").write_text(json.dumps([form(x) for x in ids]))
        forms_by_file[f"form-{i:06d}.json"] = set(ids)
    proc, _log = rig.start("feedback-killed", "feedback", "--landing", str(landing), "--batch-files", "50")
    try:
        wait_for(
            lambda: proc.poll() is not None or rig.scalar("select count(*) from raw.feedback_files") > 0,
            60,
            "the first files committed",
            interval=0.005,
        )
        # Then the moment a batch is being written, so the kill cuts a transaction off.
        in_transaction = wait_for(
            lambda: proc.poll() is not None or loader_in_transaction(rig), 30, "a batch in flight", interval=0.002
        )
    finally:
        kill9(proc)
    killed_in_transaction = in_transaction is True and proc.returncode == -9
    # Measured from the forms, not from the loader's own file records: each file's two forms are in raw
    # together or not at all, and the kill did land mid-run.
    at_kill = {row[0] for row in rig.sql("select feedback_id from raw.patient_feedback")}
    torn = check_partial_files(forms_by_file, at_kill)
    orphans = rig.scalar(
        "select count(*) from raw.patient_feedback p"
        " where not exists (select 1 from raw.feedback_files f where f.sha256 = p.source_sha256)"
    )
    assert 0 < len(at_kill) < 2 * files, f"the kill did not land mid-run ({len(at_kill)} of {2 * files} forms)"
    assert orphans == 0, "forms committed without their file record"

    # The broken and repeated files, then the run that finishes the job.
    (day / "truncated.json").write_text(json.dumps([form("FBK-3000001"), form("FBK-3000002")])[:-40])
    shutil.copy(day / "form-000000.json", day / "form-000000-again.json")  # the same file twice
    (day / "replaced.json").write_text(json.dumps(form("FBK-4000001")))
    rig.must("feedback", "feedback", "--landing", str(landing))
    killed_status = rig.scalar("select status from raw.load_runs where loader = 'feedback' order by run_id limit 1")
    assert killed_status == "interrupted", "the next run marks the killed one"
    # The same name with new content: one new form and one already known.
    (day / "replaced.json").write_text(json.dumps([form("FBK-4000001"), form("FBK-4000002", rating=2)]))
    rig.must("feedback-again", "feedback", "--landing", str(landing))
    expected = set().union(*forms_by_file.values()) | {"FBK-4000001", "FBK-4000002"}

    loaded = {row[0] for row in rig.sql("select feedback_id from raw.patient_feedback")}
    failed = dict(rig.sql("select reason, count(*) from raw.feedback_files where status = 'failed' group by 1"))
    rejected_forms = rig.scalar("select count(*) from raw.patient_feedback_rejected")
    assert failed == {"invalid_json": 1}
    assert rig.scalar("select count(*) from raw.feedback_files where path like %s", ("%form-000000-again.json",)) == 0
    replaced = rig.sql("select count(*) from raw.feedback_files where path like %s", ("%replaced.json",))[0][0]
    assert replaced == 2, "each content of the same name is its own file version"
    # The re-submitted form is a duplicate by design (counted, skipped), not a redelivery.
    resubmitted = rig.scalar("select coalesce(sum(duplicates_skipped), 0) from raw.load_runs where loader = 'feedback'")
    assert resubmitted == 1
    # The killed run committed each of its batches once; the next run skipped those files by their sha256.
    record(13, "feedback files: kill mid-run, truncated, twice, same name new content",
           lost=expected - loaded, redelivered=feedback_redelivered(rig), redelivery_promised_zero=True,
           quarantined=sum(failed.values()) + rejected_forms, bad_injected=1, failures=torn,
           loaded_before_kill=len(at_kill), killed_in_transaction=killed_in_transaction,
           killed_run_status=killed_status, files=files + 3)  # fmt: skip
