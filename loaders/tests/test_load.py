"""`python -m loaders load` (what `make load` runs) on the generator's output, checked against its manifest:
each dirty-data kind lands in a rejected table with its reason, and every count equals the manifest's."""

from __future__ import annotations

import json

from loaders.tests.loader_support import loader_env, new_topic, query, run_loader, scalar
from simulator.api_server import ApiServer, SessionStore
from simulator.video_api import FILE_NAME


def test_load_matches_the_generator_manifest_exactly(settings, tmp_path):
    topic = new_topic()
    # The video platform's API over this world (a configured URL and token, as for a real platform).
    api = ApiServer(SessionStore(tmp_path / "out" / "video_api" / FILE_NAME), "load-test-token")
    api.start()
    env = loader_env(
        settings,
        TELEMED_TOPIC=topic,
        TELEMED_LANDING_DIR=str(tmp_path / "landing"),
        TELEMED_VIDEO_API_URL=api.url,
        TELEMED_VIDEO_API_TOKEN="load-test-token",
    )
    try:
        _load_and_check(settings, env, tmp_path, topic)
    finally:
        api.stop()


def _load_and_check(settings, env: dict[str, str], tmp_path, topic: str) -> None:
    generated = run_loader(
        env, "generate", "--scale", "2000", "--dirty-rate", "0.05", "--out", str(tmp_path / "out"), timeout=180
    )
    assert generated.returncode == 0, generated.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    events, feedback, rejected = manifest["events"], manifest["feedback"], manifest["rejected"]
    # The test is only as good as the dirt in it: every reason must occur.
    assert all(rejected["events"].values()) and len(rejected["events"]) == 8, rejected["events"]
    assert all(rejected["feedback_files"].values()) and set(rejected["feedback_files"]) == {"not_json", "invalid_json"}

    produced = run_loader(env, "produce", "--from-jsonl", str(tmp_path / "out" / "events"))
    assert produced.returncode == 0, produced.stderr
    assert f"{events['messages']} delivered, 0 failed" in produced.stdout

    loaded = run_loader(env, "load", "--idle-seconds", "2", timeout=180)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "every loader succeeded" in loaded.stdout

    runs = {
        row[0]: row[1:]
        for row in query(
            settings,
            "select loader, rows_read, rows_loaded, rows_rejected, duplicates_skipped, status from raw.load_runs"
            " where run_id in (select max(run_id) from raw.load_runs group by loader)",
        )
    }
    assert {name: run[-1] for name, run in runs.items()} == {
        "reference": "succeeded",
        "consume": "succeeded",
        "feedback": "succeeded",
        "api": "succeeded",
    }

    # Events.
    assert (
        scalar(settings, "select count(*) from raw.appointment_events where kafka_topic = %s", (topic,))
        == (events["valid_distinct"])
    )
    event_reasons = dict(
        query(
            settings,
            "select reason, count(*) from raw.appointment_events_rejected where kafka_topic = %s group by 1",
            (topic,),
        )
    )
    assert event_reasons == {reason: n for reason, n in rejected["events"].items() if n}
    assert runs["consume"][:4] == (
        events["messages"],
        events["valid_distinct"],
        sum(rejected["events"].values()),
        events["duplicate_deliveries"],
    )

    # Feedback: forms, rejected forms by reason, failed files by reason, resubmissions as duplicates.
    assert scalar(settings, "select count(*) from raw.patient_feedback") == feedback["forms_valid"]
    form_reasons = dict(query(settings, "select reason, count(*) from raw.patient_feedback_rejected group by 1"))
    assert form_reasons == {reason: n for reason, n in rejected["feedback_forms"].items() if n}
    file_reasons = dict(
        query(settings, "select reason, count(*) from raw.feedback_files where status = 'failed' group by 1")
    )
    assert file_reasons == {reason: n for reason, n in rejected["feedback_files"].items() if n}
    assert scalar(settings, "select count(*) from raw.feedback_files") == feedback["files"]
    assert runs["feedback"][3] == feedback["forms_resubmitted"]

    # Reference: the current clinic rows are all in raw.
    assert (
        scalar(settings, "select count(distinct provider_id) from raw.providers")
        == (manifest["reference"]["providers"])
    )
    assert scalar(settings, "select count(distinct patient_id) from raw.patients") == manifest["reference"]["patients"]

    # Call sessions: every session once, every dirty record quarantined under its reason.
    sessions = manifest["video_api"]
    assert all(sessions["rejected"].values()) and len(sessions["rejected"]) == 6, sessions["rejected"]
    assert scalar(settings, "select count(*) from raw.call_sessions") == sessions["sessions"]
    call_reasons = dict(query(settings, "select reason, count(*) from raw.call_sessions_rejected group by 1"))
    assert call_reasons == sessions["rejected"]
    quarantined = sum(sessions["rejected"].values())
    assert runs["api"][:4] == (sessions["records_at_as_of"], sessions["sessions"], quarantined, 0)

    # A second `load` finds nothing new anywhere.
    again = run_loader(env, "load", "--idle-seconds", "1", timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    latest = query(
        settings,
        "select loader, rows_loaded, rows_rejected from raw.load_runs"
        " where run_id in (select max(run_id) from raw.load_runs group by loader) order by loader",
    )
    assert latest == [("api", 0, 0), ("consume", 0, 0), ("feedback", 0, 0), ("reference", 0, 0)]
