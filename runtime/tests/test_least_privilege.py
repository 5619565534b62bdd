"""Each role logs in as itself, with its own password, over scram-sha-256; what each may not do fails with
SQLSTATE 42501; the embedded server's passwords file is its owner's alone, and a state folder from before
passwords is migrated on its next start. PGSSLMODE reaches every connection path."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest

from runtime import db, passwords, services
from runtime.envcmd import child_env
from runtime.kafka import client_config
from runtime.settings import (
    DBT_ROLE,
    EMBEDDED_PG_USER,
    LOADER_ROLE,
    LOGIN_ROLES,
    PROJECT_ROOT,
    RAW_OWNER_ROLE,
    REPORTING_ROLE,
    Settings,
    SettingsError,
)
from runtime.tests.test_raw_privileges import sqlstate
from testkit.fixtures import private_services_env

embedded_only = pytest.mark.skipif(
    bool(os.environ.get("PGHOST") or os.environ.get("DATABASE_URL")), reason="the embedded server's own setup"
)


def login(settings: Settings, user: str, password: str | None, database: str | None = None):
    """A bare libpq login: no password file, no PGPASSWORD, only what is given."""
    dsn = f"host={settings.pg_host} port={settings.pg_port} dbname={database or settings.pg_database} user={user}"
    return psycopg2.connect(dsn, password=password or "", passfile=os.devnull, connect_timeout=5)


@embedded_only
def scram_rounds(cur, roles) -> dict[str, str]:
    """Each role's verifier up to its iteration count ("SCRAM-SHA-256$4096"), read as the admin."""
    query = "select rolname, split_part(rolpassword, ':', 1) from pg_authid where rolname = any(%s)"
    cur.execute(query, (list(roles),))
    return dict(cur.fetchall())


def test_passwords_file_is_private_and_every_host_line_asks_for_scram(base_settings):
    file = passwords.path(base_settings.state_dir)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert set(passwords.read(base_settings.state_dir)) == {EMBEDDED_PG_USER, *LOGIN_ROLES}
    hba = services.EmbeddedPostgres(base_settings).data / "pg_hba.conf"
    rules = [line.split() for line in hba.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[0] == "host" and rule[-1] == "scram-sha-256" for rule in rules), rules
    conn = db.connect(base_settings, database="postgres")
    with conn.cursor() as cur:
        cur.execute("select rolname, rolpassword like 'SCRAM-SHA-256$%%' from pg_authid where rolname = any(%s)",
                    ([EMBEDDED_PG_USER, *LOGIN_ROLES],))  # fmt: skip
        assert dict(cur.fetchall()) == dict.fromkeys([EMBEDDED_PG_USER, *LOGIN_ROLES], True)
        # Each bootstrap hashes the login roles' generated passwords again, with passwords.SCRAM_ITERATIONS.
        generated = f"SCRAM-SHA-256${passwords.SCRAM_ITERATIONS}"
        assert scram_rounds(cur, LOGIN_ROLES) == dict.fromkeys(LOGIN_ROLES, generated)
    conn.close()


def test_a_passwords_file_readable_by_others_is_refused(tmp_path):
    passwords.ensure(tmp_path, [LOADER_ROLE])
    passwords.path(tmp_path).chmod(0o644)
    with pytest.raises(passwords.PasswordFileError, match=r"readable by others.*chmod 600"):
        passwords.read(tmp_path)


@pytest.mark.parametrize("role", LOGIN_ROLES)
def test_each_role_logs_in_as_itself_and_cannot_become_the_admin(settings, role):
    conn = db.connect(settings, role=role)
    try:
        with conn.cursor() as cur:
            cur.execute("select session_user, current_user")
            assert cur.fetchone() == (role, role)
        for escape in (
            f"set role {settings.pg_user}",
            f"set role {RAW_OWNER_ROLE}",
            "set session authorization postgres",
        ):
            with pytest.raises(psycopg2.Error) as refused, conn.cursor() as cur:
                cur.execute(escape)
            assert refused.value.pgcode == "42501", escape
            conn.rollback()
    finally:
        conn.close()


@pytest.mark.parametrize("user", [None, *LOGIN_ROLES], ids=lambda u: u or "admin")
def test_the_right_password_logs_in_and_a_wrong_or_missing_one_does_not(settings, user):
    user = user or settings.pg_user
    login(settings, user, settings.password_for(user)).close()
    for wrong in ("not-" + (settings.password_for(user) or ""), None):
        with pytest.raises(psycopg2.OperationalError, match=r"password authentication failed|no password supplied"):
            login(settings, user, wrong)


STAGING_VIEW = "staging.stg_privilege_probe"
FORBIDDEN = {
    LOADER_ROLE: [f"select * from {STAGING_VIEW}", "create schema loader_was_here"],
    DBT_ROLE: [
        "insert into raw.load_runs (loader) values ('dbt-was-here')",
        "alter table raw.load_runs add column dbt_was_here int",
        "select * from clinic_ops.probe",
    ],
    REPORTING_ROLE: [
        "select * from raw.appointment_events",
        "select * from raw.patients",
        f"select * from {STAGING_VIEW}",
        "select * from clinic_ops.probe",
        "create table public.reporting_was_here (x int)",
        "create temporary table reporting_stage (x int)",
        "create schema reporting_was_here",
    ],
}


@pytest.fixture(scope="module")
def built_schemas(settings):
    """A staging view made the way dbt makes one (as its role, granting nobody) and a clinic table."""
    with db.transaction(settings, role=DBT_ROLE) as conn, conn.cursor() as cur:
        cur.execute("create schema if not exists staging")
        cur.execute(f"create or replace view {STAGING_VIEW} as select count(*) as n from raw.load_runs")
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("create table if not exists clinic_ops.probe (x int)")
    return settings


@pytest.mark.parametrize(
    ("role", "statement"), [(r, s) for r, ss in FORBIDDEN.items() for s in ss], ids=lambda v: v[:40]
)
def test_what_a_role_may_not_do_fails_with_42501(built_schemas, role, statement):
    assert sqlstate(built_schemas, role, statement) == "42501"


def test_the_roles_own_work_still_succeeds(built_schemas):
    assert sqlstate(built_schemas, DBT_ROLE, f"select * from {STAGING_VIEW}") is None
    assert sqlstate(built_schemas, LOADER_ROLE, "select * from clinic_ops.probe") is None


def test_a_new_raw_table_gets_the_same_grants_and_public_nothing(settings):
    """What a new migration creates (as the raw owner) is granted by the same rules, with no bootstrap."""
    table = f"raw.probe_{uuid.uuid4().hex[:8]}"
    with db.transaction(settings, role=RAW_OWNER_ROLE) as conn, conn.cursor() as cur:
        cur.execute(f"create table {table} (id bigserial primary key, x int)")
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "select r, p, has_table_privilege(r, %s, p) from unnest(%s::text[]) r,"
            " unnest(array['select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger']) p",
            (table, [LOADER_ROLE, DBT_ROLE, REPORTING_ROLE]),
        )
        granted = {(r, p) for r, p, has in cur.fetchall() if has}
        cur.execute(
            "select count(*) from pg_class c cross join lateral aclexplode(c.relacl) acl"
            " where c.relnamespace = 'raw'::regnamespace and acl.grantee = 0"
        )
        public = cur.fetchone()[0]
    assert granted == {(LOADER_ROLE, "select"), (LOADER_ROLE, "insert"), (LOADER_ROLE, "update"), (DBT_ROLE, "select")}
    assert public == 0
    assert sqlstate(settings, LOADER_ROLE, f"insert into {table} (x) values (1)") is None
    assert sqlstate(settings, LOADER_ROLE, f"truncate {table}") == "42501"


def test_public_holds_nothing_on_the_schemas_the_sequences_or_the_database(settings):
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "select n.nspname, p from pg_namespace n, unnest(array['usage', 'create']) p"
            " where n.nspname in ('raw', 'clinic_ops', 'public') and has_schema_privilege('public', n.oid, p)"
            " and not (n.nspname = 'public' and p = 'usage')"
        )
        assert cur.fetchall() == []
        cur.execute(
            "select c.relname from pg_class c cross join lateral aclexplode(coalesce(c.relacl,"
            " acldefault('s', c.relowner))) acl where c.relkind = 'S' and c.relnamespace = 'raw'::regnamespace"
            " and acl.grantee = 0"
        )
        assert cur.fetchall() == []
        cur.execute(
            "select p from unnest(array['connect', 'create', 'temporary']) p"
            " where has_database_privilege('public', current_database(), p)"
        )
        assert cur.fetchall() == []


# --------------------------------------------------------------------------- the embedded server's setup


@pytest.fixture
def own_postgres():
    """An embedded Postgres of the test's own (no broker), bootstrapped, removed afterwards."""
    state = PROJECT_ROOT / ".local" / "privilege" / uuid.uuid4().hex[:8]
    settings = dataclasses.replace(Settings.from_env(private_services_env(state)), pg_database="telemed_migrate")
    postgres = services.EmbeddedPostgres(settings)
    postgres.start()
    try:
        db.bootstrap(settings)
        yield settings, postgres
    finally:
        postgres.stop(mode="immediate")
        shutil.rmtree(state, ignore_errors=True)


@embedded_only
@pytest.mark.slow  # initdb and two more starts: 15 s
def test_a_state_folder_from_before_passwords_is_migrated_on_its_next_start(own_postgres):
    """The old setup: pg_hba.conf trusting every loopback connection, no passwords, no passwords file."""
    settings, postgres = own_postgres
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("insert into raw.load_runs (loader) values ('from-before')")
        for user in (EMBEDDED_PG_USER, *LOGIN_ROLES):
            cur.execute(f"alter role {user} password null")
    postgres.stop()
    hba = postgres.data / "pg_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n")
    old = passwords.read(settings.state_dir)
    passwords.path(settings.state_dir).unlink()

    assert postgres.start()
    assert hba.read_text() == services.PG_HBA
    assert stat.S_IMODE(passwords.path(settings.state_dir).stat().st_mode) == 0o600
    new = passwords.read(settings.state_dir)
    assert set(new) == {EMBEDDED_PG_USER, *LOGIN_ROLES} and not set(new.items()) & set(old.items())
    for user in (EMBEDDED_PG_USER, *LOGIN_ROLES):
        login(settings, user, new[user]).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(settings, user, old[user])
    with db.transaction(settings, role=LOADER_ROLE) as conn, conn.cursor() as cur:
        cur.execute("select loader from raw.load_runs")
        assert cur.fetchall() == [("from-before",)]
    # A later start finds everything in place and changes nothing.
    postgres.stop()
    assert postgres.start()
    assert passwords.read(settings.state_dir) == new


@embedded_only
@pytest.mark.slow  # initdb: 5 s
def test_generated_passwords_get_few_scram_rounds_and_given_ones_the_servers_count(own_postgres):
    """A generated password (192 random bits) is hashed with passwords.SCRAM_ITERATIONS rounds, the admin's
    included; a password given in the environment keeps the server's default (4096), since a person may
    have chosen it. Each logs in either way."""
    settings, _ = own_postgres
    given = dataclasses.replace(settings, role_passwords=((DBT_ROLE, "a password someone chose"),))
    db.bootstrap(given)
    conn = db.connect(settings, database="postgres")
    with conn.cursor() as cur:
        rounds = scram_rounds(cur, [EMBEDDED_PG_USER, *LOGIN_ROLES])
    conn.close()
    generated = f"SCRAM-SHA-256${passwords.SCRAM_ITERATIONS}"
    assert rounds == {**dict.fromkeys([EMBEDDED_PG_USER, *LOGIN_ROLES], generated), DBT_ROLE: "SCRAM-SHA-256$4096"}
    known = passwords.read(settings.state_dir)
    for user in (EMBEDDED_PG_USER, REPORTING_ROLE, LOADER_ROLE):
        login(settings, user, known[user]).close()
    login(settings, DBT_ROLE, "a password someone chose").close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        login(settings, DBT_ROLE, known[DBT_ROLE])


# --------------------------------------------------------------------------- TLS settings


def test_pgsslmode_reaches_psycopg2_and_the_child_processes(settings, monkeypatch):
    """pgserver's Postgres is built without SSL: PGSSLMODE=require must make every path refuse it."""
    monkeypatch.setenv("PGSSLMODE", "require")
    with pytest.raises(psycopg2.OperationalError, match="server does not support SSL"):
        db.connect(settings, role=LOADER_ROLE)
    env = child_env(dataclasses.replace(Settings.from_env(), pg_database=settings.pg_database), role=DBT_ROLE)
    assert env["PGSSLMODE"] == "require" and env["PGUSER"] == DBT_ROLE
    monkeypatch.setenv("PGSSLMODE", "disable")
    db.connect(settings, role=LOADER_ROLE).close()


@pytest.mark.slow  # dbt debug: 9 s
def test_dbt_takes_sslmode_from_the_environment(settings, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text((PROJECT_ROOT / "profiles.yml.example").read_text())
    env = {
        **os.environ,
        **child_env(settings, role=DBT_ROLE),
        "PGSSLMODE": "require",
        "DBT_PROFILES_DIR": str(profiles),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "debug", "--project-dir", str(PROJECT_ROOT),
         "--log-path", str(tmp_path / "logs")],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert "sslmode: require" in done.stdout, done.stdout[-2000:]
    assert "user: telemed_dbt" in done.stdout
    assert "server does not support SSL" in done.stdout, done.stdout[-2000:]


def test_kafka_security_settings_reach_every_client_config():
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.clinic.example:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "telemed",
        "KAFKA_SASL_PASSWORD": "sasl-" + "x" * 12,
        "KAFKA_SSL_CA_LOCATION": "/etc/ssl/certs/ca-certificates.crt",
    }
    settings = Settings.from_env(env)
    config = client_config(settings, **{"group.id": "g"})
    assert {k: config[k] for k in ("security.protocol", "sasl.mechanism", "sasl.username", "ssl.ca.location")} == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "telemed",
        "ssl.ca.location": "/etc/ssl/certs/ca-certificates.crt",
    }
    assert config["sasl.password"] == env["KAFKA_SASL_PASSWORD"] and env["KAFKA_SASL_PASSWORD"] not in repr(settings)
    # librdkafka accepts the properties as given (it checks names and values when a client is made).
    from confluent_kafka import Consumer, Producer

    Producer(client_config(settings)).flush(0)
    Consumer(config).close()
    # Child processes (dbt's wrapper, the Airflow steps) get them back as the same variables.
    passed = child_env(dataclasses.replace(settings, pg_embedded=False))
    assert {k: passed[k] for k in env if k.startswith("KAFKA_")} == env
    with pytest.raises(SettingsError, match="KAFKA_SECURITY_PROTOCOL must be one of"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "tls"})
    with pytest.raises(SettingsError, match="needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"})
