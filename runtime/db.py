"""Database access: connections, the one-time bootstrap (database, roles, schemas) and migrations.

Roles (least privilege, see docs/architecture.md):
- telemed_raw_owner (no login) owns schema raw and its tables: migrations, retention and erasure act as it;
- telemed_loader selects, inserts and updates rows in raw (and reads clinic_ops, the source it copies); it
  owns nothing, so it cannot drop, truncate or alter a raw table, nor delete from one;
- telemed_dbt reads raw and owns the schemas dbt builds;
- telemed_reporting reads marts only (granted by dbt on the models it builds).
The loader, dbt and reporting roles log in as themselves with their own passwords (Settings.password_for);
only the raw owner, which cannot log in, is reached by the admin with ``SET ROLE``. The admin stays a
member of raw owner, loader and dbt so that it can move ownership between them on any server.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from runtime import passwords
from runtime.settings import (
    DBT_ROLE,
    LOADER_ROLE,
    LOGIN_ROLES,
    RAW_OWNER_ROLE,
    REPORTING_ROLE,
    ROLE_PASSWORD_ENV,
    Settings,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def connect(settings: Settings, *, database: str | None = None, role: str | None = None, **kwargs):
    """A psycopg2 connection, UTC session, as the admin or as one of the project roles.

    A login role (loader, dbt, reporting) logs in as itself with its password, so the session holds that
    role's privileges and nothing more (no ``RESET ROLE`` back to the admin); the raw owner, which has no
    login, is the admin's session after ``SET ROLE``. libpq reads PGSSLMODE and the other TLS variables
    from the environment for every one of them.

    Loader sessions (the loader role) are bounded: TCP keepalives and tcp_user_timeout notice a server or
    network that went silent, and statement_timeout ends a statement stuck on the server (a lock, a
    stall), so a loader gets an error it retries instead of blocking forever (Settings: pg_* timeouts).
    """
    if role == LOADER_ROLE:
        bounds = {
            "keepalives": 1,
            "keepalives_idle": settings.pg_keepalives_idle_s,
            "keepalives_interval": max(1, settings.pg_keepalives_idle_s // 2),
            "keepalives_count": 3,
            "tcp_user_timeout": settings.pg_tcp_user_timeout_ms,
        }
        kwargs = {**bounds, **kwargs}
    login = role if role in LOGIN_ROLES else None
    try:
        dsn = settings.dsn(database=database, user=login)
    except passwords.PasswordFileError as exc:
        # The embedded server never started here: to every caller (and its retries) that is a server it
        # cannot reach, which is what it is.
        raise psycopg2.OperationalError(str(exc)) from exc
    try:
        conn = psycopg2.connect(dsn, connect_timeout=settings.pg_connect_timeout_s, **kwargs)
    except psycopg2.OperationalError as exc:
        if login and not settings.pg_embedded and "password" in str(exc):
            raise psycopg2.OperationalError(
                f"{str(exc).strip()}\n{login} logs in with its own password: set {ROLE_PASSWORD_ENV[login]} "
                "(see .env.example)"
            ) from exc
        raise
    with conn.cursor() as cur:
        cur.execute("set time zone 'UTC'")
        if role and not login:
            cur.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        if role == LOADER_ROLE:
            cur.execute("select set_config('statement_timeout', %s, false)", (str(settings.pg_statement_timeout_ms),))
    conn.commit()
    return conn


@contextmanager
def transaction(settings: Settings, **kwargs) -> Iterator[psycopg2.extensions.connection]:
    conn = connect(settings, **kwargs)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def ensure_database(settings: Settings, database: str | None = None) -> bool:
    """Create the database when it is missing; True when it was created."""
    name = database or settings.pg_database
    conn = connect(settings, database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            log.info("created database %s", name)
            return True
    finally:
        conn.close()


def drop_database(settings: Settings, database: str) -> None:
    conn = connect(settings, database="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database)))
    finally:
        conn.close()


def ensure_roles(cur, settings: Settings) -> None:
    """Create the project roles (cluster-wide), give each login role its password (when one is known) and
    make the current user a member of raw owner, loader and dbt."""
    for role, login in [(RAW_OWNER_ROLE, False)] + [(role, True) for role in LOGIN_ROLES]:
        cur.execute("select 1 from pg_roles where rolname = %s", (role,))
        if not cur.fetchone():
            # Concurrent bootstraps (parallel test sessions) may race on the same cluster-wide role.
            cur.execute("savepoint create_role")
            try:
                cur.execute(
                    sql.SQL("create role {} {}").format(sql.Identifier(role), sql.SQL("login" if login else "nologin"))
                )
            except psycopg2.errors.DuplicateObject:
                cur.execute("rollback to savepoint create_role")
            else:
                cur.execute("release savepoint create_role")
        password = settings.password_for(role) if login else None
        if password:
            if settings.pg_embedded:
                # A password the embedded server generated gets the SCRAM rounds passwords.py says, one given
                # in the environment the server's default. libpq hashes with the count the server reports,
                # which follows this setting until the commit.
                rounds = passwords.SCRAM_ITERATIONS if settings.password_is_generated(role) else "default"
                cur.execute(f"set local scram_iterations to {rounds}")
            # Hashed by libpq with the server's password_encryption (scram-sha-256): the statement, which a
            # server may log, never carries the password itself.
            verifier = psycopg2.extensions.encrypt_password(password, role, cur)
            cur.execute(sql.SQL("alter role {} password %s").format(sql.Identifier(role)), (verifier,))
    for role in (RAW_OWNER_ROLE, LOADER_ROLE, DBT_ROLE):
        cur.execute(
            "select pg_has_role(current_user, %s, 'member')",
            (role,),
        )
        if not cur.fetchone()[0]:
            cur.execute(sql.SQL("grant {} to current_user").format(sql.Identifier(role)))


def bootstrap(settings: Settings, database: str | None = None) -> None:
    """Idempotent: database, roles, schemas and grants. Needs a user allowed to create roles."""
    name = database or settings.pg_database
    ensure_database(settings, name)
    conn = connect(settings, database=name)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(hashtext('telemed-bootstrap'))")
            ensure_roles(cur, settings)
            ident = sql.Identifier
            db = ident(name)
            cur.execute(sql.SQL("revoke all on database {} from public").format(db))
            cur.execute(sql.SQL("revoke create on schema public from public"))
            for role in (LOADER_ROLE, DBT_ROLE, REPORTING_ROLE):
                cur.execute(sql.SQL("grant connect on database {} to {}").format(db, ident(role)))
            # dbt creates its own schemas (staging, intermediate, marts, monitoring, snapshots).
            cur.execute(sql.SQL("grant create on database {} to {}").format(db, ident(DBT_ROLE)))
            # The loaders stage each batch in a temporary table before the upsert into raw; dbt uses
            # temporary tables for incremental merges, snapshots and unit tests.
            for role in (LOADER_ROLE, DBT_ROLE):
                cur.execute(sql.SQL("grant temporary on database {} to {}").format(db, ident(role)))
            _raw_schema(cur)
            # clinic_ops plays the clinic's own database: written by the generator, read by the loader.
            cur.execute("create schema if not exists clinic_ops")
            cur.execute(sql.SQL("grant usage on schema clinic_ops to {}").format(ident(LOADER_ROLE)))
            cur.execute(sql.SQL("grant select on all tables in schema clinic_ops to {}").format(ident(LOADER_ROLE)))
            cur.execute(
                sql.SQL("alter default privileges in schema clinic_ops grant select on tables to {}").format(
                    ident(LOADER_ROLE)
                )
            )
    finally:
        conn.close()
    migrate(settings, database=name)
    # The owner's own bookkeeping: the loader neither reads nor writes it.
    conn = connect(settings, database=name)
    try:
        with conn, conn.cursor() as cur:
            for table in OWNER_ONLY_TABLES:
                cur.execute(
                    sql.SQL("revoke all on raw.{} from {}").format(sql.Identifier(table), sql.Identifier(LOADER_ROLE))
                )
    finally:
        conn.close()
    log.info("database %s bootstrapped", name)


# What the loader may do to the rows of raw: no delete (retention and erasure act as the owner).
LOADER_RAW_PRIVILEGES = ("select", "insert", "update")
# Tables of raw that only the owner writes: migrations, and the retention and erasure logs.
OWNER_ONLY_TABLES = ("schema_migrations", "retention_log", "erasure_log")


def _raw_schema(cur) -> None:
    """Schema raw, owned by the raw owner role; the loader writes rows, dbt reads them.

    Databases bootstrapped before the owner role existed had raw owned by the loader: schema, tables and
    sequences move to the owner here (the connecting user is a member of both)."""
    ident = sql.Identifier
    owner, loader, dbt_role = ident(RAW_OWNER_ROLE), ident(LOADER_ROLE), ident(DBT_ROLE)
    cur.execute(sql.SQL("create schema if not exists raw authorization {}").format(owner))
    cur.execute(sql.SQL("alter schema raw owner to {}").format(owner))
    cur.execute(
        """
        select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'raw' and c.relkind in ('r', 'p', 'v', 'm')
          and pg_get_userbyid(c.relowner) <> %s
        """,
        (RAW_OWNER_ROLE,),
    )
    for name, kind in cur.fetchall():
        what = sql.SQL("view" if kind == "v" else "materialized view" if kind == "m" else "table")
        cur.execute(sql.SQL("alter {} raw.{} owner to {}").format(what, ident(name), owner))
    cur.execute(sql.SQL("revoke all on schema raw from public"))
    cur.execute(sql.SQL("grant usage on schema raw to {}, {}").format(loader, dbt_role))
    writes = sql.SQL(", ").join(sql.SQL(p) for p in LOADER_RAW_PRIVILEGES)
    cur.execute(sql.SQL("grant {} on all tables in schema raw to {}").format(writes, loader))
    cur.execute(sql.SQL("grant usage on all sequences in schema raw to {}").format(loader))
    cur.execute(sql.SQL("grant select on all tables in schema raw to {}").format(dbt_role))
    for grant in (
        sql.SQL("grant {} on tables to {}").format(writes, loader),
        sql.SQL("grant usage on sequences to {}").format(loader),
        sql.SQL("grant select on tables to {}").format(dbt_role),
    ):
        cur.execute(sql.SQL("alter default privileges for role {} in schema raw ").format(owner) + grant)


def _migrations() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        text = path.read_text()
        found.append((path.stem, text, hashlib.sha256(text.encode()).hexdigest()))
    return found


def migrate(settings: Settings, database: str | None = None) -> list[str]:
    """Apply the raw schema's versioned DDL as the raw owner role; returns the versions applied.

    An applied migration whose file changed afterwards is an error: versions are immutable.
    """
    applied = []
    conn = connect(settings, database=database, role=RAW_OWNER_ROLE)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(hashtext('telemed-migrations'))")
            cur.execute(
                """
                create table if not exists raw.schema_migrations (
                    version text primary key,
                    checksum text not null,
                    applied_at timestamptz not null default now()
                )
                """
            )
            cur.execute("select version, checksum from raw.schema_migrations")
            done = dict(cur.fetchall())
            for version, text, checksum in _migrations():
                if version in done:
                    if done[version] != checksum:
                        raise RuntimeError(
                            f"migration {version} changed after it was applied; add a new migration instead"
                        )
                    continue
                cur.execute(text)
                cur.execute(
                    "insert into raw.schema_migrations (version, checksum) values (%s, %s)",
                    (version, checksum),
                )
                applied.append(version)
                log.info("applied migration %s", version)
    finally:
        conn.close()
    return applied
