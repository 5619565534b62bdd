"""No single message, file or value stops a loader: whatever the decoder, the validator or Postgres says
about one input, that input is quarantined with a reason and the rest loads (issue 15)."""

from __future__ import annotations

import json
import os

from loaders.tests.loader_support import (
    loader_env,
    new_topic,
    query,
    run_loader,
    scalar,
    send,
    valid_events,
    valid_form,
)

# Deeper than any JSON decoder's recursion limit: json raises RecursionError, not ValueError.
DEEP = 100_000
# Shallow enough for the decoder, too deep for the validator's recursive NUL/surrogate check.
NEARLY_TOO_DEEP = 980


def event(event_id: str, **fields) -> dict:
    return {**json.loads(valid_events(1)[0]), "event_id": event_id, **fields}


def with_raw_field(record: dict, field: str, raw_json: str) -> bytes:
    """``record`` as JSON with one more field whose value is the literal text ``raw_json``."""
    text = json.dumps(record)
    return (text[:-1] + f', "{field}": {raw_json}}}').encode()


def drain(settings, topic: str, group: str):
    return run_loader(
        loader_env(settings), "consume", "--drain", "--idle-seconds", "2", "--topic", topic, "--group", group
    )


def rejected_events(settings, topic: str) -> dict[str, tuple[str, str]]:
    rows = query(
        settings,
        "select coalesce(event_id, raw_text), reason, error_detail from raw.appointment_events_rejected"
        " where kafka_topic = %s and raw_text is not null",
        (topic,),
    )
    return {row[0][:40]: (row[1], row[2]) for row in rows}


def test_a_message_the_decoder_or_validator_chokes_on_is_quarantined_and_the_partition_moves_on(settings):
    topic, group = new_topic(), "poison-deep"
    values = [json.dumps(event(f"deep-ok-{i}")).encode() for i in range(10)]
    values.insert(3, b"[" * DEEP + b"]" * DEEP)
    values.insert(6, with_raw_field(event("deep-field"), "x", "[" * DEEP + "]" * DEEP))
    values.insert(
        8, with_raw_field(event("deep-escape"), "x", "[" * NEARLY_TOO_DEEP + '"\\u00e9"' + "]" * NEARLY_TOO_DEEP)
    )
    send(settings, topic, values)

    first = drain(settings, topic, group)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "read 13, loaded 10, rejected 3, duplicates skipped 0" in first.stdout, first.stdout
    reasons = [row[0] for row in query(
        settings, "select reason from raw.appointment_events_rejected where kafka_topic = %s", (topic,)
    )]  # fmt: skip
    assert reasons == ["undecodable"] * 3
    assert scalar(settings, "select sum(next_offset) from raw.kafka_offsets where topic = %s", (topic,)) == 13
    again = drain(settings, topic, group)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "read 0," in again.stdout


def test_a_value_postgres_cannot_store_is_quarantined_with_its_sqlstate(settings):
    topic, group = new_topic(), "poison-numeric"
    values = [json.dumps(event(f"num-ok-{i}")).encode() for i in range(20)]
    values.insert(5, with_raw_field(event("num-huge"), "extra", "1e400000"))
    values.insert(12, with_raw_field({k: v for k, v in event("num-tiny").items() if k != "wait_time_minutes"},
                                     "wait_time_minutes", "1e-400000"))  # fmt: skip
    send(settings, topic, values)

    first = drain(settings, topic, group)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "read 22, loaded 20, rejected 2, duplicates skipped 0" in first.stdout, first.stdout
    rejected = rejected_events(settings, topic)
    assert set(rejected) == {"num-huge", "num-tiny"}
    for reason, detail in rejected.values():
        assert reason == "unstorable"
        assert "22003" in detail
    assert scalar(settings, "select count(*) from raw.appointment_events where kafka_topic = %s", (topic,)) == 20
    assert scalar(settings, "select sum(next_offset) from raw.kafka_offsets where topic = %s", (topic,)) == 22
    run = query(
        settings,
        "select status, rows_read, rows_loaded, rows_rejected from raw.load_runs where loader = 'consume'"
        " order by run_id desc limit 1",
    )
    assert run == [("succeeded", 22, 20, 2)]


def feedback(settings, landing, *args: str, **env: str):
    return run_loader(loader_env(settings, **env), "feedback", "--landing", str(landing), *args)


def files(settings, like: str) -> dict[str, tuple]:
    rows = query(
        settings,
        "select path, status, reason, forms_read, forms_loaded, forms_rejected from raw.feedback_files"
        " where path like %s",
        (like,),
    )
    return {row[0]: row[1:] for row in rows}


def test_a_feedback_file_the_decoder_chokes_on_is_recorded_failed_and_the_run_goes_on(settings, tmp_path):
    landing = tmp_path / "landing"
    day = landing / "2026/10/02"
    day.mkdir(parents=True)
    (day / "deep-a.json").write_text(json.dumps(valid_form("FBK-1400001")))
    (day / "deep-b.json").write_text("[" * DEEP + "]" * DEEP)
    nearly = [json.loads(json.dumps(valid_form("FBK-1400003")))]
    (day / "deep-c.json").write_text(
        "[" + json.dumps(valid_form("FBK-1400002")) + ","
        + json.dumps(nearly[0])[:-1] + ', "x": ' + "[" * NEARLY_TOO_DEEP + '"\\u00e9"' + "]" * NEARLY_TOO_DEEP + "}]"
    )  # fmt: skip
    done = feedback(settings, landing)
    assert done.returncode == 0, done.stderr[-3000:]
    assert files(settings, "2026/10/02/deep-%") == {
        "2026/10/02/deep-a.json": ("loaded", None, 1, 1, 0),
        "2026/10/02/deep-b.json": ("failed", "undecodable", 0, 0, 0),
        "2026/10/02/deep-c.json": ("loaded", None, 2, 1, 1),
    }
    assert query(
        settings, "select reason from raw.patient_feedback_rejected where source_path = '2026/10/02/deep-c.json'"
    ) == [("undecodable",)]
    status = scalar(settings, "select status from raw.load_runs where loader = 'feedback' order by run_id desc limit 1")
    assert status == "succeeded"


def test_a_form_postgres_cannot_store_is_quarantined_and_its_file_loads(settings, tmp_path):
    landing = tmp_path / "landing"
    day = landing / "2026/10/03"
    day.mkdir(parents=True)
    forms = [
        json.dumps(valid_form("FBK-1500001")),
        with_raw_field(valid_form("FBK-1500002"), "extra", "1e400000").decode(),
        # Invalid anyway (a rating out of range), and its payload cannot be stored as jsonb either.
        with_raw_field(valid_form("FBK-1500003", provider_rating=9), "extra", "-1e400000").decode(),
        json.dumps(valid_form("FBK-1500004")),
    ]
    (day / "numbers.json").write_text("[" + ",".join(forms) + "]")
    (day / "plain.json").write_text(json.dumps(valid_form("FBK-1500005")))
    done = feedback(settings, landing)
    assert done.returncode == 0, done.stderr[-3000:]
    assert files(settings, "2026/10/03/%") == {
        "2026/10/03/numbers.json": ("loaded", None, 4, 2, 2),
        "2026/10/03/plain.json": ("loaded", None, 1, 1, 0),
    }
    rejected = query(
        settings,
        "select feedback_id, reason, error_detail, payload is null from raw.patient_feedback_rejected"
        " where source_path = '2026/10/03/numbers.json' order by form_index",
    )
    assert [row[:2] for row in rejected] == [("FBK-1500002", "unstorable"), ("FBK-1500003", "out_of_range")]
    assert "22003" in rejected[0][2] and "22003" in rejected[1][2]
    assert all(row[3] for row in rejected), "a payload Postgres cannot hold is left out, not the row"


def test_symlinks_special_files_and_oversized_files_are_refused_unread(settings, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text('{"not": "for the loader"}')
    landing = tmp_path / "landing"
    day = landing / "2026/10/04"
    day.mkdir(parents=True)
    (day / "link.json").symlink_to(secret)
    os.mkfifo(day / "pipe.json")
    (day / "big.json").write_text(json.dumps([valid_form(f"FBK-12{i:05d}") for i in range(20)]))
    (day / "small.json").write_text(json.dumps(valid_form("FBK-1900001")))
    done = feedback(settings, landing, "--max-file-bytes", "1000")
    assert done.returncode == 0, done.stderr[-3000:]
    found = files(settings, "2026/10/04/%")
    assert found == {
        "2026/10/04/big.json": ("failed", "too_large", 0, 0, 0),
        "2026/10/04/link.json": ("failed", "not_a_regular_file", 0, 0, 0),
        "2026/10/04/pipe.json": ("failed", "not_a_regular_file", 0, 0, 0),
        "2026/10/04/small.json": ("loaded", None, 1, 1, 0),
    }
    stored = query(settings, "select payload::text from raw.patient_feedback_rejected")
    assert not any("for the loader" in row[0] for row in stored if row[0])
    # Refused files are known afterwards, like any recorded file, and the limit also comes from the env.
    again = feedback(settings, landing, TELEMED_FEEDBACK_MAX_FILE_BYTES="1000")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 loaded, 0 failed, 4 already loaded" in again.stdout, again.stdout
    (day / "big2.json").write_text(json.dumps([valid_form(f"FBK-13{i:05d}") for i in range(20)]))
    third = feedback(settings, landing, TELEMED_FEEDBACK_MAX_FILE_BYTES="1000")
    assert files(settings, "2026/10/04/big2.json") == {"2026/10/04/big2.json": ("failed", "too_large", 0, 0, 0)}
    assert third.returncode == 0
