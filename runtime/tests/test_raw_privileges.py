"""Least privilege on raw, on a freshly bootstrapped database: the raw owner role owns schema raw and its
tables; the loader writes rows (select, insert, update) but cannot drop, truncate, alter, delete or create,
nor touch the owner's own logs; dbt only reads; PUBLIC has nothing. Each refusal must be SQLSTATE 42501."""

from __future__ import annotations

import psycopg2
import pytest

from runtime import db
from runtime.settings import DBT_ROLE, LOADER_ROLE, RAW_OWNER_ROLE, REPORTING_ROLE

FORBIDDEN = {
    LOADER_ROLE: [
        "drop table raw.appointment_events",
        "truncate raw.load_runs",
        "alter table raw.patients add column loader_was_here int",
        "delete from raw.appointment_events",
        "create table raw.loader_was_here (x int)",
        "drop schema raw cascade",
        "insert into raw.retention_log (run_id, as_of, policy, table_name, keep_days, cutoff, clock, applied,"
        " rows_due) values (gen_random_uuid(), now(), 'p', 't', 1, now(), 'load', true, 0)",
        "select * from raw.erasure_log",
        "select * from raw.schema_migrations",
    ],
    DBT_ROLE: [
        "drop table raw.appointment_events",
        "truncate raw.load_runs",
        "delete from raw.patient_feedback",
        "update raw.patients set first_name = 'x'",
    ],
    REPORTING_ROLE: [
        "select * from raw.load_runs",
        "truncate raw.load_runs",
    ],
}
ALLOWED = {
    LOADER_ROLE: [
        "insert into raw.load_runs (loader) values ('privilege-check')",
        "update raw.load_runs set status = 'failed' where loader = 'privilege-check'",
        "select count(*) from raw.appointment_events",
        "create temporary table loader_stage (x int)",
    ],
    DBT_ROLE: ["select count(*) from raw.retention_log", "select count(*) from raw.appointment_events"],
    RAW_OWNER_ROLE: ["delete from raw.load_runs where false", "truncate raw.kafka_offsets"],
}


def sqlstate(settings, role: str, statement: str) -> str | None:
    """The SQLSTATE of ``statement`` run as ``role`` (always rolled back), or None when it succeeds."""
    conn = db.connect(settings, role=role)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        return None
    except psycopg2.Error as exc:
        return exc.pgcode
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize(
    ("role", "statement"), [(r, s) for r, ss in FORBIDDEN.items() for s in ss], ids=lambda v: v[:40]
)
def test_forbidden_statements_fail_with_42501(settings, role, statement):
    assert sqlstate(settings, role, statement) == "42501"


def test_allowed_statements_succeed(settings):
    refused = [(r, s, code) for r, ss in ALLOWED.items() for s in ss if (code := sqlstate(settings, r, s))]
    assert not refused


def test_raw_is_owned_by_the_owner_role_and_public_has_nothing(settings):
    conn = db.connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("select nspowner::regrole::text, nspacl::text from pg_namespace where nspname = 'raw'")
            owner, acl = cur.fetchone()
            assert owner == RAW_OWNER_ROLE
            # An ACL entry "=..." is PUBLIC's.
            assert not any(entry.startswith("=") for entry in acl.strip("{}").split(",")), acl
            cur.execute(
                "select c.relname, pg_get_userbyid(c.relowner) from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'raw' and c.relkind in ('r', 'S')"
                " and pg_get_userbyid(c.relowner) <> %s",
                (RAW_OWNER_ROLE,),
            )
            assert cur.fetchall() == []
            # PUBLIC (grantee 0): no privilege on any relation of the project's schemas, nor on the database.
            cur.execute(
                "select n.nspname, c.relname, acl.privilege_type from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace"
                " cross join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) acl"
                " where n.nspname in ('raw', 'clinic_ops') and acl.grantee = 0"
            )
            assert cur.fetchall() == []
            cur.execute(
                "select acl.privilege_type from pg_database d"
                " cross join lateral aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) acl"
                " where d.datname = current_database() and acl.grantee = 0"
            )
            assert cur.fetchall() == []
    finally:
        conn.close()


def test_bootstrap_moves_a_loader_owned_raw_to_the_owner(settings):
    """A database bootstrapped before the owner role existed: raw and a table owned by the loader."""
    conn = db.connect(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"alter schema raw owner to {LOADER_ROLE}")
            cur.execute(f"alter table raw.load_runs owner to {LOADER_ROLE}")
        db.bootstrap(settings)
        with conn.cursor() as cur:
            cur.execute(
                "select nspowner::regrole::text, (select relowner::regrole::text from pg_class"
                " where oid = 'raw.load_runs'::regclass) from pg_namespace where nspname = 'raw'"
            )
            assert cur.fetchone() == (RAW_OWNER_ROLE, RAW_OWNER_ROLE)
    finally:
        conn.close()
    assert sqlstate(settings, LOADER_ROLE, "truncate raw.load_runs") == "42501"
    assert sqlstate(settings, LOADER_ROLE, "insert into raw.load_runs (loader) values ('after-move')") is None
