"""dbt on hand-written raw rows: the lifecycle rules, SCD2, privacy, grants, and incremental == full refresh.

The rows go straight into raw (as the loaders would land them) so every tricky case is pinned down:
out-of-order events, a tie between two terminal events, reschedule chains (one with a middle link that
arrives late, one whose link a later booking drops), feedback for an appointment that arrives later, a
provider version loaded late, a patient over 89, a patient record arriving after its appointments, a
patient's new version, and a birthday between two builds. Then the scheduled run after the late rows
(`dbt build --selector hourly`, a day later by the business clock) must leave the marts and the
incremental intermediate tables identical to a full refresh.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from loaders.tests.test_pipeline import BUILT_SCHEMAS, WITHOUT_TESTS, dbt, mart_fingerprints, query
from runtime import db
from runtime.settings import LOADER_ROLE, REPORTING_ROLE
from testkit.clock import AS_OF

# The business clock of the run after the late rows: two days on, past PAT-4's birthday (2 November).
LATER = ("--vars", json.dumps({"as_of": (AS_OF + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")}))

EVENT_COLUMNS = (
    "event_id, appointment_id, event_type, event_ts, schema_version, payload,"
    " kafka_topic, kafka_partition, kafka_offset"
)


def booked(patient: str, provider: str, kind: str, scheduled_for: str, moved_from: str | None = None) -> dict:
    payload = {"patient_id": patient, "provider_id": provider, "appointment_type": kind, "scheduled_for": scheduled_for}
    if moved_from:
        payload["rescheduled_from_appointment_id"] = moved_from
    return payload


def moved(to: str, new_time: str) -> dict:
    return {"rescheduled_to_appointment_id": to, "new_scheduled_for": new_time}


def joined(device: str, wait: float) -> dict:
    return {"device_type": device, "wait_time_minutes": wait}


def done(duration: float, quality: int) -> dict:
    return {"duration_minutes": duration, "connection_quality": quality}


# (event_id, appointment_id, event_type, event_ts, payload[, loaded how long ago])
FIRST_EVENTS = [
    # APT-1: arrives completed-first; the booking's time has a +02:00 offset (10:00+02 is 08:00Z).
    ("e1-3", "APT-1", "completed", "2026-05-10T10:45:00+02:00", done(30, 4)),
    (
        "e1-1",
        "APT-1",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-1", "PRV-1", "follow_up", "2026-05-10T10:00:00+02:00"),
    ),
    ("e1-2", "APT-1", "started", "2026-05-10T08:05:00Z", joined("Laptop", 5)),
    ("e1-4", "APT-1", "technical_issue", "2026-05-10T08:20:00Z", {"technical_issue_type": "audio"}),
    # APT-2 -> APT-3 -> APT-4: a visit moved twice, then completed on a phone.
    (
        "e2-1",
        "APT-2",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-2", "PRV-1", "initial_consultation", "2026-06-10T10:00:00Z"),
    ),
    ("e2-2", "APT-2", "rescheduled", "2026-05-02T09:00:00Z", moved("APT-3", "2026-06-12T10:00:00Z")),
    (
        "e3-1",
        "APT-3",
        "scheduled",
        "2026-05-02T09:00:00Z",
        booked("PAT-2", "PRV-1", "initial_consultation", "2026-06-12T10:00:00Z", "APT-2"),
    ),
    ("e3-2", "APT-3", "rescheduled", "2026-05-03T09:00:00Z", moved("APT-4", "2026-06-14T10:00:00Z")),
    (
        "e4-1",
        "APT-4",
        "scheduled",
        "2026-05-03T09:00:00Z",
        booked("PAT-2", "PRV-1", "initial_consultation", "2026-06-14T10:00:00Z", "APT-3"),
    ),
    ("e4-2", "APT-4", "started", "2026-06-14T10:03:00Z", joined("Mobile Phone", 3)),
    ("e4-3", "APT-4", "completed", "2026-06-14T10:30:00Z", done(27, 5)),
    (
        "e5-1",
        "APT-5",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-1", "PRV-2", "urgent_care", "2026-05-11T10:00:00Z"),
    ),
    ("e5-2", "APT-5", "cancelled", "2026-05-05T09:00:00Z", {"cancelled_by": "patient"}),
    (
        "e6-1",
        "APT-6",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-1", "PRV-2", "mental_health", "2026-05-11T11:00:00Z"),
    ),
    ("e6-2", "APT-6", "no_show", "2026-05-11T11:30:00Z", {}),
    # APT-7: completed and cancelled at the same instant (cancelled wins); provider and patient unknown yet.
    (
        "e7-1",
        "APT-7",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-3", "PRV-3", "follow_up", "2026-05-12T11:00:00Z"),
    ),
    ("e7-2", "APT-7", "started", "2026-05-12T11:10:00Z", joined("Tablet", 10)),
    ("e7-3", "APT-7", "technical_issue", "2026-05-12T11:15:00Z", {"technical_issue_type": "video"}),
    ("e7-4", "APT-7", "technical_issue", "2026-05-12T11:12:00Z", {"technical_issue_type": "connection_drop"}),
    ("e7-5", "APT-7", "completed", "2026-05-12T11:40:00Z", done(30, 2)),
    ("e7-6", "APT-7", "cancelled", "2026-05-12T11:40:00Z", {"cancelled_by": "clinic"}),
    # APT-8: booked, nothing else yet.
    (
        "e8-1",
        "APT-8",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-1", "PRV-2", "prescription_refill", "2026-05-20T11:00:00Z"),
    ),
    # APT-9: only its start arrives at first (just after midnight, May 17); the booking for 23:58 on May 16
    # comes with the second load, moving the visit to the day before.
    ("e9-2", "APT-9", "started", "2026-05-17T00:03:00Z", joined("Tablet", 5)),
    # APT-10: the same on the first day: joined at 23:58 on May 9 for a visit booked for 00:05 on May 10.
    # Until the booking arrives, May 9 is the first day of ops_daily_kpis; after, it is not.
    ("e10-2", "APT-10", "started", "2026-05-09T23:58:00Z", joined("Laptop", 1)),
    # APT-21 -> (APT-22, late) -> APT-23: the middle link arrives with the second load.
    (
        "e21-1",
        "APT-21",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-1", "PRV-2", "follow_up", "2026-05-13T09:00:00Z"),
    ),
    ("e21-2", "APT-21", "rescheduled", "2026-05-02T09:00:00Z", moved("APT-22", "2026-05-14T09:00:00Z")),
    (
        "e23-1",
        "APT-23",
        "scheduled",
        "2026-05-04T09:00:00Z",
        booked("PAT-1", "PRV-2", "follow_up", "2026-05-15T09:00:00Z", "APT-22"),
    ),
    ("e23-2", "APT-23", "no_show", "2026-05-15T09:30:00Z", {}),
]

# APT-31 -> APT-32 -> APT-33, loaded a month before the rest (lists of their own: the stewardship world
# reuses FIRST_EVENTS and LATE_EVENTS): APT-32 is booked again with the second load, without its link,
# which makes it the first of a chain of two; APT-33, never loaded again, must follow.
DROPPED_LINK_FIRST = [
    (
        "e31-1",
        "APT-31",
        "scheduled",
        "2026-05-20T09:00:00Z",
        booked("PAT-1", "PRV-1", "follow_up", "2026-05-26T09:00:00Z"),
        "30 days",
    ),
    ("e31-2", "APT-31", "rescheduled", "2026-05-21T09:00:00Z", moved("APT-32", "2026-05-27T09:00:00Z"), "30 days"),
    (
        "e32-1",
        "APT-32",
        "scheduled",
        "2026-05-21T09:00:00Z",
        booked("PAT-1", "PRV-1", "follow_up", "2026-05-27T09:00:00Z", "APT-31"),
        "30 days",
    ),
    ("e32-2", "APT-32", "rescheduled", "2026-05-22T09:00:00Z", moved("APT-33", "2026-05-28T09:00:00Z"), "30 days"),
    (
        "e33-1",
        "APT-33",
        "scheduled",
        "2026-05-22T09:00:00Z",
        booked("PAT-1", "PRV-1", "follow_up", "2026-05-28T09:00:00Z", "APT-32"),
        "30 days",
    ),
]
DROPPED_LINK_LATE = [
    # APT-32's newer booking, without the link to APT-31.
    (
        "e32-3",
        "APT-32",
        "scheduled",
        "2026-05-23T09:00:00Z",
        booked("PAT-1", "PRV-1", "follow_up", "2026-05-27T09:00:00Z"),
    ),
]

LATE_EVENTS = [
    (
        "e9-1",
        "APT-9",
        "scheduled",
        "2026-05-02T09:00:00Z",
        booked("PAT-1", "PRV-1", "follow_up", "2026-05-16T23:58:00Z"),
    ),
    ("e9-3", "APT-9", "completed", "2026-05-17T00:30:00Z", done(27, 5)),
    (
        "e10-1",
        "APT-10",
        "scheduled",
        "2026-05-03T09:00:00Z",
        booked("PAT-1", "PRV-1", "follow_up", "2026-05-10T00:05:00Z"),
    ),
    ("e10-3", "APT-10", "completed", "2026-05-10T00:40:00Z", done(30, 4)),
    ("e8-2", "APT-8", "started", "2026-05-20T11:02:00Z", joined("Desktop", 2)),
    ("e8-3", "APT-8", "completed", "2026-05-20T11:30:00Z", done(28, 3)),
    (
        "e999-1",
        "APT-999",
        "scheduled",
        "2026-05-01T09:00:00Z",
        booked("PAT-2", "PRV-1", "follow_up", "2026-06-15T09:00:00Z"),
    ),
    ("e999-2", "APT-999", "started", "2026-06-15T09:01:00Z", joined("Laptop", 1)),
    ("e999-3", "APT-999", "completed", "2026-06-15T09:20:00Z", done(19, 5)),
    (
        "e22-1",
        "APT-22",
        "scheduled",
        "2026-05-02T09:00:00Z",
        booked("PAT-1", "PRV-2", "follow_up", "2026-05-14T09:00:00Z", "APT-21"),
    ),
    ("e22-2", "APT-22", "rescheduled", "2026-05-04T09:00:00Z", moved("APT-23", "2026-05-15T09:00:00Z")),
]

# (provider_id, first name, last name, specialty, state, years, rate, hours, active, updated_at[, loaded how
# long ago]). The first versions were loaded a month ago: the late load's runs must not count them as new.
PROVIDERS = [
    ("PRV-1", "Ann", "Lee", "Family Medicine", "CA", 10, 150, 40, True, "2026-01-01T00:00:00Z", "30 days"),
    ("PRV-1", "Ann", "Lee", "Cardiology", "CA", 11, 180, 40, True, "2026-06-01T00:00:00Z", "30 days"),
    ("PRV-2", "Bob", "Ray", "Internal Medicine", "NY", 5, 120, 30, True, "2026-02-01T00:00:00Z", "30 days"),
]
# A PRV-2 version written at 10:30 on May 11 but loaded late: APT-5 (10:00) keeps the old one, APT-6
# (11:00) moves to it. PRV-3 arrives for the first time.
LATE_PROVIDERS = [
    ("PRV-2", "Bob", "Ray", "Psychiatry", "NY", 5, 130, 30, True, "2026-05-11T10:30:00Z"),
    ("PRV-3", "Cy", "Dee", "Pediatrics", "TX", 2, 90, 20, True, "2026-01-01T00:00:00Z"),
]
# (patient_id, birth date, gender, insured, registered, state[, updated_at[, loaded how long ago]])
PATIENTS = [
    ("PAT-1", "1980-05-05", "Female", True, "2025-01-01", "CA"),
    ("PAT-2", "1930-01-01", "Male", False, "2025-02-01", "NY"),
]
# Loaded a month before the rest and never again: only a birthday makes a run re-derive its age.
BIRTHDAY_PATIENTS = [("PAT-4", "1990-11-02", "Male", True, "2024-06-01", "OR", "2026-01-01T00:00:00Z", "30 days")]
# PAT-3's record arrives after its appointment (an inferred member until then); PAT-1 moved.
LATE_PATIENTS = [
    ("PAT-3", "1985-07-07", "Other", True, "2025-03-01", "TX"),
    ("PAT-1", "1980-05-05", "Female", True, "2025-01-01", "WA", "2026-06-01T00:00:00Z"),
]


def form(provider: int, overall: int, recommend: bool, comments: str | None = None) -> dict:
    return {
        "provider_rating": provider,
        "overall_satisfaction": overall,
        "ease_of_use_rating": 4,
        "audio_quality_rating": 3,
        "video_quality_rating": 4,
        "would_recommend": recommend,
        "comments": comments,
    }


FIRST_FEEDBACK = [
    ("FBK-1", "APT-1", "2026-05-10T12:00:00Z", form(5, 4, True, "ok")),
    ("FBK-2", "APT-4", "2026-06-15T12:00:00Z", form(3, 2, False)),
    # For an appointment that only arrives with the second load.
    ("FBK-3", "APT-999", "2026-06-15T12:00:00Z", form(4, 5, True)),
]
LATE_FEEDBACK = [("FBK-4", "APT-6", "2026-05-12T08:00:00Z", form(1, 1, False))]


def land(settings, *, events=(), providers=(), patients=(), feedback=()) -> None:
    """Insert rows into raw as the loader role, with _loaded_at = now() as the loaders do."""
    conn = db.connect(settings, role=LOADER_ROLE)
    try:
        with conn, conn.cursor() as cur:
            for offset, (event_id, appointment_id, event_type, event_ts, payload, *ago) in enumerate(events):
                # Loaded some time before now (relative to when the row lands, as every load time here).
                cur.execute(
                    f"insert into raw.appointment_events ({EVENT_COLUMNS}, _loaded_at)"
                    " values (%s, %s, %s, %s, 1, %s, 'fixture', 0, %s, now() - cast(%s as interval))",
                    (event_id, appointment_id, event_type, event_ts, json.dumps(payload), offset, *(ago or ["0 days"])),
                )
            for *row, ago in (row if len(row) == 11 else (*row, "0 days") for row in providers):
                cur.execute(
                    "insert into raw.providers (provider_id, first_name, last_name, specialty, state, years_experience,"
                    " hourly_rate, available_hours, active, updated_at, payload, _loaded_at)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{}', now() - cast(%s as interval))",
                    (*row, ago),
                )
            for patient_id, birth, gender, insured, registered, state, *version in patients:
                updated_at = version[0] if version else "2026-01-01T00:00:00Z"
                loaded_ago = version[1] if len(version) > 1 else "0 days"
                cur.execute(
                    "insert into raw.patients (patient_id, first_name, last_name, email, phone, address, date_of_birth,"
                    " gender, has_insurance, registration_date, state, updated_at, payload, _loaded_at)"
                    " values (%s, 'Jane', 'Doe', 'jane@example.org', '555-0100', '1 Main St', %s, %s, %s, %s, %s,"
                    " %s, '{}', now() - cast(%s as interval))",
                    (patient_id, birth, gender, insured, registered, state, updated_at, loaded_ago),
                )
            for index, (feedback_id, appointment_id, submitted_at, payload) in enumerate(feedback):
                cur.execute(
                    "insert into raw.patient_feedback (feedback_id, appointment_id, submitted_at, schema_version,"
                    " payload, source_path, source_sha256, form_index)"
                    " values (%s, %s, %s, 1, %s, 'fixture.json', %s, %s)",
                    (feedback_id, appointment_id, submitted_at, json.dumps(payload), f"sha-{feedback_id}", index),
                )
    finally:
        conn.close()


@pytest.fixture(scope="module")
def built(settings, tmp_path_factory):
    """First load, first build; returns the dbt work dir for later builds."""
    work = tmp_path_factory.mktemp("dbt")
    land(
        settings,
        events=FIRST_EVENTS + DROPPED_LINK_FIRST,
        providers=PROVIDERS,
        patients=PATIENTS + BIRTHDAY_PATIENTS,
        feedback=FIRST_FEEDBACK,
    )
    dbt(settings, work, "build", "--full-refresh")
    return work


def appointments(settings) -> dict[str, dict]:
    rows = query(
        settings,
        "select appointment_id, status, device_type, wait_time_minutes, duration_minutes, had_technical_issues,"
        " technical_issue_type, technical_issue_count, reschedule_count, original_appointment_id, cancelled_by,"
        " date_id, time_id, provider_key, patient_key from marts.fact_appointment",
    )
    return {row["appointment_id"]: row for row in rows}


def daily_appointments(settings) -> dict[int, int]:
    return {
        r["date_id"]: r["appointments"]
        for r in query(settings, "select date_id, appointments from marts.ops_daily_kpis")
    }


def test_final_status_device_and_measures_come_from_event_time(settings, built):
    facts = appointments(settings)
    assert {k: v["status"] for k, v in facts.items()} == {
        "APT-1": "completed",
        "APT-2": "rescheduled",
        "APT-3": "rescheduled",
        "APT-4": "completed",
        "APT-5": "cancelled",
        "APT-6": "no_show",
        "APT-7": "cancelled",
        "APT-8": "scheduled",
        "APT-9": "in_progress",
        "APT-10": "in_progress",
        "APT-21": "rescheduled",
        "APT-23": "no_show",
        "APT-31": "rescheduled",
        "APT-32": "rescheduled",
        "APT-33": "scheduled",
    }
    # No booking yet: the visit counts on the day of its first event, with the Unknown patient.
    assert (facts["APT-9"]["date_id"], facts["APT-9"]["patient_key"]) == (20260517, "-1")
    apt1 = facts["APT-1"]
    assert (apt1["device_type"], float(apt1["wait_time_minutes"]), float(apt1["duration_minutes"])) == ("Laptop", 5, 30)
    # scheduled_for 10:00+02:00 is 08:00 UTC.
    assert (apt1["date_id"], apt1["time_id"]) == (20260510, 800)
    apt7 = facts["APT-7"]
    assert apt7["cancelled_by"] == "clinic" and apt7["duration_minutes"] is None
    assert (apt7["technical_issue_count"], apt7["technical_issue_type"]) == (2, "connection_drop")
    assert facts["APT-2"]["device_type"] == "Unknown"


def test_reschedule_chains(settings, built):
    facts = appointments(settings)
    assert [
        (facts[a]["reschedule_count"], facts[a]["original_appointment_id"]) for a in ("APT-2", "APT-3", "APT-4")
    ] == [
        (0, "APT-2"),
        (1, "APT-2"),
        (2, "APT-2"),
    ]
    # The middle link APT-22 has not arrived: APT-23 counts the one move it knows of.
    assert (facts["APT-23"]["reschedule_count"], facts["APT-23"]["original_appointment_id"]) == (1, "APT-22")
    assert [(facts[a]["reschedule_count"], facts[a]["original_appointment_id"]) for a in ("APT-32", "APT-33")] == [
        (1, "APT-31"),
        (2, "APT-31"),
    ]


def test_provider_version_valid_at_the_appointment_and_inferred_members(settings, built):
    rows = query(
        settings,
        "select f.appointment_id, p.specialty, p.is_inferred from marts.fact_appointment f"
        " join marts.dim_provider p on p.provider_key = f.provider_key",
    )
    specialty = {row["appointment_id"]: (row["specialty"], row["is_inferred"]) for row in rows}
    assert specialty["APT-1"] == ("Family Medicine", False)  # May: before the June version
    assert specialty["APT-4"] == ("Cardiology", False)  # June 14: after it
    assert specialty["APT-7"] == (None, True)  # PRV-3 not in the clinic data yet


def test_feedback_only_for_known_appointments(settings, built):
    rows = query(settings, "select feedback_id, date_id from marts.fact_feedback order by 1")
    assert [(r["feedback_id"], r["date_id"]) for r in rows] == [("FBK-1", 20260510), ("FBK-2", 20260615)]


def test_dim_patient_has_no_identifiers_and_caps_age(settings, built):
    columns = {
        r["column_name"]
        for r in query(
            settings,
            "select column_name from information_schema.columns"
            " where table_schema = 'marts' and table_name = 'dim_patient'",
        )
    }
    assert not columns & {"first_name", "last_name", "email", "phone", "address", "date_of_birth"}
    patients = {r["patient_id"]: r for r in query(settings, "select * from marts.dim_patient")}
    assert (patients["PAT-2"]["age"], patients["PAT-2"]["age_group"]) == (90, "90+")
    assert patients["PAT-3"]["is_inferred"] is True
    assert (patients["PAT-4"]["age"], patients["PAT-4"]["age_group"]) == (35, "30-44")
    values = {str(v) for r in query(settings, "select * from marts.dim_patient") for v in r.values()}
    assert not values & {"Jane", "Doe", "jane@example.org", "555-0100", "1 Main St", "1930-01-01", "1990-11-02"}


def test_reporting_role_reads_marts_and_nothing_else(settings, built):
    conn = db.connect(settings, role=REPORTING_ROLE)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from marts.ops_daily_kpis")
            assert cur.fetchone()[0] > 0
        conn.rollback()
        for relation in (
            "staging.stg_clinic_ops__patients",
            "intermediate.int_appointments_derived_from_events",
            "raw.patients",
        ):
            with pytest.raises(Exception, match="permission denied"), conn.cursor() as cur:
                cur.execute(f"select 1 from {relation} limit 1")
            conn.rollback()
    finally:
        conn.close()


DEVICES_BUT_P90 = (
    "select device_type, device_key, is_mobile, started_appointments, completed, with_technical_issues,"
    " avg_wait_minutes, technical_issue_share, avg_connection_quality, avg_duration_minutes"
    " from marts.device_quality order by device_key"
)


def vacuums(settings, work) -> dict[str, int]:
    """How many times each incremental model's table has been vacuumed by a command (autovacuum is counted apart)."""
    manifest = json.loads((work / "target" / "manifest.json").read_text())
    tables = {
        f"{node['schema']}.{node['alias']}"
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental"
    }
    rows = query(settings, "select schemaname || '.' || relname as name, vacuum_count from pg_stat_user_tables")
    counts = {row["name"]: row["vacuum_count"] for row in rows if row["name"] in tables}
    assert set(counts) == tables and len(tables) >= 10
    return counts


def test_late_data_then_incremental_equals_full_refresh(settings, built):
    days_before = daily_appointments(settings)
    land(
        settings,
        events=LATE_EVENTS + DROPPED_LINK_LATE,
        providers=LATE_PROVIDERS,
        patients=LATE_PATIENTS,
        feedback=LATE_FEEDBACK,
    )
    # A build in full creates every incremental table anew and vacuums it once (macro vacuum_after_full_build);
    # the hourly run vacuums none.
    after_full_build = vacuums(settings, built)
    assert set(after_full_build.values()) == {1}, after_full_build
    # The scheduled run after a load (selectors.yml), two days on: what it leaves must equal a full refresh.
    dbt(settings, built, "build", "--selector", "hourly", *LATER)
    assert vacuums(settings, built) == after_full_build
    # Its tests kept to the rows it touched (macro touched_rows): generic and singular tests on the facts read
    # the recent loads only; a test on a table without load times reads all of it.
    tests = {
        result["unique_id"].split(".")[2]: result["compiled_code"]
        for result in json.loads((built / "target" / "run_results.json").read_text())["results"]
        if result["unique_id"].startswith("test.")
    }
    touched = "last_loaded_at >= cast("
    assert touched in tests["unique_fact_appointment_appointment_id"]
    assert touched in tests["relationships_fact_feedback_appointment_id__appointment_id__ref_fact_appointment_"]
    assert touched in tests["assert_ops_daily_kpis_reconcile_with_facts"]
    assert touched not in tests["unique_dim_provider_provider_key"]
    assert touched not in tests["unique_device_quality_device_type"]
    # device_quality's all-time p90 wait is the nightly build's (the hourly run keeps it: see the model); every
    # other column of every mart, the daily rollups included, must already equal a full refresh.
    devices_hourly = query(settings, DEVICES_BUT_P90)
    dbt(settings, built, "run", "--select", "device_quality", *LATER)
    incremental = mart_fingerprints(settings, BUILT_SCHEMAS)

    # APT-9 moved to the day before when its booking arrived: both days recomputed.
    days_after = daily_appointments(settings)
    assert (days_before[20260516], days_before[20260517]) == (0, 1)
    assert (days_after[20260516], days_after[20260517]) == (1, 0)
    # APT-10 left May 9, the first day: the table now starts on May 10, as a full refresh would.
    assert min(days_before) == 20260509 and min(days_after) == 20260510

    facts = appointments(settings)
    assert facts["APT-8"]["status"] == "completed"
    assert (facts["APT-23"]["reschedule_count"], facts["APT-23"]["original_appointment_id"]) == (2, "APT-21")
    rows = query(
        settings,
        "select f.appointment_id, p.specialty from marts.fact_appointment f"
        " join marts.dim_provider p on p.provider_key = f.provider_key"
        " where f.appointment_id in ('APT-5', 'APT-6', 'APT-7')",
    )
    assert {r["appointment_id"]: r["specialty"] for r in rows} == {
        "APT-5": "Internal Medicine",
        "APT-6": "Psychiatry",
        "APT-7": "Pediatrics",
    }
    feedback = {r["feedback_id"]: r for r in query(settings, "select * from marts.fact_feedback")}
    assert set(feedback) == {"FBK-1", "FBK-2", "FBK-3", "FBK-4"}
    # APT-32 lost its link: it starts a chain, and APT-33 (not loaded again) follows it.
    assert [(facts[a]["reschedule_count"], facts[a]["original_appointment_id"]) for a in ("APT-32", "APT-33")] == [
        (0, "APT-32"),
        (1, "APT-32"),
    ]
    patients = {r["patient_id"]: r for r in query(settings, "select * from marts.dim_patient")}
    assert (patients["PAT-3"]["is_inferred"], patients["PAT-3"]["state"]) == (False, "TX")
    assert patients["PAT-1"]["state"] == "WA"
    # PAT-4 turned 36 on 2 November; its record was loaded long before this run's window.
    assert (patients["PAT-4"]["age"], patients["PAT-4"]["age_group"]) == (36, "30-44")

    dbt(settings, built, "build", "--full-refresh", *WITHOUT_TESTS, *LATER)
    assert mart_fingerprints(settings, BUILT_SCHEMAS) == incremental
    assert vacuums(settings, built) == after_full_build  # new tables again, each vacuumed once
    assert query(settings, DEVICES_BUT_P90) == devices_hourly
