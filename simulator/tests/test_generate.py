"""The synthetic source data: determinism, calibration, seasonality, dirty data, late data, memory.

Counts in the manifest are checked against the files on disk by an independent reading of
loaders/CONTRACTS.md below (a small validator of our own, not the generator's code).
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from runtime import db
from runtime.settings import LOADER_ROLE, PROJECT_ROOT
from simulator import pipeline
from simulator.generate import DEFAULT_END, build_parser, generate, main
from simulator.pipeline import WorldProcessError
from simulator.seasonality import EPOCH_DAY, us_federal_holidays
from simulator.world import World

KEY_INSIGHTS = json.loads((PROJECT_ROOT / "simulator" / "key_insights.json").read_text())
START = DEFAULT_END - timedelta(days=89)
END_OF_PERIOD = (DEFAULT_END - EPOCH_DAY).days * 86400 + 86400
EDT = timezone(timedelta(hours=-4))

EVENT_TYPES = {"scheduled", "rescheduled", "started", "technical_issue", "completed", "cancelled", "no_show"}
TERMINAL_ORDER = ("completed", "cancelled", "no_show", "rescheduled")
DEVICES = {"Mobile Phone", "Tablet", "Desktop", "Laptop"}
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ENUMS = {
    "appointment_type": {"initial_consultation", "follow_up", "urgent_care", "mental_health", "prescription_refill"},
    "device_type": DEVICES,
    "technical_issue_type": {"audio", "video", "connection_drop", "login", "screen_share"},
    "cancelled_by": {"patient", "provider", "clinic"},
}
REQUIRED = {
    "scheduled": {"patient_id": str, "provider_id": str, "appointment_type": str, "scheduled_for": "ts"},
    "rescheduled": {"rescheduled_to_appointment_id": str, "new_scheduled_for": "ts"},
    "started": {"device_type": str, "wait_time_minutes": "num"},
    "technical_issue": {"technical_issue_type": str},
    "completed": {"duration_minutes": "num", "connection_quality": int},
    "cancelled": {},
    "no_show": {},
}
RATINGS = (
    "provider_rating",
    "ease_of_use_rating",
    "audio_quality_rating",
    "video_quality_rating",
    "overall_satisfaction",
)


# --- an independent reading of the contract -------------------------------------------------------
def _type_ok(value, kind) -> bool:
    if kind == "num":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "ts":
        return isinstance(value, str)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def classify_event(line: str) -> tuple[str | None, dict | None]:
    """(rejection reason or None, payload)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return "invalid_json", None
    if not isinstance(obj, dict):
        return "not_an_object", None
    common = {"schema_version": int, "event_id": str, "event_type": str, "event_ts": "ts", "appointment_id": str}
    for name in common:
        if obj.get(name) is None:
            return "missing_field", obj
    for name, kind in common.items():
        if not _type_ok(obj[name], kind):
            return "invalid_type", obj
    if obj["schema_version"] != 1:
        return "unsupported_schema_version", obj
    if obj["event_type"] not in EVENT_TYPES:
        return "unknown_enum", obj
    if not ISO_WITH_OFFSET.match(obj["event_ts"]):
        return "invalid_timestamp", obj
    fields = REQUIRED[obj["event_type"]]
    for name in fields:
        if obj.get(name) is None:
            return "missing_field", obj
    for name, kind in fields.items():
        if not _type_ok(obj[name], kind):
            return "invalid_type", obj
        if kind == "ts" and not ISO_WITH_OFFSET.match(obj[name]):
            return "invalid_timestamp", obj
    for name, allowed in ENUMS.items():
        if name in obj and obj[name] is not None and obj[name] not in allowed:
            return "unknown_enum", obj
    wait, duration, quality = obj.get("wait_time_minutes"), obj.get("duration_minutes"), obj.get("connection_quality")
    if wait is not None and not 0 <= wait <= 240:
        return "out_of_range", obj
    if duration is not None and not 0 < duration <= 240:
        return "out_of_range", obj
    if quality is not None and not 1 <= quality <= 5:
        return "out_of_range", obj
    return None, obj


def classify_form(obj) -> str | None:
    if not isinstance(obj, dict):
        return "not_an_object"
    kinds = {"schema_version": int, "feedback_id": str, "appointment_id": str, "submitted_at": "ts"}
    kinds |= dict.fromkeys(RATINGS, int) | {"would_recommend": bool}
    for name in kinds:
        if obj.get(name) is None:
            return "missing_field"
    for name, kind in kinds.items():
        if not _type_ok(obj[name], kind):
            return "invalid_type"
    if obj["schema_version"] != 1:
        return "unsupported_schema_version"
    if not ISO_WITH_OFFSET.match(obj["submitted_at"]):
        return "invalid_timestamp"
    if any(not 1 <= obj[name] <= 5 for name in RATINGS):
        return "out_of_range"
    return None


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_events(out: Path) -> dict:
    """Replay the JSONL files in order and derive what a correct pipeline would hold."""
    rejected: Counter[str] = Counter()
    valid: dict[str, dict] = {}
    by_appointment: defaultdict[str, list[dict]] = defaultdict(list)
    duplicates = messages = out_of_order = non_utc = 0
    latest_seen: dict[str, float] = {}
    for path in sorted((out / "events").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            messages += 1
            reason, obj = classify_event(line)
            if reason:
                rejected[reason] += 1
                continue
            if obj["event_id"] in valid:
                duplicates += 1
                continue
            valid[obj["event_id"]] = obj
            ts = epoch(obj["event_ts"])
            if not obj["event_ts"].endswith("Z"):
                non_utc += 1
            apt = obj["appointment_id"]
            if latest_seen.get(apt, float("-inf")) > ts:
                out_of_order += 1
            latest_seen[apt] = max(latest_seen.get(apt, float("-inf")), ts)
            by_appointment[apt].append(obj)
    return {
        "messages": messages,
        "valid": valid,
        "by_appointment": by_appointment,
        "rejected": rejected,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "non_utc": non_utc,
    }


def final_status(events: list[dict]) -> str:
    terminal = [e for e in events if e["event_type"] in TERMINAL_ORDER]
    if terminal:
        terminal.sort(key=lambda e: (epoch(e["event_ts"]), TERMINAL_ORDER.index(e["event_type"]), e["event_id"]))
        return terminal[-1]["event_type"]
    return "in_progress" if any(e["event_type"] == "started" for e in events) else "scheduled"


def read_landing(landing: Path, appointments: set[str]) -> dict:
    files = 0
    rejected_files: Counter[str] = Counter()
    rejected_forms: Counter[str] = Counter()
    forms: dict[str, dict] = {}
    resubmitted = unknown = 0
    for path in sorted(landing.rglob("*")):
        if path.is_dir():
            continue
        assert re.search(r"/\d{4}/\d{2}/\d{2}/[^/]+$", str(path)), path
        files += 1
        raw = path.read_bytes()
        if path.suffix != ".json" or raw.lstrip()[:1] not in (b"{", b"["):
            rejected_files["not_json"] += 1
            continue
        try:
            content = json.loads(raw.decode("utf-8"))
        except ValueError:
            rejected_files["invalid_json"] += 1
            continue
        for obj in content if isinstance(content, list) else [content]:
            reason = classify_form(obj)
            if reason:
                rejected_forms[reason] += 1
            elif obj["feedback_id"] in forms:
                resubmitted += 1
            else:
                forms[obj["feedback_id"]] = obj
                unknown += obj["appointment_id"] not in appointments
    return {
        "files": files,
        "forms": forms,
        "rejected_files": rejected_files,
        "rejected_forms": rejected_forms,
        "resubmitted": resubmitted,
        "unknown": unknown,
    }


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def run(
    tmp: Path,
    *,
    settings=None,
    as_of: int = END_OF_PERIOD,
    scale: int = 3000,
    seed: int = 42,
    dirty=0.05,
    workers: int = 1,
):
    return generate(
        scale=scale,
        seed=seed,
        start=START,
        end=DEFAULT_END,
        as_of=as_of,
        dirty_rate=dirty,
        out_dir=tmp / "out",
        landing_dir=tmp / "landing",
        write_files=True,
        settings=settings,
        workers=workers,
    )


def clinic_rows(settings) -> tuple[list, list]:
    conn = db.connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("select * from clinic_ops.providers order by provider_id")
            providers = cur.fetchall()
            cur.execute("select * from clinic_ops.patients order by patient_id")
            return providers, cur.fetchall()
    finally:
        conn.close()


# --- fixtures: each world generated once per module -------------------------------------------------
@pytest.fixture(scope="module")
def small(settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    manifest = run(tmp, settings=settings)
    events = read_events(tmp / "out")
    return {"tmp": tmp, "manifest": manifest, "events": events, "rows": clinic_rows(settings)}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibrated")
    manifest = run(tmp, scale=50_000, dirty=0.01)
    return {"tmp": tmp, "manifest": manifest, "events": read_events(tmp / "out")}


# --- determinism --------------------------------------------------------------------------------------
@pytest.mark.dates
def test_same_seed_and_scale_give_identical_files_and_rows(small, settings, tmp_path):
    again = run(tmp_path, settings=settings)
    assert again == small["manifest"]
    for sub in ("out", "landing"):
        first, second = tree_digest(small["tmp"] / sub), tree_digest(tmp_path / sub)
        assert first == second
        assert len(first) > 10
    assert clinic_rows(settings) == small["rows"]


def test_two_workers_give_the_same_bytes_as_one(small, tmp_path):
    """The world simulated in a child process, files written by a thread: not one byte differs. The garbage
    collector's thresholds, raised while the world plays, are the caller's again after."""
    before = gc.get_threshold()
    parallel = run(tmp_path, workers=2)
    assert gc.get_threshold() == before
    assert parallel == small["manifest"]
    for sub in ("out", "landing"):
        assert tree_digest(tmp_path / sub) == tree_digest(small["tmp"] / sub)


def test_a_failing_world_process_is_reported_with_its_traceback(monkeypatch):
    def broken(self):
        yield from ()
        raise ValueError("a draw went wrong")

    world = World(42, 100, START, DEFAULT_END, [], 10, [])
    monkeypatch.setattr(World, "appointments", broken)
    with pytest.raises(WorldProcessError, match="a draw went wrong"):
        list(pipeline.appointments(world, workers=2))


def test_a_failing_child_of_the_pipeline_is_reported_with_its_traceback(monkeypatch, tmp_path):
    """With two workers the world, the video sessions and the clinic tables run in children: a failure in
    any of them is raised in the parent with the child's traceback, and no child is left running."""
    from simulator import generate as generate_module
    from simulator.video_api import CallSessions

    def broken_world(self):
        yield from ()
        raise ValueError("a draw went wrong")

    def broken_session(self, *visit):
        raise ValueError("a session went wrong")

    def broken_tables(*args):
        raise ValueError("a table went wrong")

    for target, name, broken, message in (
        (World, "appointments", broken_world, "a draw went wrong"),
        (CallSessions, "add_visit", broken_session, "a session went wrong"),
        (generate_module, "_clinic_tables_as_of", broken_tables, "a table went wrong"),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(target, name, broken)
            with pytest.raises(WorldProcessError, match=message):
                run(tmp_path / name, scale=300, dirty=0.0, workers=2)
        assert not multiprocessing.active_children()


def test_another_seed_gives_another_world(small, tmp_path):
    other = run(tmp_path, seed=43)
    assert other["appointments"]["by_final_status"] != small["manifest"]["appointments"]["by_final_status"]
    mine = tree_digest(small["tmp"] / "out" / "events")
    theirs = tree_digest(tmp_path / "out" / "events")
    assert not set(mine.values()) & set(theirs.values())


# --- the manifest against the files -------------------------------------------------------------------
def test_manifest_counts_match_the_files(small):
    manifest, events = small["manifest"], small["events"]
    assert manifest["events"]["messages"] == events["messages"]
    assert manifest["events"]["valid_distinct"] == len(events["valid"])
    assert manifest["events"]["duplicate_deliveries"] == events["duplicates"]
    assert manifest["events"]["out_of_order"] == events["out_of_order"]
    assert manifest["events"]["non_utc_offset"] == events["non_utc"]
    assert manifest["rejected"]["events"] == dict(events["rejected"])

    statuses = Counter()
    by_day = Counter()
    for apt, evs in events["by_appointment"].items():
        scheduled = [e for e in evs if e["event_type"] == "scheduled"]
        assert len(scheduled) == 1, apt
        statuses[final_status(evs)] += 1
        by_day[datetime.fromtimestamp(epoch(scheduled[0]["scheduled_for"]), timezone.utc).date().isoformat()] += 1
    assert manifest["appointments"]["by_final_status"] == dict(statuses)
    assert manifest["appointments"]["by_day"] == dict(by_day)
    assert manifest["appointments"]["total"] == len(events["by_appointment"])

    landing = read_landing(small["tmp"] / "landing", set(events["by_appointment"]))
    # The feedback loader skips a file whose sha256 it has seen: every file must be unique to count.
    digests = tree_digest(small["tmp"] / "landing")
    assert len(set(digests.values())) == len(digests)
    feedback = manifest["feedback"]
    assert feedback["files"] == landing["files"]
    assert feedback["forms_valid"] == len(landing["forms"])
    assert feedback["forms_unknown_appointment"] == landing["unknown"]
    assert feedback["forms_resubmitted"] == landing["resubmitted"]
    assert manifest["rejected"]["feedback_forms"] == dict(landing["rejected_forms"])
    assert manifest["rejected"]["feedback_files"] == dict(landing["rejected_files"])


def test_valid_lines_are_canonical_compact_json(small):
    for path in (small["tmp"] / "out" / "events").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            reason, obj = classify_event(line)
            if reason is None:
                assert line == json.dumps(obj, separators=(",", ":"))


def test_valid_form_files_are_canonical_compact_json(small):
    """Form files are built without json.dumps: each valid one must be exactly what json.dumps gives."""
    checked = 0
    for path in (small["tmp"] / "landing").rglob("feedback-FBK-0*.json"):
        if "resubmitted" in path.name:
            continue
        raw = path.read_text()
        obj = json.loads(raw)
        assert classify_form(obj) is None
        assert raw == json.dumps(obj, separators=(",", ":")) + "\n"
        checked += 1
    assert checked > 100


def test_every_dirty_kind_is_present_and_counted(small):
    manifest = small["manifest"]
    event_reasons = {
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_type",
        "invalid_timestamp",
        "unknown_enum",
        "out_of_range",
        "unsupported_schema_version",
    }
    assert set(manifest["rejected"]["events"]) == event_reasons
    assert all(n > 0 for n in manifest["rejected"]["events"].values())
    assert set(manifest["rejected"]["feedback_forms"]) == event_reasons - {"invalid_json", "unknown_enum"}
    assert manifest["rejected"]["feedback_files"]["invalid_json"] > 0  # truncated files
    assert manifest["rejected"]["feedback_files"]["not_json"] > 0
    for key in ("duplicate_deliveries", "out_of_order", "non_utc_offset"):
        assert manifest["events"][key] > 0, key
    assert manifest["feedback"]["forms_unknown_appointment"] > 0
    assert manifest["feedback"]["forms_resubmitted"] > 0
    # Negative and absurd values are among the out-of-range ones.
    lines = [line for p in (small["tmp"] / "out" / "events").glob("*.jsonl") for line in p.read_text().splitlines()]
    ranged = [classify_event(line)[1] for line in lines if classify_event(line)[0] == "out_of_range"]
    assert any((e.get("duration_minutes") or 0) < 0 or (e.get("wait_time_minutes") or 0) < 0 for e in ranged)
    assert any((e.get("duration_minutes") or 0) > 240 or (e.get("wait_time_minutes") or 0) > 240 for e in ranged)


def test_no_dirty_means_no_dirty(tmp_path):
    manifest = run(tmp_path, dirty=0.0)
    assert manifest["rejected"] == {"events": {}, "feedback_forms": {}, "feedback_files": {}}
    assert manifest["events"]["duplicate_deliveries"] == manifest["events"]["out_of_order"] == 0
    assert manifest["events"]["non_utc_offset"] == 0
    assert manifest["feedback"]["forms_unknown_appointment"] == manifest["feedback"]["forms_resubmitted"] == 0
    events = read_events(tmp_path / "out")
    assert not events["rejected"] and events["duplicates"] == 0
    assert manifest["events"]["messages"] == manifest["events"]["valid_distinct"] == len(events["valid"])


def test_dirty_data_leaves_the_valid_truth_unchanged(small, tmp_path):
    clean = run(tmp_path, dirty=0.0)
    dirty = small["manifest"]
    assert clean["appointments"] == dirty["appointments"]
    assert clean["key_insights"] == dirty["key_insights"]
    assert clean["events"]["valid_distinct"] == dirty["events"]["valid_distinct"]


# --- realism ----------------------------------------------------------------------------------------
def test_key_insights_are_calibrated_at_50k(calibrated):
    manifest, events = calibrated["manifest"], calibrated["events"]
    # Recompute status, wait and issue shares from the files, not from the generator's counters.
    statuses, waits, started, issues = Counter(), defaultdict(list), Counter(), Counter()
    for evs in events["by_appointment"].values():
        statuses[final_status(evs)] += 1
        start = [e for e in evs if e["event_type"] == "started"]
        if start:
            device = start[0]["device_type"]
            started[device] += 1
            waits[device].append(start[0]["wait_time_minutes"])
            issues[device] += any(e["event_type"] == "technical_issue" for e in evs)
    final = sum(statuses[s] for s in TERMINAL_ORDER)
    assert final >= 50_000 * 0.98
    for status, expected in KEY_INSIGHTS["appointment_status_share_pct"].items():
        share = 100 * statuses[status] / final
        assert abs(share - expected) <= 1.0, (status, share)
        assert abs(manifest["key_insights"]["appointment_status_share_pct"][status] - round(share, 2)) < 1e-9
    expected_waits = KEY_INSIGHTS["avg_wait_time_minutes_by_device"]
    mean_waits = {d: statistics.fmean(w) for d, w in waits.items()}
    for device, expected in expected_waits.items():
        assert abs(mean_waits[device] - expected) <= 0.3, (device, mean_waits[device])
    assert sorted(mean_waits, key=mean_waits.get) == sorted(expected_waits, key=expected_waits.get)
    for device, expected in KEY_INSIGHTS["technical_issues_share_pct_by_device"].items():
        share = 100 * issues[device] / started[device]
        assert abs(share - expected) <= 1.0, (device, share)
        assert abs(manifest["key_insights"]["technical_issues_share_pct_by_device"][device] - round(share, 2)) < 1e-9
    ratings = manifest["key_insights"]["ratings_by_specialty"]
    for specialty, expected in KEY_INSIGHTS["ratings_by_specialty"].items():
        for name, value in expected.items():
            assert abs(ratings[specialty][name] - value) <= 0.1, (specialty, name, ratings[specialty][name])
        assert ratings[specialty]["forms"] > 1000


def test_forms_agree_with_the_manifest_ratings(calibrated):
    landing = read_landing(calibrated["tmp"] / "landing", set(calibrated["events"]["by_appointment"]))
    forms = [f for f in landing["forms"].values() if f["appointment_id"] in calibrated["events"]["by_appointment"]]
    ratings = calibrated["manifest"]["key_insights"]["ratings_by_specialty"]
    assert len(forms) == sum(r["forms"] for r in ratings.values())
    overall = statistics.fmean(f["provider_rating"] for f in forms)
    weighted = sum(r["provider_rating"] * r["forms"] for r in ratings.values()) / len(forms)
    assert abs(overall - weighted) < 0.01
    # Tone agrees with the rating.
    low = [f["comments"] for f in forms if f["comments"] and f["overall_satisfaction"] == 1]
    high = [f["comments"] for f in forms if f["comments"] and f["overall_satisfaction"] == 5]
    assert not {c.split(".")[0] for c in low} & {c.split(".")[0] for c in high}
    recommend = {
        k: statistics.fmean(f["would_recommend"] for f in forms if f["overall_satisfaction"] == k) for k in (1, 5)
    }
    assert recommend[1] < 0.2 < 0.8 < recommend[5]


def _scheduled(calibrated) -> list[dict]:
    return [e for e in calibrated["events"]["valid"].values() if e["event_type"] == "scheduled"]


def test_seasonality_weekdays_business_hours_holidays(calibrated):
    by_day = calibrated["manifest"]["appointments"]["by_day"]
    days = [START + timedelta(days=i) for i in range(90)]
    holidays = {d for d in days if d in us_federal_holidays(d.year)}
    assert holidays == {date(2026, 9, 7), date(2026, 10, 12)}
    weekday = [by_day[d.isoformat()] for d in days if d.weekday() < 5 and d not in holidays]
    weekend = [by_day[d.isoformat()] for d in days if d.weekday() >= 5]
    assert statistics.fmean(weekend) < 0.5 * statistics.fmean(weekday)
    mondays = [by_day[d.isoformat()] for d in days if d.weekday() == 0 and d not in holidays]
    for holiday in holidays:
        assert by_day[holiday.isoformat()] < 0.5 * min(mondays)
    # Clinic hours are New York time (EDT in this period): most visits between 08:00 and 18:00 local.
    local_hours = Counter(
        datetime.fromisoformat(e["scheduled_for"].replace("Z", "+00:00")).astimezone(EDT).hour
        for e in _scheduled(calibrated)
        if epoch(e["scheduled_for"]) < END_OF_PERIOD
    )
    total = sum(local_hours.values())
    assert sum(n for h, n in local_hours.items() if 8 <= h < 18) / total > 0.85
    assert all(7 <= h <= 19 for h in local_hours)


def test_durations_no_shows_and_connection_quality_behave(calibrated):
    by_apt = calibrated["events"]["by_appointment"]
    durations, lead_no_show, quality = defaultdict(list), defaultdict(list), defaultdict(list)
    for evs in by_apt.values():
        sched = next(e for e in evs if e["event_type"] == "scheduled")
        types = {e["event_type"] for e in evs}
        if types & {"no_show", "completed"}:
            lead_days = (epoch(sched["scheduled_for"]) - epoch(sched["event_ts"])) / 86400
            lead_no_show[lead_days > 10].append("no_show" in types)
        done = next((e for e in evs if e["event_type"] == "completed"), None)
        if done:
            durations[sched["appointment_type"]].append(done["duration_minutes"])
            quality["technical_issue" in types].append(done["connection_quality"])
    means = {t: statistics.fmean(d) for t, d in durations.items()}
    assert means["mental_health"] > means["initial_consultation"] > means["follow_up"] > means["prescription_refill"]
    assert statistics.fmean(lead_no_show[True]) > 1.5 * statistics.fmean(lead_no_show[False])
    assert statistics.fmean(quality[True]) < statistics.fmean(quality[False]) - 1.0


def test_rescheduled_appointments_chain_to_new_ones(calibrated):
    by_apt = calibrated["events"]["by_appointment"]
    links = {}
    for apt, evs in by_apt.items():
        for e in evs:
            if e["event_type"] == "rescheduled":
                links[apt] = e["rescheduled_to_appointment_id"]
    assert len(links) > 4000
    for old, new in links.items():
        if new in by_apt:
            scheduled = next(e for e in by_apt[new] if e["event_type"] == "scheduled")
            assert scheduled["rescheduled_from_appointment_id"] == old
    assert any(links.get(new) in by_apt for new in links.values())  # A -> B -> C


# --- late data and --as-of ----------------------------------------------------------------------------
@pytest.mark.dates
def test_as_of_emits_what_arrived_and_later_runs_add_the_rest(small, settings, tmp_path):
    cut = END_OF_PERIOD - 20 * 86400
    early = run(tmp_path, settings=settings, as_of=cut)
    early_rows = clinic_rows(settings)
    full_dir = small["tmp"]
    early_lines = {line for p in (tmp_path / "out" / "events").glob("*.jsonl") for line in p.read_text().splitlines()}
    full_lines = {line for p in (full_dir / "out" / "events").glob("*.jsonl") for line in p.read_text().splitlines()}
    assert early_lines < full_lines
    early_files, full_files = tree_digest(tmp_path / "landing"), tree_digest(full_dir / "landing")
    assert early_files.items() < full_files.items()
    early_events = read_events(tmp_path / "out")
    assert all(epoch(e["event_ts"]) <= cut for e in early_events["valid"].values())
    # Late data: events that happened before the cut but arrived after it are missing from the early run.
    late = [
        e
        for e in small["events"]["valid"].values()
        if epoch(e["event_ts"]) <= cut and e["event_id"] not in early_events["valid"]
    ]
    assert late
    assert early["events"]["not_yet_arrived"] == len(late)
    assert early["feedback"]["forms_not_yet_arrived"] > 0
    assert small["manifest"]["feedback"]["forms_not_yet_arrived"] > 0  # some forms come after the period
    # The clinic tables show the state at the cut; later changes carry a later updated_at.
    cut_ts = datetime.fromtimestamp(cut, timezone.utc)
    assert all(row[-1] <= cut_ts for row in early_rows[0])
    later = {row[0]: row for row in small["rows"][0]}
    changed = [row for row in early_rows[0] if later[row[0]] != row]
    assert changed and all(later[row[0]][-1] > cut_ts for row in changed)


def test_clinic_tables_are_readable_by_the_loader_role(small, settings):
    conn = db.connect(settings, role=LOADER_ROLE)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*), count(distinct specialty) from clinic_ops.providers")
            providers, specialties = cur.fetchone()
            cur.execute("select count(*), min(date_of_birth) < min(registration_date) from clinic_ops.patients")
            patients, born_before = cur.fetchone()
    finally:
        conn.close()
    assert providers == small["manifest"]["reference"]["providers"]
    assert specialties == 6
    assert patients == small["manifest"]["reference"]["patients"]
    assert born_before


def test_canaries_are_planted_in_patient_identifiers(small):
    canaries = small["manifest"]["canaries"]
    assert {c["column"] for c in canaries} == {"first_name", "last_name", "email", "phone", "address"}
    patients = {row[0]: row for row in small["rows"][1]}
    columns = ("patient_id", "first_name", "last_name", "email", "phone", "address")
    for canary in canaries:
        row = patients[canary["patient_id"]]
        assert canary["token"] in row[columns.index(canary["column"])]
        assert canary["patient_id"] in {e["patient_id"] for e in small["events"]["valid"].values() if "patient_id" in e}


# --- streaming and the CLI ----------------------------------------------------------------------------
def _peak_rss_kib(scale: int, tmp: Path) -> int:
    """Peak RSS of a fresh process generating ``scale`` appointments (files included, no database)."""
    code = (
        "import resource, sys; from simulator.generate import main; "
        f"main(['--scale', '{scale}', '--no-db', '--out', sys.argv[1], '--landing', sys.argv[2]]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp / "out"), str(tmp / "landing")],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    )
    return int(done.stdout.strip().splitlines()[-1])


def test_memory_does_not_grow_with_scale(tmp_path):
    small_peak = _peak_rss_kib(1_000, tmp_path / "a")
    large_peak = _peak_rss_kib(10_000, tmp_path / "b")
    # Ten times the appointments: holding them (with their events) would add about 20 MB; streaming adds
    # under 1 MB here (measured: 29.3 MB at 1k, 30.0 MB at 10k, 31.7 MB at 100k).
    assert large_peak < small_peak + 6 * 1024, (small_peak, large_peak)


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        for option in action.option_strings:
            assert option in text
        assert action.help


def test_cli_writes_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("TELEMED_LANDING_DIR", str(tmp_path / "landing"))
    code = main(["--scale", "300", "--no-db", "--out", str(tmp_path / "out"), "--as-of", "2026-09-15T00:00:00Z"])
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["generator"]["as_of"] == "2026-09-15T00:00:00Z"
    assert manifest["generator"]["scale"] == 300
    assert list((tmp_path / "landing").rglob("*.json"))


@pytest.mark.dates
def test_anomalies_change_only_their_day(tmp_path):
    """--anomaly injects what the monitors must catch: a no-show spike and a low-volume day."""
    from datetime import date

    from simulator.generate import generate

    common = {
        "scale": 3000,
        "seed": 7,
        "start": date(2026, 9, 1),
        "end": date(2026, 9, 30),
        "as_of": int((date(2026, 10, 1) - date(1970, 1, 1)).total_seconds()),
        "dirty_rate": 0.0,
        "landing_dir": None,
        "write_files": False,
        "settings": None,
    }
    plain = generate(out_dir=tmp_path / "plain", **common)
    odd = generate(
        out_dir=tmp_path / "odd",
        anomalies=[("no_show_spike", date(2026, 9, 23), 8.0), ("low_volume", date(2026, 9, 22), 0.1)],
        **common,
    )
    by_day_plain, by_day_odd = plain["appointments"]["by_day"], odd["appointments"]["by_day"]
    assert by_day_odd["2026-09-22"] <= 0.15 * by_day_plain["2026-09-22"]
    assert by_day_odd["2026-09-21"] == by_day_plain["2026-09-21"]
    no_shows_plain = plain["key_insights"]["appointment_status_share_pct"]["no_show"]
    no_shows_odd = odd["key_insights"]["appointment_status_share_pct"]["no_show"]
    assert no_shows_odd > no_shows_plain + 0.5, "one spiking day lifts the period's no-show share visibly"
    assert odd["generator"]["anomalies"][0] == {"kind": "no_show_spike", "date": "2026-09-23", "factor": 8.0}
