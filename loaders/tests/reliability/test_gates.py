"""Negative tests of the gates: each plants the fault a gate guards against in the data the gate reads
(a lost message, a message committed twice, offsets ahead of the reads, a missing quarantine row, a file
loaded in part, a restart the consumer did not notice) and shows that the gate reports it.

They load real data with the real loaders once, then plant the faults with SQL, so they stay cheap:
no broker or database is stopped. The marts' gates (duplicate fact rows, wrong final states) are tested
the same way on a copy of the real marts, in test_pipeline_guarantees.py.
"""

from __future__ import annotations

import json
import uuid

import pytest

from loaders.tests.reliability.harness import (
    LOG_RESTART,
    RECOVERY_TARGET_S,
    Message,
    check_kafka_not_ahead,
    check_lost,
    check_partial_files,
    check_quarantined,
    check_recovery,
    check_redelivered,
    check_restart_noticed,
    consume_redelivered,
    event_line,
    feedback_redelivered,
    identify,
    landed_messages,
    lost_messages,
    quarantined_events,
    wait_for,
)
from loaders.tests.reliability.test_bad_input import form
from loaders.tests.reliability.test_consumer_faults import Invariant


@pytest.fixture(scope="module")
def loaded(rig):
    """A small topic of valid events and two poison messages, drained by the real consumer."""
    rig = rig.on("rel_gates")
    topic, group, tag = f"rel.gates.{uuid.uuid4().hex[:6]}", "rel-gates", f"n{uuid.uuid4().hex[:6]}"
    lines = [event_line(f"{tag}-{i:07d}", i) for i in range(60)]
    lines += [b"\xff\xfe not utf-8", json.dumps({"schema_version": 1, "event_id": f"{tag}-bad"}).encode()]
    sent = rig.produce(topic, lines, [f"k{i % 5}".encode() for i in range(len(lines))])
    drained = rig.drain(topic, group)
    return rig, topic, group, sent, drained


def test_lost_gate_catches_a_deleted_row_a_deleted_quarantine_row_and_an_unseen_message(loaded):
    rig, topic, _group, sent, _ = loaded
    assert not lost_messages(sent.acked, landed_messages(rig, topic)), "the clean load itself lost nothing"
    victim = sorted(m.event_id for m in sent.acked if m.event_id and not m.event_id.endswith("-bad"))[7]
    poison = identify(b"\xff\xfe not utf-8")
    conn = rig.connect()
    try:
        with conn.cursor() as cur:  # planted inside a transaction that is rolled back
            cur.execute("delete from raw.appointment_events where event_id = %s", (victim,))
            cur.execute(
                "delete from raw.appointment_events_rejected where kafka_topic = %s and raw_bytes is not null", (topic,)
            )

            def fetch(statement: str, params: tuple) -> list[tuple]:
                cur.execute(statement, params)
                return cur.fetchall()

            planted = landed_messages(rig, topic, fetch)
    finally:
        conn.rollback()
        conn.close()
    unseen = Message("never-consumed", "0" * 64)  # acknowledged by the broker, never read
    lost = lost_messages(sent.acked | {unseen}, planted)
    assert {m.event_id for m in lost if m.event_id} == {victim, "never-consumed"}
    assert poison in lost
    assert check_lost(lost) and not check_lost(set())


def test_quarantine_gate_catches_a_missing_and_an_extra_rejection(loaded):
    rig, topic, *_ = loaded
    assert quarantined_events(rig, topic) == 2
    assert not check_quarantined(2, 2)
    assert check_quarantined(1, 2) and check_quarantined(3, 2)


def test_redelivery_gate_catches_a_real_redelivery_and_offsets_ahead_of_the_reads(loaded):
    rig, topic, group, _sent, _ = loaded
    assert consume_redelivered(rig, topic, group) == 0
    assert not check_redelivered(0, promised_zero=True)
    # Planted for real: the stored offset of one partition moved back by two, and a drain run reads those
    # two messages again and commits them a second time (raw dedupes them, the gate must still see them).
    partition = rig.scalar(
        "select min(partition) from raw.kafka_offsets where consumer_group = %s and topic = %s and next_offset >= 2",
        (group, topic),
    )
    rig.sql(
        "update raw.kafka_offsets set next_offset = next_offset - 2 where consumer_group = %s and topic = %s"
        " and partition = %s",
        (group, topic, partition),
    )
    rows_before = rig.loaded(topic)
    rig.drain(topic, group)
    assert rig.loaded(topic) == rows_before, "raw itself stays free of duplicates"
    redelivered = consume_redelivered(rig, topic, group)
    assert redelivered == 2
    assert check_redelivered(redelivered, promised_zero=True)
    assert not check_redelivered(redelivered, promised_zero=False), "where redelivery is expected it is measured"
    # The other way round: offsets stored ahead of what was read would mean messages skipped.
    conn = rig.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "update raw.kafka_offsets set next_offset = next_offset + 3 where consumer_group = %s and topic = %s"
                " and partition = %s",
                (group, topic, partition),
            )
            cur.execute(
                "select sum(next_offset) from raw.kafka_offsets where consumer_group = %s and topic = %s",
                (group, topic),
            )
            stored = cur.fetchone()[0]
    finally:
        conn.rollback()
        conn.close()
    ahead = redelivered - (stored - sum(rig.stored_offsets(topic, group).values()))
    assert ahead == -1 and check_redelivered(ahead, promised_zero=False)


def test_kafka_offsets_gate_catches_a_commit_ahead_of_postgres(loaded):
    """Case 2's check after every kill: Kafka's committed offsets, read from the broker, against the ones
    stored in Postgres with one moved back (as if Kafka had been committed before the database)."""
    rig, topic, group, *_ = loaded
    stored, committed = rig.stored_offsets(topic, group), rig.kafka_committed(topic, group)
    assert committed and not check_kafka_not_ahead(stored, committed)
    partition = max(committed, key=committed.get)
    planted = {**stored, partition: committed[partition] - 1}
    found = check_kafka_not_ahead(planted, committed)
    assert len(found) == 1 and f"{partition}: ({committed[partition]}, {committed[partition] - 1})" in found[0]


def test_recovery_gate_catches_a_slow_catch_up():
    assert not check_recovery(RECOVERY_TARGET_S - 0.1)
    assert check_recovery(RECOVERY_TARGET_S + 0.1)


def test_restart_log_gate_fails_on_a_run_that_only_read_from_earliest(loaded):
    _rig, _topic, _group, _sent, drained = loaded
    # A first run reads every partition "from earliest" too: that must not pass for a noticed restart.
    assert "from earliest" in drained.stdout + drained.stderr
    assert check_restart_noticed(drained.stdout + drained.stderr)
    warning = (
        "WARNING loaders.consume: topic t was recreated (topic id changed): the stored offset 12 of partition 0"
        " belongs to the old topic, so the partition is read from its earliest offset (event_id dedupes)"
    )
    assert LOG_RESTART.search(warning) and not check_restart_noticed(warning)


def test_invariant_catches_rows_visible_without_their_offsets(loaded):
    """Cases 2 and 3 sample rows against stored offsets while kills land; a row committed without its
    offset (a batch visible in part) must show up as broken."""
    rig, topic, group, *_ = loaded
    invariant = Invariant(rig, topic, group)
    invariant.start()
    try:
        wait_for(lambda: invariant.samples >= 3, 10, "clean samples")
        assert not invariant.broken, invariant.broken
        rig.sql(
            "insert into raw.appointment_events select (jsonb_populate_record(e, jsonb_build_object("
            "'event_id', 'planted-without-offset'))).* from raw.appointment_events e where kafka_topic = %s limit 1",
            (topic,),
        )
        seen = invariant.samples
        wait_for(lambda: invariant.samples >= seen + 3, 10, "samples of the planted row")
    finally:
        invariant.finish()
        rig.sql("delete from raw.appointment_events where event_id = 'planted-without-offset'")
    assert invariant.broken and all(rows == stored + 1 for rows, stored in invariant.broken)


def test_partial_file_gate_and_feedback_redelivery_gate(rig, tmp_path):
    rig = rig.on(f"rel_gates_fb_{uuid.uuid4().hex[:6]}")
    day = tmp_path / "landing" / "2026" / "10" / "02"
    day.mkdir(parents=True)
    forms_by_file = {}
    for i in range(6):
        ids = {f"FBK-7{i:07d}", f"FBK-8{i:07d}"}
        (day / f"f{i}.json").write_text(json.dumps([form(x) for x in sorted(ids)]))
        forms_by_file[f"f{i}.json"] = ids
    rig.must("feedback", "feedback", "--landing", str(tmp_path / "landing"))
    loaded = {row[0] for row in rig.sql("select feedback_id from raw.patient_feedback")}
    assert not check_partial_files(forms_by_file, loaded)
    assert feedback_redelivered(rig) == 0 and not check_redelivered(0, promised_zero=True)
    # A file with one of its two forms: the gate names it.
    torn = check_partial_files(forms_by_file, loaded - {"FBK-80000003"})
    assert len(torn) == 1 and "f3.json" in torn[0]
    # A file committed twice, for real: its record removed, the next run reads it again and commits it
    # (its forms are known: skipped as duplicates), so its forms count twice in the runs' reads.
    rig.sql("delete from raw.feedback_files where path like %s", ("%f2.json",))
    rig.must("feedback-again", "feedback", "--landing", str(tmp_path / "landing"))
    assert rig.scalar("select count(*) from raw.patient_feedback") == len(loaded)
    redelivered = feedback_redelivered(rig)
    assert redelivered == 2 and check_redelivered(redelivered, promised_zero=True)
