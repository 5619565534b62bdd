"""The video platform's call sessions (simulator/video_api.py) and their API (simulator/api_server.py):
deterministic, independent of the rest of the world's outputs, consistent with the appointment events,
and served like a real API (pagination that covers every record once, faults from a seed, 401 and 400)."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from loaders.validation import check_event
from simulator import video_api
from simulator.api_server import ApiServer, Faults, SessionStore
from simulator.generate import generate
from testkit.clock import AS_OF, PERIOD_END

SCALE = 250


def run(out: Path, seed: int = 5) -> dict:
    return generate(
        scale=SCALE,
        seed=seed,
        start=PERIOD_END - timedelta(days=89),
        end=PERIOD_END,
        as_of=int(AS_OF.timestamp()),
        dirty_rate=0.05,
        out_dir=out,
        landing_dir=out / "landing",
        write_files=True,
        settings=None,
    )


def digest(folder: Path, exclude: str = "video_api") -> str:
    """One sha256 over every file under ``folder`` but the sessions (and the manifest without its block)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and exclude not in p.parts):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            manifest.pop("video_api", None)
            data = json.dumps(manifest).encode()
        h.update(str(path.relative_to(folder)).encode() + b"\0" + data)
    return h.hexdigest()


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("video-worlds")
    for name in ("first", "again"):
        run(base / name)
    return {name: base / name for name in ("first", "again")}


def test_sessions_are_deterministic_and_leave_every_other_output_byte_identical(worlds, tmp_path, monkeypatch):
    first, again = worlds["first"], worlds["again"]
    sessions = first / "video_api" / video_api.FILE_NAME
    assert sessions.read_bytes() == (again / "video_api" / video_api.FILE_NAME).read_bytes()
    # Another seed, other sessions.
    other = run(tmp_path / "other", seed=6)
    assert other["video_api"]["sessions"] > 0
    assert (tmp_path / "other" / "video_api" / video_api.FILE_NAME).read_bytes() != sessions.read_bytes()
    # The world without the platform: its events, forms and manifest are the same bytes.
    monkeypatch.setattr(video_api.CallSessions, "add", lambda self, appointment: None)
    without = run(tmp_path / "without")
    assert digest(tmp_path / "without") == digest(first)
    assert without["video_api"]["sessions"] == 0


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_sessions_agree_with_the_appointment_events(worlds):
    folder = worlds["first"]
    events: dict[str, dict[str, dict]] = {}
    for path in sorted((folder / "events").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if check_event(event)[0] is None and event["event_type"] in ("started", "completed"):
                events.setdefault(str(event.get("appointment_id")), {})[event["event_type"]] = event
    lines = (folder / "video_api" / video_api.FILE_NAME).read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    clean = [item["record"] for item in records if "dirty" not in item]
    manifest = json.loads((folder / "manifest.json").read_text())["video_api"]
    assert len(clean) == manifest["sessions"] > 100
    assert len({r["appointment_id"] for r in clean}) == len(clean), "one session per started appointment"
    compared = 0
    for record in clean:
        seen = events.get(record["appointment_id"], {})
        if "started" not in seen:
            continue  # its started event is dirty or still on its way: nothing to compare with
        compared += 1
        patient, provider = record["participants"]
        scheduled = _iso(record["scheduled_start"])
        provider_lag = (_iso(provider["joined_at"]) - scheduled).total_seconds() / 60
        assert 0 <= provider_lag - seen["started"]["wait_time_minutes"] <= 0.5
        assert _iso(patient["joined_at"]) < _iso(provider["joined_at"])
        if "completed" in seen:
            both = min(_iso(patient["left_at"]), _iso(provider["left_at"])) - _iso(provider["joined_at"])
            assert abs(both.total_seconds() / 60 - seen["completed"]["duration_minutes"]) <= 1.0
        assert patient["platform"] in ("ios", "android", "web") and provider["platform"] == "web"
    assert compared > 0.95 * len(clean)


def _all_pages(client: httpx.Client, limit: int, since: str | None = None) -> list[dict]:
    records, cursor = [], None
    while True:
        params = {
            "limit": limit,
            **({"cursor": cursor} if cursor else {}),
            **({"updated_since": since} if since else {}),
        }
        body = client.get("/v1/call-sessions", params=params).raise_for_status().json()
        records += body["data"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return records


def test_the_api_pages_through_every_record_once_and_misbehaves_from_its_seed(worlds):
    store = SessionStore(worlds["first"] / "video_api" / video_api.FILE_NAME)
    manifest = json.loads((worlds["first"] / "manifest.json").read_text())["video_api"]
    server = ApiServer(store, "token")
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer token"}) as client:
            records = _all_pages(client, limit=7)
            assert len(records) == manifest["records_at_as_of"]
            keys = [json.dumps(r, sort_keys=True) for r in records]
            assert len(set(keys)) == len(keys)
            stamps = [r["updated_at"] for r in records if isinstance(r, dict) and r.get("updated_at", "").endswith("Z")]
            assert stamps == sorted(stamps)
            # updated_since is inclusive and narrows the scan to what changed since.
            since = stamps[len(stamps) // 2]
            later = _all_pages(client, limit=50, since=since)
            assert 0 < len(later) < len(records)
            assert all(r["updated_at"] >= since for r in later if isinstance(r, dict) and r["updated_at"].endswith("Z"))
            # Clear refusals.
            assert client.get("/v1/call-sessions", params={"limit": 0}).status_code == 400
            assert client.get("/v1/call-sessions", params={"cursor": "@@"}).status_code == 400
            assert client.get("/v1/call-sessions", headers={"Authorization": "Bearer nope"}).status_code == 401

            # The same fault seed, the same misbehaviour, request by request.
            def fates(seed: int) -> list[int]:
                server.set_faults(Faults(rate_429=0.3, rate_5xx=0.3, seed=seed))
                return [client.get("/v1/call-sessions", params={"limit": 1}).status_code for _ in range(30)]

            first = fates(9)
            assert first == fates(9)
            assert {429, 200} <= set(first) and set(first) & {500, 502, 503}
            assert first != fates(10)
    finally:
        server.stop()


def test_each_appointment_draws_what_a_generator_seeded_with_its_string_draws():
    """The sessions reseed one generator from the integer ``Random(str)`` would make: the same stream."""
    sessions = video_api.CallSessions(5, 0, 0.0, None, None)
    for appointment_id in ("APT-00000001", "APT-00012345", "APT-99999999", ""):
        reference = random.Random(f"video-api:5:{appointment_id}")
        mine = sessions.rng_for(appointment_id)
        assert [mine.random() for _ in range(50)] == [reference.random() for _ in range(50)]
        assert mine.lognormvariate(0, 0.4) == reference.lognormvariate(0, 0.4)
        assert mine.getrandbits(128) == reference.getrandbits(128)


def test_clean_session_lines_are_canonical_compact_json(worlds):
    """Clean lines are built without json.dumps: each must be exactly what json.dumps gives."""
    lines = (worlds["first"] / "video_api" / video_api.FILE_NAME).read_text().splitlines()
    clean = 0
    for line in lines[1:]:
        item = json.loads(line)
        if "dirty" not in item:
            clean += 1
            assert line == json.dumps(item, separators=(",", ":"))
    assert clean > 100
