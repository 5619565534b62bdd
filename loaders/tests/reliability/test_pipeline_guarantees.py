"""Cases 1, 9, 10, 14, 15 and 16 on one generated world, loaded by the real loaders and built by dbt:
baseline, out-of-order arrival, privileges, patient data, replay, and freshness/quality thresholds.

The tests run in file order and share the module's pipeline (its own database on the suite's server).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest
import yaml

from loaders.tests.reliability.harness import (
    check_duplicates,
    check_final_states,
    consume_redelivered,
    identify,
    landed_messages,
    lost_messages,
    mart_duplicates,
    quarantined_events,
    record,
)
from loaders.tests.test_pipeline import mart_fingerprints
from monitors.checks import THRESHOLDS_FILE, Thresholds
from monitors.tests.conftest import MailSink, WebhookReceiver, free_port
from runtime import db
from runtime.envcmd import child_env
from runtime.settings import DBT_ROLE, LOADER_ROLE, PROJECT_ROOT, REPORTING_ROLE
from testkit.clock import AS_OF
from testkit.dbt import dbt_call

RAW_WITH_FRESHNESS = ("appointment_events", "patient_feedback", "providers", "patients", "feedback_files")


# patient_id -> age at the run: 95 years must show as 90 ("90+"), 89 years and a month stays 89.
OLD_PATIENTS = {"PAT-9900001": "95 years", "PAT-9900002": "89 years 1 month"}


class Pipeline:
    def __init__(self, rig, work: Path):
        self.rig, self.work = rig, work
        self.topic = f"rel.pipeline.{uuid.uuid4().hex[:6]}"
        self.group = "rel-pipeline"
        profiles = work / "profiles"
        profiles.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "profiles.yml.example", profiles / "profiles.yml")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "DBT_"))},
            **child_env(rig.settings),
            "DBT_PROFILES_DIR": str(profiles),
            "DBT_TARGET_PATH": str(work / "target"),
            "DBT_LOG_PATH": str(work / "dbt-logs"),
        }

    def dbt(self, *args: str, expect: int | None = 0, target: Path | None = None) -> DbtRun:
        """dbt with this world's environment and nothing else of the worker's, in the worker's process
        (testkit/dbt.py): its exit status and output are the command line's."""
        env = {**self.env, **({"DBT_TARGET_PATH": str(target)} if target else {})}
        returncode, stdout = dbt_call(env, *args, whole_environment=True)
        (self.work / "dbt-logs").mkdir(exist_ok=True)
        with (self.work / "dbt-logs" / "stdout.log").open("a") as out:
            out.write(stdout + "\n")
        if expect is not None:
            assert returncode == expect, f"dbt {' '.join(args)} exited {returncode}:\n{stdout[-5000:]}"
        return DbtRun(returncode, stdout)


@dataclasses.dataclass(frozen=True)
class DbtRun:
    returncode: int
    stdout: str


# --------------------------------------------------------------------------- case 10's appointments


def lifecycles(providers: list[str], patients: list[str], day: datetime) -> dict[str, tuple[str, list[dict]]]:
    """Appointments with known final states, as (expected status, events in event-time order)."""
    out = {}
    kinds = ("completed", "cancelled", "no_show", "in_progress", "scheduled")
    for n in range(60):
        kind = kinds[n % len(kinds)]
        appointment = f"APT-9{n:08d}"
        at = day + timedelta(minutes=15 * n)

        def event(kind_: str, when: datetime, i: int, appointment: str = appointment, **fields) -> dict:
            return {
                "schema_version": 1,
                "event_id": f"ooo-{appointment}-{i}",
                "event_type": kind_,
                "event_ts": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "appointment_id": appointment,
                **fields,
            }

        events = [
            event(
                "scheduled",
                at - timedelta(days=3),
                0,
                patient_id=patients[n % len(patients)],
                provider_id=providers[n % len(providers)],
                appointment_type="follow_up",
                scheduled_for=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        ]
        if kind in ("completed", "in_progress"):
            events.append(event("started", at + timedelta(minutes=3), 1, device_type="Laptop", wait_time_minutes=3))
        if kind == "completed":
            events.append(event("completed", at + timedelta(minutes=30), 2, duration_minutes=27, connection_quality=4))
        if kind == "cancelled":
            events.append(event("cancelled", at - timedelta(days=1), 2, cancelled_by="patient"))
        if kind == "no_show":
            events.append(event("no_show", at + timedelta(minutes=20), 2))
        out[appointment] = (kind, events)
    return out


def competing(providers: list[str], patients: list[str], day: datetime, group: int, count: int) -> dict:
    """Appointments with two terminal events each, as (expected status, events in event-time order).

    Half of them end with a later ``cancelled`` after ``completed``; the other half with a ``no_show``
    and a ``cancelled`` at the same instant, where the event-type order decides (no_show comes later).
    """
    out = {}
    for n in range(count):
        appointment = f"APT-9{group}{n:07d}"
        at = day + timedelta(hours=group, minutes=15 * n)

        def event(kind: str, when: datetime, i: int, appointment: str = appointment, **fields) -> dict:
            stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"schema_version": 1, "event_id": f"ooo-{appointment}-{i}", "event_type": kind,
                    "event_ts": stamp, "appointment_id": appointment, **fields}  # fmt: skip

        booked = event("scheduled", at - timedelta(days=2), 0, patient_id=patients[n % len(patients)],
                       provider_id=providers[n % len(providers)], appointment_type="urgent_care",
                       scheduled_for=at.strftime("%Y-%m-%dT%H:%M:%SZ"))  # fmt: skip
        if n % 2 == 0:
            started = event("started", at + timedelta(minutes=2), 1, device_type="Desktop", wait_time_minutes=2)
            done = event("completed", at + timedelta(minutes=30), 2, duration_minutes=28, connection_quality=3)
            out[appointment] = ("cancelled", [booked, started, done, event("cancelled", at + timedelta(minutes=45), 3)])
        else:
            same = at + timedelta(minutes=20)
            out[appointment] = ("no_show", [booked, event("cancelled", same, 2), event("no_show", same, 3)])
    return out


def send_events(rig, topic: str, events: list[dict]) -> list[bytes]:
    messages = [json.dumps(e).encode() for e in events]
    rig.produce(topic, messages, [e["appointment_id"].encode() for e in events])
    return messages


@pytest.fixture(scope="module")
def pipeline(rig, tmp_path_factory):
    rig = rig.on(f"rel_pipeline_{uuid.uuid4().hex[:6]}")
    work = tmp_path_factory.mktemp("pipeline")
    built = Pipeline(rig, work)
    out, landing = work / "generated", work / "landing"
    rig.must("generate", "generate", "--scale", str(rig.scale.pipeline_scale), "--seed", "11",
             "--out", str(out), "--landing", str(landing))  # fmt: skip
    built.manifest = json.loads((out / "manifest.json").read_text())
    # The clinic registers two very old patients, so case 16 sees the 89/90 boundary whatever the seed.
    for patient_id, born in OLD_PATIENTS.items():
        rig.sql(
            "insert into clinic_ops.patients select (jsonb_populate_record(p, jsonb_build_object("
            "'patient_id', %s::text, 'date_of_birth', %s::date - %s::interval))).*"
            " from clinic_ops.patients as p order by patient_id limit 1",
            (patient_id, AS_OF.date(), born),
        )
    rig.must("reference", "reference")
    produced = rig.must("produce", "produce", "--from-jsonl", str(out / "events"), "--topic", built.topic)
    delivered, failed = map(int, re.search(r"(\d+) delivered, (\d+) failed", produced.stdout).groups())
    built.generated = {identify(line) for path in sorted((out / "events").glob("*.jsonl")) for line in jsonl(path)}
    built.failed_deliveries = failed
    assert failed == 0 and delivered == sum(len(jsonl(p)) for p in (out / "events").glob("*.jsonl"))

    # Case 10's appointments: later events delivered first, inside one batch and across batches.
    providers = [r[0] for r in rig.sql("select provider_id from clinic_ops.providers order by 1")]
    patients = [r[0] for r in rig.sql("select patient_id from clinic_ops.patients order by 1")]
    end = datetime.fromisoformat(built.manifest["generator"]["end_date"]).replace(tzinfo=timezone.utc)
    day = end - timedelta(days=10) + timedelta(hours=8)
    built.ooo = lifecycles(providers, patients, day)
    # Two competing terminal events, the later one (by event time, or by type order at a tie) delivered
    # first: in one batch (group 1), across batches (group 2).
    in_batch, across = competing(providers, patients, day, 1, 10), competing(providers, patients, day, 2, 10)
    # Across incremental dbt runs: the later terminal event now, the earlier one after the build (group 3);
    # and a control that takes a later terminal event after the build, which must change its status
    # (group 4), so an incremental run that ignored new events could not pass group 3 by doing nothing.
    built.incremental = competing(providers, patients, day, 3, 10)
    forward = competing(providers, patients, day, 4, 10)
    # (the earlier of the two terminal events is always the last but one)
    built.incremental_first = [e for _, events in built.incremental.values() for e in events[:-2] + events[-1:]]
    built.incremental_later = [events[-2] for _, events in built.incremental.values()]
    built.forward_first = [e for _, events in forward.values() for e in events[:-1]]
    built.forward_later = [events[-1] for _, events in forward.values()]
    # appointment -> (status after the first delivery, status after the later one)
    built.forward = {a: ("completed" if kind == "cancelled" else "cancelled", kind) for a, (kind, _) in forward.items()}
    same_batch, later_first, earlier_after = [], [], []
    for n, (_, events) in enumerate(built.ooo.values()):
        if n % 2:
            same_batch += list(reversed(events))
        else:
            later_first += list(reversed(events[1:]))
            earlier_after += events[:1]
    for _, events in in_batch.values():
        same_batch += list(reversed(events))
    for _, events in across.values():
        later_first += list(reversed([events[0], events[-1]]))
        earlier_after += events[1:-1]

    first = same_batch + later_first + built.incremental_first + built.forward_first
    built.sent = send_events(rig, built.topic, first)
    rig.drain(built.topic, built.group)
    built.sent += send_events(rig, built.topic, earlier_after)
    rig.drain(built.topic, built.group)
    built.ooo.update(in_batch)
    built.ooo.update(across)
    # Before the later deliveries: group 3 already ends with its later event, group 4 as first delivered.
    built.expected = {a: kind for a, (kind, _) in built.ooo.items()}
    built.expected.update({a: kind for a, (kind, _) in built.incremental.items()})
    built.expected.update({a: before for a, (before, _) in built.forward.items()})
    built.messages = built.manifest["events"]["messages"] + len(built.sent)
    rig.must("feedback", "feedback", "--landing", str(landing))
    built.build = built.dbt("build")
    shutil.copytree(work / "target", work / "build-target")
    yield built


def jsonl(path: Path) -> list[bytes]:
    """The messages of a generator file, as `python -m loaders produce --from-jsonl` sends them."""
    lines = path.read_bytes().split(b"\n")
    return lines[:-1] if lines and lines[-1] == b"" else lines


def acknowledged(pipeline) -> set:
    return pipeline.generated | {identify(m) for m in pipeline.sent}


def test_case_01_baseline(pipeline):
    rig, manifest = pipeline.rig, pipeline.manifest
    ours = len(pipeline.sent)
    raw = rig.scalar("select count(*) from raw.appointment_events")
    facts = rig.sql("select appointment_id, status from marts.fact_appointment")
    generated = Counter(status for appointment, status in facts if not appointment.startswith("APT-9"))
    assert raw == manifest["events"]["valid_distinct"] + len({e["event_id"] for e in map(json.loads, pipeline.sent)})
    ours_appointments = {json.loads(m)["appointment_id"] for m in pipeline.sent}
    assert len(facts) == len({a for a, _ in facts}) == manifest["appointments"]["total"] + len(ours_appointments)
    assert generated == Counter(manifest["appointments"]["by_final_status"])
    expected_bad = sum(manifest["rejected"]["events"].values())
    forms_bad = sum(manifest["rejected"]["feedback_forms"].values()) + sum(
        manifest["rejected"]["feedback_files"].values()
    )
    quarantined_forms = rig.scalar("select count(*) from raw.patient_feedback_rejected") + rig.scalar(
        "select count(*) from raw.feedback_files where status = 'failed'"
    )
    assert quarantined_forms == forms_bad
    record(1, f"baseline: {pipeline.messages} events, dbt build",
           lost=lost_messages(acknowledged(pipeline), landed_messages(rig, pipeline.topic)),
           failed_deliveries=pipeline.failed_deliveries, duplicates=mart_duplicates(rig),
           redelivered=consume_redelivered(rig, pipeline.topic, pipeline.group), redelivery_promised_zero=True,
           quarantined=quarantined_events(rig, pipeline.topic), bad_injected=expected_bad, appointments=len(facts),
           our_events=ours)  # fmt: skip


def test_case_10_out_of_order_final_states_by_event_time(pipeline):
    rig = pipeline.rig
    statuses = dict(
        rig.sql("select appointment_id, status from marts.fact_appointment where appointment_id like %s", ("APT-9%",))
    )
    ours = {identify(m) for m in pipeline.sent}
    two_terminals = sum(1 for a in pipeline.expected if a.startswith(("APT-91", "APT-92", "APT-93")))
    record(10, "out-of-order delivery, in one batch and across batches; two competing terminal events",
           lost=lost_messages(ours, landed_messages(rig, pipeline.topic)), duplicates=mart_duplicates(rig),
           failures=check_final_states(pipeline.expected, statuses), appointments=len(pipeline.expected),
           two_terminal_events=two_terminals)  # fmt: skip


def test_gates_catch_a_duplicate_fact_row_and_a_wrong_final_state(pipeline):
    """Negative tests of the marts' gates: on a copy of the real marts, one fact row and one form row
    repeated, and one final state changed. The gates must report exactly those."""
    rig = pipeline.rig
    rig.sql("drop schema if exists gate_plant cascade; create schema gate_plant")
    try:
        for table in ("fact_appointment", "fact_feedback"):
            rig.sql(f"create table gate_plant.{table} as select * from marts.{table}")
        assert mart_duplicates(rig, "gate_plant") == {}
        appointment = rig.scalar("select min(appointment_id) from gate_plant.fact_appointment")
        form = rig.scalar("select min(feedback_id) from gate_plant.fact_feedback")
        rig.sql("insert into gate_plant.fact_appointment select * from gate_plant.fact_appointment"
                " where appointment_id = %s", (appointment,))  # fmt: skip
        rig.sql("insert into gate_plant.fact_feedback select * from gate_plant.fact_feedback where feedback_id = %s",
                (form,))  # fmt: skip
        planted = mart_duplicates(rig, "gate_plant")
        assert planted == {("fact_appointment", appointment): 1, ("fact_feedback", form): 1}
        assert check_duplicates(planted)

        target = min(a for a in pipeline.expected if a.startswith("APT-92"))
        rig.sql("update gate_plant.fact_appointment set status = 'completed' where appointment_id = %s", (target,))
        copied = dict(rig.sql("select appointment_id, status from gate_plant.fact_appointment"))
        failures = check_final_states(pipeline.expected, copied)
        assert len(failures) == 1 and target in failures[0] and "1 final states" in failures[0]
    finally:
        rig.sql("drop schema if exists gate_plant cascade")


# --------------------------------------------------------------------------- case 15


def as_role(rig, role: str, statement: str) -> str | None:
    """Run ``statement`` logged in as ``role`` with its own password (rolled back); the SQLSTATE of its
    failure, or None."""
    conn = psycopg2.connect(
        host=rig.settings.pg_host, port=rig.settings.pg_port, user=role, dbname=rig.settings.pg_database,
        password=rig.settings.password_for(role), application_name="telemed-reliability", connect_timeout=10,
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        return None
    except psycopg2.Error as exc:
        return exc.pgcode
    finally:
        conn.rollback()
        conn.close()


FORBIDDEN = {
    LOADER_ROLE: [
        "select * from marts.fact_appointment limit 1",
        "create table marts.loader_was_here (x int)",
        "select * from staging.stg_kafka__appointment_events limit 1",
        "create table staging.loader_was_here (x int)",
        # It writes rows in raw but owns nothing there (runtime/db.py: telemed_raw_owner does).
        "drop table raw.appointment_events",
        "truncate raw.load_runs",
        "alter table raw.kafka_offsets add column loader_was_here int",
        "delete from raw.appointment_events",
        "create table raw.loader_was_here (x int)",
        "select * from raw.retention_log",
    ],
    REPORTING_ROLE: [
        "select * from raw.appointment_events limit 1",
        "select * from raw.kafka_offsets limit 1",
        "select * from staging.stg_kafka__appointment_events limit 1",
        "select * from intermediate.int_appointments_derived_from_events limit 1",
        "select * from clinic_ops.patients limit 1",
        "insert into marts.dim_status select * from marts.dim_status limit 1",
        "update marts.fact_appointment set wait_time_minutes = 0",
        "delete from marts.dim_date",
        "truncate marts.dim_device",
        "create table marts.reporting_was_here (x int)",
        "create table raw.reporting_was_here (x int)",
        "create schema reporting_was_here",
    ],
    DBT_ROLE: [
        "insert into raw.appointment_events (event_id) values ('dbt-was-here')",
        "update raw.appointment_events set event_type = 'completed'",
        "delete from raw.kafka_offsets",
        "truncate raw.load_runs",
        "create table raw.dbt_was_here (x int)",
        "select * from clinic_ops.patients limit 1",
    ],
}
ALLOWED = {
    LOADER_ROLE: [
        "insert into raw.load_runs (loader) values ('privilege-check')",
        "select count(*) from raw.appointment_events",
        "select count(*) from clinic_ops.patients",
        "create temporary table loader_stage (x int)",
    ],
    REPORTING_ROLE: [
        "select count(*) from marts.fact_appointment",
        "select count(*) from marts.dim_patient",
        "select count(*) from marts.ops_daily_kpis",
    ],
    DBT_ROLE: [
        "select count(*) from raw.appointment_events",
        "create table staging.dbt_scratch (x int)",
        "create table marts.dbt_scratch (x int)",
    ],
}


def relation_grants(rig) -> dict[tuple[str, str], dict[str, set[str]]]:
    """Privileges granted on every table and view of the project's schemas, by grantee (owner excluded;
    PUBLIC included, as "public")."""
    rows = rig.sql(
        """
        select n.nspname, c.relname,
            case when acl.grantee = 0 then 'public' else pg_get_userbyid(acl.grantee) end, acl.privilege_type
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        cross join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) acl
        where n.nspname in ('raw', 'staging', 'intermediate', 'marts', 'snapshots', 'monitoring', 'clinic_ops')
          and c.relkind in ('r', 'v', 'm', 'p') and acl.grantee <> c.relowner
        """
    )
    out: dict[tuple[str, str], dict[str, set[str]]] = {}
    for schema, name, grantee, privilege in rows:
        out.setdefault((schema, name), {}).setdefault(grantee, set()).add(privilege.lower())
    return out


def configured_grants(build_target: Path, rig) -> dict[tuple[str, str], dict[str, set[str]]]:
    """What the configuration says: dbt's `grants` of every node built, plus the bootstrap's raw grants."""
    manifest = json.loads((build_target / "manifest.json").read_text())
    expected: dict[tuple[str, str], dict[str, set[str]]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] not in ("model", "seed", "snapshot"):
            continue
        if node["config"].get("materialized") == "ephemeral":
            continue
        grants = {
            grantee: {privilege}
            for privilege, grantees in (node["config"].get("grants") or {}).items()
            for grantee in grantees
        }
        expected[(node["schema"], node["alias"])] = grants
    # runtime/db.py: raw tables are readable by dbt and written (rows only) by the loader, except the
    # owner's own logs; clinic_ops tables are readable by the loader. PUBLIC is granted nothing anywhere.
    for (table,) in rig.sql("select tablename from pg_tables where schemaname = 'raw'"):
        loader = {} if table in db.OWNER_ONLY_TABLES else {LOADER_ROLE: set(db.LOADER_RAW_PRIVILEGES)}
        expected[("raw", table)] = {DBT_ROLE: {"select"}, **loader}
    for (table,) in rig.sql("select tablename from pg_tables where schemaname = 'clinic_ops'"):
        expected[("clinic_ops", table)] = {LOADER_ROLE: {"select"}}
    return expected


def test_case_15_privileges(pipeline):
    rig = pipeline.rig
    denied, wrongly = 0, []
    for role, statements in FORBIDDEN.items():
        for statement in statements:
            code = as_role(rig, role, statement)
            if code != "42501":
                wrongly.append((role, statement, code))
            denied += 1
    assert not wrongly, f"must fail with 42501 (insufficient_privilege): {wrongly}"
    refused = [(role, s, code) for role, ss in ALLOWED.items() for s in ss if (code := as_role(rig, role, s))]
    assert not refused, f"allowed actions failed: {refused}"

    actual = relation_grants(rig)
    expected = configured_grants(pipeline.work / "build-target", rig)
    monitoring = {k: v for k, v in actual.items() if k[0] == "monitoring"}
    mismatched = {
        key: (actual.get(key, {}), want)
        for key, want in expected.items()
        if actual.get(key, {}) != want and key[0] != "monitoring"
    }
    assert not mismatched, f"grants differ from the configuration: {mismatched}"
    unexpected = {k: v for k, v in actual.items() if k not in expected and k[0] != "monitoring"}
    assert not unexpected, f"grants nobody configured: {unexpected}"
    # monitors/store.py grants the reporting role its two history tables, nothing else.
    assert all(v == {REPORTING_ROLE: {"select"}} for v in monitoring.values()), monitoring
    usage = dict(
        rig.sql(
            "select nspname, array(select r from unnest(array[%s, %s, %s]) r"
            " where has_schema_privilege(r, oid, 'usage') order by 1) from pg_namespace"
            " where nspname in ('raw', 'staging', 'intermediate', 'marts', 'clinic_ops')",
            (LOADER_ROLE, DBT_ROLE, REPORTING_ROLE),
        )
    )
    assert usage["marts"] == sorted([DBT_ROLE, REPORTING_ROLE])
    assert REPORTING_ROLE not in usage["raw"] + usage["staging"] + usage["intermediate"] + usage["clinic_ops"]
    assert LOADER_ROLE not in usage["marts"] + usage["staging"] + usage["intermediate"]
    record(15, f"privileges: {denied} forbidden actions denied (42501), grants = configuration", denied=denied,
           relations_checked=len(expected))  # fmt: skip


# --------------------------------------------------------------------------- case 16

# Direct identifiers of a patient, by column name. Providers' names are not patient data: dim_provider
# carries first_name/last_name by contract, and provider_performance a provider_name.
IDENTIFIER_COLUMNS = re.compile(
    r"(^|_)(first_name|last_name|full_name|patient_name|email|e_mail|phone|phone_number|address|street|"
    r"zip|zip_code|postal_code|date_of_birth|birth_date|dob|ssn)$"
)
PROVIDER_COLUMNS = {("dim_provider", "first_name"), ("dim_provider", "last_name")}


def test_case_16_patient_data(pipeline):
    rig = pipeline.rig
    columns = rig.sql(
        "select table_name, column_name from information_schema.columns where table_schema = 'marts' order by 1, 2"
    )
    patient_tables = {t for t, c in columns if t in ("dim_patient", "fact_appointment", "fact_feedback")}
    leaking = [(t, c) for t, c in columns if IDENTIFIER_COLUMNS.search(c) and (t, c) not in PROVIDER_COLUMNS]
    assert patient_tables and not leaking, f"identifier columns in marts: {leaking}"

    canaries = [c["token"] for c in pipeline.manifest["canaries"]]
    assert canaries, "the generator planted no canary"
    hits = []
    for table in sorted({t for t, _ in columns}):
        text = rig.scalar(f"select coalesce(string_agg(t::text, chr(10)), '') from marts.\"{table}\" as t")
        hits += [(table, token) for token in canaries if token in text]
    assert not hits, f"canary tokens in marts: {hits}"
    # The canaries are really in the source, so a 0 above means something.
    source = rig.scalar("select string_agg(t::text, chr(10)) from clinic_ops.patients as t")
    assert all(token in source for token in canaries)

    assert rig.scalar("select max(age) from marts.dim_patient") <= 90
    old = {
        row[0]: (row[1], row[2])
        for row in rig.sql(
            "select patient_id, age, age_group from marts.dim_patient where patient_id = any(%s)", (list(OLD_PATIENTS),)
        )
    }
    assert old["PAT-9900001"] == (90, "90+")
    assert old["PAT-9900002"][0] == 89 and old["PAT-9900002"][1] != "90+"
    over_89 = rig.scalar(
        "select count(*) from clinic_ops.patients where date_of_birth <= %s::date - interval '90 years'",
        (AS_OF.date(),),
    )
    shown_90 = rig.scalar("select count(*) from marts.dim_patient where age = 90 and age_group = '90+'")
    assert shown_90 == over_89, f"{over_89} patients are over 89, {shown_90} shown as 90+"

    logs = [*rig.logs, *(pipeline.work / "dbt-logs").rglob("*.log")]
    leaked = [(str(p), t) for p in logs if p.exists() for t in canaries if t in p.read_text(errors="replace")]
    assert not leaked, f"canary tokens in logs: {leaked}"

    # The scan finds what it must (so its silence below means something), and passes placeholders.
    assert line_findings("deploy/.env", "SMTP_PASSWORD=n0t-a-placeholder")
    assert line_findings("loaders/x.py", 'token = "ghp_' + "a1" * 18 + '"')
    assert not line_findings("profiles.yml", "password: \"{{ env_var('DBT_ENV_SECRET_PGPASSWORD', '') }}\"")
    secrets = secret_findings()
    assert not secrets, f"secrets in tracked files: {secrets}"
    record(16, f"patient data: {len(canaries)} canaries, {len(logs)} logs, tracked files scanned",
           canary_hits=len(hits) + len(leaked), patients_over_89=over_89, shown_as_90=shown_90)  # fmt: skip


SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)(password|passwd|secret|token|api[_-]?key|access[_-]?key)[\w-]*["']?\s*[:=]\s*
    (?P<quote>["']?)(?P<value>[^\s"',}]{6,})"""
)
SECRET_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[0-9A-Za-z-]{10,}"
    r"|sk-[A-Za-z0-9]{32,}"
)
# References and documented placeholders are not secrets: templating, env lookups, masks, <fill-me>.
PLACEHOLDER = re.compile(r"""(?i)^(\{\{|\$|%\(|\*\*|<[^>]+>|change[-_]?me|example|placeholder|x{3,}|redacted)""")
# The fake credentials tests hand to loopback stand-ins and to the redaction tests, by file.
TEST_CREDENTIALS = {
    # (the admin e-mail shares a tuple assignment with the fake password, so the scan pairs it too)
    "dashboards/tests/test_metabase.py": {
        "admin@telemed-elt.example",
        "a-Long-test-passw0rd",
        "reporting-secret",
        "not-the-password",
    },
    "runtime/tests/test_settings.py": {"s3cret", "hunter2"},
    # the bearer tokens of the loopback video platform API the connector tests start
    "loaders/tests/test_api.py": {"test-token-of-the-platform", "not-the-token"},
    "loaders/tests/test_load.py": {"load-test-token"},
    # the S3 emulator (moto on loopback) takes any key; these name it
    "testkit/s3.py": {"emulator"},
}


def secret_findings() -> list[tuple[str, int, str]]:
    """Literal credentials in tracked files (in code only quoted literals count: names are references)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    found = []
    for name in filter(None, files.decode().split("\0")):
        path = PROJECT_ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
            found += [(name, number, hit) for hit in line_findings(name, line)]
    return found


def line_findings(name: str, line: str) -> list[str]:
    if SECRET_SHAPES.search(line):
        return ["key-shaped value"]
    hits = []
    for match in SECRET_ASSIGNMENT.finditer(line):
        value = match.group("value")
        if name.endswith(".py") and not match.group("quote"):
            continue
        if PLACEHOLDER.match(value) or value in TEST_CREDENTIALS.get(name, set()):
            continue
        hits.append(match.group(0)[:60])
    return hits


# --------------------------------------------------------------------------- case 9


def raw_fingerprint(rig) -> tuple:
    return rig.sql(
        "select count(*), md5(string_agg(md5(event_id || payload::text), ',' order by event_id))"
        " from raw.appointment_events"
    )[0]


def test_case_09_replay_changes_nothing(pipeline):
    rig = pipeline.rig
    marts_before, raw_before = mart_fingerprints(rig.settings), raw_fingerprint(rig)
    bad_before = rig.scalar("select count(*) from raw.appointment_events_rejected")
    redelivered_before = consume_redelivered(rig, pipeline.topic, pipeline.group)
    messages_before = sum(rig.stored_offsets(pipeline.topic, pipeline.group).values())
    out = pipeline.work / "generated" / "events"
    rig.must("produce-again", "produce", "--from-jsonl", str(out), "--topic", pipeline.topic)
    # Reset the stored offsets to the start: the whole topic (both copies) is read again.
    rig.sql("delete from raw.kafka_offsets where consumer_group = %s", (pipeline.group,))
    rig.drain(pipeline.topic, pipeline.group)
    pipeline.dbt("run")
    assert raw_fingerprint(rig) == raw_before
    assert mart_fingerprints(rig.settings) == marts_before
    bad_copy = sum(pipeline.manifest["rejected"]["events"].values())
    # Offsets reset to the start: every message read before (the first copy) is committed a second time.
    redelivered = consume_redelivered(rig, pipeline.topic, pipeline.group) - redelivered_before
    assert redelivered == messages_before, f"{redelivered} messages read again, {messages_before} on the topic before"
    # The second copy's bad messages are new messages (new offsets); the re-read first copy adds none.
    record(9, "replay: produced twice, offsets reset to the start; raw and marts hash unchanged",
           lost=lost_messages(acknowledged(pipeline), landed_messages(rig, pipeline.topic)),
           duplicates=mart_duplicates(rig), redelivered=redelivered,
           quarantined=rig.scalar("select count(*) from raw.appointment_events_rejected") - bad_before,
           bad_injected=bad_copy)  # fmt: skip


def test_case_12_drift_past_the_loader_fails_dbt_and_keeps_the_marts(pipeline):
    """The other branch of schema drift: a changed type that reaches raw by another way than the loader
    (its contract check would quarantine it) fails the first model that casts it; dbt exits non-zero,
    skips every mart that depends on it, and the marts built before stay queryable, unchanged."""
    rig = pipeline.rig
    before = mart_fingerprints(rig.settings)
    conn = db.connect(rig.settings, role=LOADER_ROLE, application_name="telemed-reliability")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "insert into raw.appointment_events select (jsonb_populate_record(e, jsonb_build_object("
                "'event_id', 'drift-type-change', 'kafka_topic', 'rel.drift-direct',"
                " 'payload', e.payload || '{\"wait_time_minutes\": \"about ten\"}'::jsonb))).*"
                " from raw.appointment_events e where event_type = 'started' order by event_id limit 1"
            )
        failed = pipeline.dbt("run", "--select", "stg_kafka__appointment_events+", expect=1)
    finally:
        conn.close()
        # The loader may not delete rows from raw (least privilege): the test's own session cleans up.
        admin = db.connect(rig.settings)
        try:
            with admin, admin.cursor() as cur:
                cur.execute("delete from raw.appointment_events where event_id = 'drift-type-change'")
        finally:
            admin.close()
    results = json.loads((pipeline.work / "target" / "run_results.json").read_text())["results"]
    status = Counter(r["status"] for r in results)
    errored = {r["unique_id"].rsplit(".", 1)[1] for r in results if r["status"] == "error"}
    marts_run = {r["unique_id"].rsplit(".", 1)[1]: r["status"] for r in results if ".marts." in r["unique_id"]
                 or r["unique_id"].rsplit(".", 1)[1].startswith(("fact_", "dim_"))}  # fmt: skip
    # The first model that casts the field fails (the intermediate one that derives appointments).
    assert errored, failed.stdout[-3000:]
    assert "fact_appointment" in marts_run, marts_run
    assert all(state in ("skipped", "error") for state in marts_run.values()), marts_run
    assert mart_fingerprints(rig.settings) == before, "the marts built before must stay as they were"
    assert rig.scalar("select count(*) from marts.fact_appointment") > 0
    record(12, f"drift past the loader: dbt exits 1 ({', '.join(sorted(errored))}), marts skipped and kept",
           models_errored=status["error"], models_skipped=status["skipped"])  # fmt: skip


# --------------------------------------------------------------------------- case 14


def shift_loaded_at(rig, hours: float) -> None:
    for table in RAW_WITH_FRESHNESS:
        rig.sql(f"update raw.{table} set _loaded_at = _loaded_at - interval '{hours} hours'")


def expected_status(thresholds: Thresholds, name: str, value: float | None) -> str | None:
    if value is None or name not in thresholds.checks:
        return None
    warn, error = thresholds.checks[name]
    return "error" if error.violated_by(value) else "warn" if warn.violated_by(value) else "pass"


def freshness_statuses(target: Path) -> dict[str, str]:
    """Each source's status, checked against its own configured criteria and the age dbt measured."""
    seconds = {"minute": 60, "hour": 3600, "day": 86400}
    statuses = {}
    for result in json.loads((target / "sources.json").read_text())["results"]:
        age, criteria = result["max_loaded_at_time_ago_in_s"], result["criteria"]

        def over(level: str, age: float = age, criteria: dict = criteria) -> bool:
            bound = criteria.get(level) or {}
            return bool(bound.get("count")) and age > bound["count"] * seconds[bound["period"]]

        want = "error" if over("error_after") else "warn" if over("warn_after") else "pass"
        assert result["status"] == want, (result["unique_id"], result["status"], want, age)
        statuses[result["unique_id"]] = result["status"]
    return statuses


def test_case_14_freshness_and_quality_thresholds_and_one_alert_per_run(pipeline):
    rig, work = pipeline.rig, pipeline.work
    config = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())["vars"]
    warn_h, error_h = config["freshness_warn_after_hours"], config["freshness_error_after_hours"]

    # dbt tests: warn-severity failures warn and leave the exit code 0; every warning is configured so.
    results = json.loads((work / "build-target" / "run_results.json").read_text())["results"]
    nodes = json.loads((work / "build-target" / "manifest.json").read_text())["nodes"]
    assert pipeline.build.returncode == 0
    statuses = Counter(r["status"] for r in results)
    assert statuses["error"] == statuses["fail"] == 0
    for result in results:
        if result["status"] == "warn":
            assert nodes[result["unique_id"]]["config"]["severity"].lower() == "warn", result["unique_id"]

    fresh = work / "freshness-target"
    shift_loaded_at(rig, warn_h + 0.5)
    try:
        pipeline.dbt("source", "freshness", expect=0, target=fresh)
        warned = freshness_statuses(fresh)
        shift_loaded_at(rig, error_h - warn_h)
        pipeline.dbt("source", "freshness", expect=1, target=fresh)
        errored = freshness_statuses(fresh)
        assert warned["source.telemed.kafka.appointment_events"] == "warn"
        assert errored["source.telemed.kafka.appointment_events"] == "error"

        # The monitors on these artifacts, alerting a real webhook and a real SMTP server on loopback.
        monitor = work / "monitor-target"
        for keep_as, source_dir, artifact in (
            ("freshness", fresh, "sources.json"),
            ("tests", work / "build-target", "run_results.json"),
        ):
            (monitor / "monitor" / keep_as).mkdir(parents=True, exist_ok=True)
            shutil.copy(source_dir / artifact, monitor / "monitor" / keep_as / artifact)
            shutil.copy(source_dir / "manifest.json", monitor / "monitor" / keep_as / "manifest.json")
        webhook, sink = WebhookReceiver(), MailSink()
        from aiosmtpd.controller import Controller

        smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
        smtp.start()
        env = {
            **rig.env,
            "SLACK_WEBHOOK_URL": webhook.url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "ALERT_EMAIL_FROM": "monitors@clinic.test",
            "ALERT_EMAIL_TO": "oncall@clinic.test",
        }
        try:
            runs = []
            for _ in range(2):
                runs.append(
                    subprocess.run(
                        [sys.executable, "-m", "monitors", "--skip-dbt", "--dbt-target", str(monitor),
                         "--report", str(work / "monitoring.html")],
                        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
                    )
                )  # fmt: skip
                (work / "dbt-logs" / f"monitors-{len(runs)}.log").write_text(runs[-1].stdout + runs[-1].stderr)
                if len(runs) == 1:
                    first = (len(webhook.requests), len(sink.messages))
        finally:
            smtp.stop()
            webhook.close()
        assert [r.returncode for r in runs] == [1, 1], runs[0].stdout[-3000:] + runs[0].stderr[-3000:]
        assert first == (1, 1), "one alert per channel for the run"
        assert (len(webhook.requests), len(sink.messages)) == (1, 1), "a repeat inside the interval stays quiet"
        thresholds = Thresholds.load(THRESHOLDS_FILE)
        stored = rig.sql(
            "select check_name, status, observed_value from monitoring.monitor_results"
            " where run_id = (select min(run_id) from monitoring.monitor_runs)"
        )
        compared = 0
        for name, status, value in stored:
            want = expected_status(thresholds, name, value)
            if want is not None:
                assert status == want, f"{name}: {status}, thresholds say {want} for {value}"
                compared += 1
        assert compared >= 5
        assert any(name.startswith("freshness:") and status == "error" for name, status, _ in stored)
    finally:
        shift_loaded_at(rig, -(error_h + 0.5))
    record(14, "freshness warn/error and quality thresholds; one alert per run",
           checks_compared=compared, warn_tests=statuses["warn"])  # fmt: skip


# --------------------------------------------------------------------------- case 10, incremental runs


def test_case_10_competing_terminal_events_across_incremental_dbt_runs(pipeline):
    """After the build: group 3 gets its EARLIER terminal event (must change nothing), group 4 a LATER one
    (must change its status); consumed in a batch of its own, then an incremental dbt run."""
    rig = pipeline.rig
    later = pipeline.incremental_later + pipeline.forward_later
    sent = send_events(rig, pipeline.topic, later)
    rig.drain(pipeline.topic, pipeline.group)
    pipeline.dbt("run", "--select", "int_appointments_derived_from_events", "fact_appointment")
    expected = {a: kind for a, (kind, _) in pipeline.incremental.items()}
    expected.update({a: after for a, (_, after) in pipeline.forward.items()})
    statuses = dict(
        rig.sql("select appointment_id, status from marts.fact_appointment where appointment_id like %s", ("APT-9%",))
    )
    record(10, "competing terminal events, the earlier delivered after an incremental dbt run",
           lost=lost_messages({identify(m) for m in sent}, landed_messages(rig, pipeline.topic)),
           duplicates=mart_duplicates(rig), failures=check_final_states(expected, statuses),
           appointments=len(expected))  # fmt: skip
