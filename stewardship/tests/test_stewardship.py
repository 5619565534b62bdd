"""Retention and erasure on the lifecycle test's hand-written world (loaders/tests/test_pipeline_lifecycle.py),
built by dbt in a database of this module's own, plus a few rows of our own: an open appointment, a
canary patient with a recent visit, a comment and quarantined payloads naming them, a form of no
appointment, old quarantine rows and load runs.

The tests run in file order on one world: dry run, apply, an incremental build that leaves the marts
exactly as they were, a full refresh that is refused, the rule that unbuilt rows stay, erasure of the
canary everywhere, and the marts' own retention.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loaders.tests.test_pipeline import WITHOUT_TESTS, dbt, mart_fingerprints, query, run_env
from loaders.tests.test_pipeline_lifecycle import (
    FIRST_EVENTS,
    FIRST_FEEDBACK,
    LATE_EVENTS,
    LATE_FEEDBACK,
    LATE_PROVIDERS,
    PATIENTS,
    PROVIDERS,
    booked,
    done,
    form,
    land,
)
from runtime import db, pseudonym
from runtime.settings import PROJECT_ROOT
from testkit.clock import TEST_AS_OF

DBT = Path(sys.executable).parent / "dbt"
CANARY = "Zyqxcanary"
CANARY_PATIENT = "PAT-CANARY-1"
# Closed, built and older than the cutoff (as-of 2026-11-01 minus 30 days): every lifecycle appointment,
# reschedule chains whole. APT-50 stays open; APT-C (the canary's visit, in October) is too recent.
DUE = {"APT-1", "APT-2", "APT-3", "APT-4", "APT-5", "APT-6", "APT-7", "APT-8", "APT-9", "APT-10", "APT-21",
       "APT-22", "APT-23", "APT-999"}  # fmt: skip
OUR_EVENTS = [
    ("e50-1", "APT-50", "scheduled", "2026-05-01T09:00:00Z",
     booked("PAT-1", "PRV-1", "follow_up", "2026-05-25T10:00:00Z")),
    ("eC-1", "APT-C", "scheduled", "2026-10-10T09:00:00Z",
     booked(CANARY_PATIENT, "PRV-1", "follow_up", "2026-10-20T10:00:00Z")),
    ("eC-2", "APT-C", "started", "2026-10-20T10:02:00Z", {"device_type": "Laptop", "wait_time_minutes": 2}),
    ("eC-3", "APT-C", "completed", "2026-10-20T10:30:00Z", done(28, 4)),
]  # fmt: skip
OUR_FEEDBACK = [
    ("FBK-C", "APT-C", "2026-10-21T09:00:00Z", form(4, 4, True, f"my neighbour {CANARY} says hi")),
    ("FBK-ORPHAN", "APT-NEVER", "2026-05-01T09:00:00Z", form(3, 3, True, "no appointment")),
]
ALL_EVENTS = FIRST_EVENTS + LATE_EVENTS + OUR_EVENTS
ALL_FORMS = FIRST_FEEDBACK + LATE_FEEDBACK + OUR_FEEDBACK
POLICY = {
    "batch_rows": 20,  # several batches even in this small world
    "policies": {
        "raw_events_and_forms": {"keep_days": 30},
        "quarantine": {"keep_days": 90},
        "feedback_file_records": {"keep_days": 30},
        "load_runs": {"keep_days": 400},
        "monitor_history": {"keep_days": 400},
        "marts": {"keep_days": "forever"},
    },
}


def admin(settings, statement: str, params=None) -> None:
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(statement, params)


def scalar(settings, statement: str, params=None):
    return next(iter(query(settings, statement, params)[0].values()))


def cli(settings, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    done_ = subprocess.run(
        [sys.executable, "-m", "loaders", *args],
        cwd=PROJECT_ROOT,
        env=run_env(settings),
        capture_output=True,
        text=True,
    )
    assert done_.returncode == expect, done_.stdout[-3000:] + done_.stderr[-3000:]
    return done_


def retention(settings, policy_file: Path, *extra: str) -> dict[str, tuple[int, int]]:
    """`python -m loaders retention` at the test as-of; table -> (rows due, rows deleted)."""
    out = cli(settings, "retention", "--policy", str(policy_file), "--as-of", TEST_AS_OF, *extra).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        cells = line.split()
        if len(cells) >= 6 and "." in cells[1]:
            rows[cells[1]] = (int(cells[5]), int(cells[6]) if len(cells) > 6 else 0)
    return rows


def land_ours(settings) -> None:
    land(settings, events=OUR_EVENTS, feedback=OUR_FEEDBACK)
    admin(
        settings,
        "insert into raw.patients (patient_id, first_name, last_name, email, phone, address, date_of_birth, gender,"
        " has_insurance, registration_date, state, updated_at, payload) values (%(id)s, %(first)s, 'Smith',"
        " %(email)s, '555-0199', %(street)s, '1970-01-01', 'Female', true, '2025-01-01', 'CA', '2026-01-01',"
        " %(payload)s)",
        {
            "id": CANARY_PATIENT,
            "first": CANARY,
            "email": f"{CANARY.lower()}@example.org",
            "street": f"1 {CANARY} Road",
            "payload": json.dumps({"patient_id": CANARY_PATIENT, "first_name": CANARY, "gender": "Female"}),
        },
    )
    # Quarantine: a broken event naming the canary patient (recent), and an old one of nobody.
    admin(
        settings,
        "insert into raw.appointment_events_rejected (reason, error_detail, raw_text, raw_bytes, kafka_topic,"
        " kafka_partition, kafka_offset) values"
        " ('invalid_json', 'truncated', %s, %s, 'fixture', 1, 1),"
        " ('invalid_json', 'truncated', '{\"x', null, 'fixture', 1, 2)",
        (f'{{"patient_id": "{CANARY_PATIENT}", "note": "{CANARY}', f"{CANARY}".encode()),
    )  # fmt: skip
    admin(
        settings,
        "update raw.appointment_events_rejected set _loaded_at = _loaded_at - interval '200 days'"
        " where kafka_offset = 2",
    )
    admin(
        settings,
        "insert into raw.patient_feedback_rejected (reason, error_detail, feedback_id, payload, source_path,"
        " source_sha256, form_index) values ('rating_out_of_range', 'provider_rating 9', 'FBK-CR', %s, 'f.json',"
        " 'sha-rejected', 0)",
        (json.dumps({"appointment_id": "APT-C", "comments": f"{CANARY.lower()}@example.org wrote this"}),),
    )
    # A file whose forms are all among the due ones, loaded 40 days ago; runs of a loader, one 500 days old.
    admin(
        settings,
        "insert into raw.feedback_files (path, size_bytes, sha256, status, _loaded_at)"
        " values ('fixture.json', 1, 'sha-FBK-1', 'loaded', now() - interval '40 days')",
    )
    admin(
        settings, "insert into raw.load_runs (loader, status) values ('consume', 'succeeded'), ('consume', 'succeeded')"
    )
    admin(
        settings,
        "update raw.load_runs set started_at = started_at - interval '500 days'"
        " where run_id = (select min(run_id) from raw.load_runs)",
    )


@pytest.fixture(scope="module")
def world(settings, tmp_path_factory):
    work = tmp_path_factory.mktemp("stewardship")
    land(
        settings,
        events=FIRST_EVENTS + LATE_EVENTS,
        providers=PROVIDERS + LATE_PROVIDERS,
        patients=PATIENTS,
        feedback=FIRST_FEEDBACK + LATE_FEEDBACK,
    )
    land_ours(settings)
    dbt(settings, work, "build", "--full-refresh", *WITHOUT_TESTS)
    policy = work / "retention.yml"
    policy.write_text(yaml.safe_dump(POLICY))
    return {"work": work, "policy": policy, "before": mart_fingerprints(settings)}


def counts(settings) -> dict[str, int]:
    tables = ("appointment_events", "patient_feedback", "appointment_events_rejected", "feedback_files", "load_runs")
    return {t: scalar(settings, f"select count(*) from raw.{t}") for t in tables}


def test_dry_run_counts_what_is_due_and_changes_nothing(settings, world):
    before = counts(settings)
    rows = retention(settings, world["policy"])
    due_events = sum(1 for e in ALL_EVENTS if e[1] in DUE)
    due_forms = sum(1 for f in ALL_FORMS if f[1] in DUE) + 1  # and the form of no appointment
    assert rows["raw.appointment_events"] == (due_events, 0)
    assert rows["raw.patient_feedback"] == (due_forms, 0)
    assert rows["raw.appointment_events_rejected"] == (1, 0)
    assert rows["raw.load_runs"] == (1, 0)
    assert rows["raw.feedback_files"] == (0, 0)  # its forms are still there
    assert rows["marts.fact_appointment"] == (0, 0)  # forever
    assert counts(settings) == before
    assert scalar(settings, "select count(*) from raw.retention_log") == 0


def test_apply_deletes_in_batches_and_logs_each_table(settings, world):
    rows = retention(settings, world["policy"], "--apply")
    due_events = sum(1 for e in ALL_EVENTS if e[1] in DUE)
    assert rows["raw.appointment_events"] == (due_events, due_events)
    left = {r["appointment_id"] for r in query(settings, "select distinct appointment_id from raw.appointment_events")}
    assert left == {"APT-50", "APT-C"}
    forms = {r["feedback_id"] for r in query(settings, "select feedback_id from raw.patient_feedback")}
    assert forms == {"FBK-C"}
    assert scalar(settings, "select count(*) from raw.appointment_events_rejected") == 1
    # The file record goes once its forms are gone: in the same run, after them (a dry run, counting
    # against the forms still there, did not count it).
    assert rows["raw.feedback_files"] == (1, 1)
    assert scalar(settings, "select count(*) from raw.feedback_files") == 0
    newest = query(settings, "select loader, count(*) as n from raw.load_runs group by loader")
    assert newest == [{"loader": "consume", "n": 1}]
    log = {
        r["table_name"]: r
        for r in query(settings, "select * from raw.retention_log where rows_deleted > 0 order by log_id")
    }
    assert log["raw.appointment_events"]["rows_deleted"] == due_events
    assert log["raw.appointment_events"]["batches"] == 7  # 14 appointments in chunks of batch_rows // 10 = 2
    assert log["raw.appointment_events"]["clock"] == "business"
    assert log["raw.load_runs"]["clock"] == "load"


def test_incremental_build_after_the_purge_leaves_the_marts_unchanged(settings, world):
    dbt(settings, world["work"], "build", *WITHOUT_TESTS)
    assert mart_fingerprints(settings) == world["before"]


def test_full_refresh_after_a_purge_is_refused(settings, world):
    done_ = subprocess.run(
        [sys.executable, "-m", "loaders", "env", "--", str(DBT), "build", "--full-refresh", *WITHOUT_TESTS],
        cwd=PROJECT_ROOT,
        env=run_env(settings, world["work"]),
        capture_output=True,
        text=True,
    )
    assert done_.returncode != 0
    assert "refusing a full refresh: retention purged" in done_.stdout
    assert mart_fingerprints(settings) == world["before"]


def test_rows_not_built_yet_are_never_due(settings, world):
    """A closed, old appointment whose events landed after the last build waits for the build."""
    late = [
        ("e51-1", "APT-51", "scheduled", "2026-05-01T09:00:00Z",
         booked("PAT-1", "PRV-1", "follow_up", "2026-05-21T10:00:00Z")),
        ("e51-2", "APT-51", "cancelled", "2026-05-02T09:00:00Z", {"cancelled_by": "patient"}),
    ]  # fmt: skip
    land(settings, events=late)
    assert retention(settings, world["policy"])["raw.appointment_events"] == (0, 0)
    dbt(settings, world["work"], "run", "--select", "int_appointments_derived_from_events", "fact_appointment")
    assert retention(settings, world["policy"])["raw.appointment_events"] == (2, 0)


def test_erase_removes_the_canary_everywhere_and_keeps_pseudonymous_rows(settings, world):
    def holders() -> set[str]:
        relations = query(
            settings,
            "select table_schema, table_name from information_schema.tables where table_schema in"
            " ('raw', 'staging', 'intermediate', 'marts', 'snapshots', 'monitoring')",
        )
        found = set()
        for r in relations:
            name = f'"{r["table_schema"]}"."{r["table_name"]}"'
            if scalar(settings, f"select count(*) from {name} as t where t::text ilike %s", (f"%{CANARY}%",)):
                found.add(f"{r['table_schema']}.{r['table_name']}")
        return found

    planted = holders()
    assert {"raw.patients", "raw.appointment_events_rejected", "raw.patient_feedback_rejected",
            "raw.patient_feedback", "marts.fact_feedback"} <= planted  # fmt: skip
    out = cli(settings, "erase", "--patient-id", CANARY_PATIENT, "--request-ref", "TICKET-1").stdout
    assert "erase: request" in out
    assert holders() == set()

    key = pseudonym.patient_key(pseudonym.key_bytes(settings.state_dir), CANARY_PATIENT)
    assert scalar(settings, "select count(*) from marts.dim_patient where patient_key = %s", (key,)) == 1
    # The birth date is gone, so is the age, at once (the hourly run does not re-derive this patient).
    assert query(settings, "select age, age_group from marts.dim_patient where patient_key = %s", (key,)) == [
        {"age": None, "age_group": "unknown"}
    ]
    assert query(
        settings, "select appointment_id, comments from marts.fact_feedback where patient_key = %s", (key,)
    ) == [{"appointment_id": "APT-C", "comments": None}]
    logged = query(settings, "select table_name, rows_changed, request_ref, patient_key from raw.erasure_log")
    assert {r["table_name"] for r in logged if r["rows_changed"]} >= {
        "raw.patients",
        "raw.appointment_events_rejected",
        "raw.patient_feedback_rejected",
        "raw.patient_feedback",
        "marts.fact_feedback",
        "marts.dim_patient",
    }
    assert {(r["request_ref"], r["patient_key"]) for r in logged} == {("TICKET-1", key)}
    assert CANARY_PATIENT not in json.dumps(logged)
    # The next build keeps the pseudonymous rows (and the comment stays gone).
    dbt(settings, world["work"], "build", *WITHOUT_TESTS)
    assert holders() == set()
    assert scalar(settings, "select count(*) from marts.fact_feedback where patient_key = %s", (key,)) == 1
    assert query(settings, "select age, age_group from marts.dim_patient where patient_key = %s", (key,)) == [
        {"age": None, "age_group": "unknown"}
    ]


def test_marts_retention_drops_facts_whose_raw_rows_are_gone(settings, world):
    policy = world["work"] / "marts.yml"
    policy.write_text(yaml.safe_dump({**POLICY, "policies": {**POLICY["policies"], "marts": {"keep_days": 60}}}))
    rows = retention(settings, policy, "--apply")
    # APT-51's raw rows (built by now) go first in the same run, then every fact older than 60 days whose
    # raw rows are gone; the open APT-50 and the recent APT-C keep theirs, so their facts stay.
    assert rows["raw.appointment_events"] == (2, 2)
    left = {r["appointment_id"] for r in query(settings, "select appointment_id from marts.fact_appointment")}
    assert left == {"APT-50", "APT-C"}
    assert {r["feedback_id"] for r in query(settings, "select feedback_id from marts.fact_feedback")} == {"FBK-C"}
    derived = query(settings, "select appointment_id from intermediate.int_appointments_derived_from_events")
    assert {r["appointment_id"] for r in derived} == left
