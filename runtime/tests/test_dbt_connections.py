"""dbt keeps each thread's connection from node to node (runtime/dbt_connections.py): one connection per
thread for a run, none left in a transaction, and a connection that is broken or in a role is closed as
dbt closes it."""

from __future__ import annotations

import gc
import subprocess
import sys

import dbt.cli.main
import psycopg2
import psycopg2.extensions as ext
import pytest
from dbt.adapters.contracts.connection import Connection

from runtime import db, dbt_cli
from runtime.dbt_cli import command
from runtime.dbt_connections import ENV_SWITCH, _ready_for_next_node, keep_connections
from runtime.dbt_session import SUCCESS, DbtSession
from runtime.envcmd import child_env
from runtime.processes import FEWER_COLLECTIONS
from runtime.settings import PROJECT_ROOT, Settings

OPENED = "NewConnectionOpening"  # dbt's event when a connection is opened (a new server session)


def dbt_run(settings: Settings, tmp_path, keep: str) -> DbtSession:
    env = {
        **child_env(settings),
        ENV_SWITCH: keep,
        "DBT_THREADS": "1",
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
    }
    session = DbtSession(env, keep_lines=None)
    assert session.run(["run", "--select", "staging"]) == SUCCESS, "\n".join(session.output)
    return session


def test_a_run_opens_a_connection_per_thread_not_per_node(settings: Settings, tmp_path):
    kept = dbt_run(settings, tmp_path, "1")
    nodes = kept.events.count("NodeFinished")
    assert nodes >= 10, f"the staging models ran: {nodes}"
    # one per thread: the main thread's (the run-start hooks), dbt's setup threads' (schemas, the relation
    # cache) and the one worker thread's
    assert kept.events.count(OPENED) <= 4, kept.events.count(OPENED)

    closed = dbt_run(settings, tmp_path, "0")
    assert closed.events.count("NodeFinished") == nodes
    assert closed.events.count(OPENED) > nodes, "switched off, dbt opens one for every node"


def node_connection(handle, role: str | None = None) -> Connection:
    """A dbt Connection around a real psycopg2 connection, as dbt-postgres holds it during a node."""
    credentials = type("Credentials", (), {"role": role})()
    return Connection(
        type="postgres", name="model.telemed.probe", state="open", transaction_open=False, handle=handle,
        credentials=credentials,
    )  # fmt: skip


@pytest.fixture
def dbt_connection(settings: Settings):
    handle = db.connect(settings)
    yield node_connection(handle)
    handle.close()


def visible_to_others(settings: Settings, table: str) -> bool:
    """Whether another session sees ``table``: whether its creation was committed."""
    other = db.connect(settings)
    try:
        with other.cursor() as cur:
            cur.execute("select to_regclass(%s)", (table,))
            return cur.fetchone()[0] is not None
    finally:
        other.close()


def test_what_a_node_left_uncommitted_is_rolled_back_and_the_connection_kept(dbt_connection, settings):
    handle = dbt_connection.handle
    with handle.cursor() as cur:
        cur.execute("create table public.left_uncommitted (n int)")
    dbt_connection.transaction_open = True
    assert handle.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS

    assert _ready_for_next_node(dbt_connection)
    assert handle.info.transaction_status == ext.TRANSACTION_STATUS_IDLE and not dbt_connection.transaction_open
    assert not handle.closed
    assert not visible_to_others(settings, "public.left_uncommitted"), "the node's uncommitted work outlived it"


def test_after_dbt_commits_with_a_statement_the_next_node_still_starts_a_transaction(dbt_connection, settings):
    """dbt's COMMIT is a statement psycopg2 does not see; the next node's statements must not each commit on
    their own (a seed's table was visible before its grant when they did)."""
    handle = dbt_connection.handle
    with handle.cursor() as cur:
        cur.execute("select 1")  # psycopg2 sends BEGIN first
        cur.execute("COMMIT")  # how dbt commits: the server is idle, psycopg2 still counts a transaction
    assert handle.info.transaction_status == ext.TRANSACTION_STATUS_IDLE and handle.status == ext.STATUS_BEGIN

    assert _ready_for_next_node(dbt_connection)
    assert not [notice for notice in handle.notices if "no transaction in progress" in notice], handle.notices
    with handle.cursor() as cur:
        cur.execute("create table public.next_node (n int)")
        assert handle.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS, "the statement committed alone"
    assert not visible_to_others(settings, "public.next_node"), "visible before the node committed"


def test_a_connection_whose_last_statement_failed_is_rolled_back_and_kept(dbt_connection):
    handle = dbt_connection.handle
    with pytest.raises(psycopg2.errors.UndefinedTable), handle.cursor() as cur:
        cur.execute("select * from public.no_such_table")
    assert handle.info.transaction_status == ext.TRANSACTION_STATUS_INERROR
    assert _ready_for_next_node(dbt_connection)
    with handle.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)


def test_a_connection_the_server_ended_is_not_kept(dbt_connection, settings):
    handle = dbt_connection.handle
    with handle.cursor() as cur:
        cur.execute("select pg_backend_pid()")
        pid = cur.fetchone()[0]
    killer = db.connect(settings)
    try:
        with killer.cursor() as cur:
            cur.execute("select pg_terminate_backend(%s, 5000)", (pid,))
            assert cur.fetchone()[0]
    finally:
        killer.close()
    dbt_connection.transaction_open = True  # dbt's explicit transaction: its rollback meets the dead session
    assert not _ready_for_next_node(dbt_connection)


def test_closed_or_role_connections_are_not_kept(dbt_connection):
    in_role = node_connection(dbt_connection.handle, role="telemed_dbt")
    assert not _ready_for_next_node(in_role), "set role runs in a transaction a rollback would undo"
    dbt_connection.handle.close()
    assert not _ready_for_next_node(dbt_connection)
    dbt_connection.state = "closed"
    assert not _ready_for_next_node(dbt_connection)


def test_installed_once_and_switched_off_per_call(monkeypatch):
    from dbt.adapters.postgres.connections import PostgresConnectionManager

    monkeypatch.setenv(ENV_SWITCH, "1")
    assert keep_connections() and keep_connections()
    installed = PostgresConnectionManager.release
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert not keep_connections()
    assert PostgresConnectionManager.release is installed, "installed once"


def test_the_command_line_is_dbts_with_its_exit_statuses():
    """`python -m runtime.dbt_cli` (the make targets' and Airflow's dbt) answers as the `dbt` command does."""
    assert command("build", "--select", "x") == [sys.executable, "-m", "runtime.dbt_cli", "build", "--select", "x"]
    helped = subprocess.run(command("--help"), cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: dbt "), helped.stdout[:300]
    refused = subprocess.run(command("--no-such-option"), cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "No such option" in refused.stderr, refused.stderr[-300:]


def test_the_command_line_runs_dbt_with_fewer_collections(monkeypatch):
    """`python -m runtime.dbt_cli` runs dbt at the garbage collector's slower pace (runtime/processes.py),
    and sets the caller's back when dbt returns."""
    seen = []
    monkeypatch.setattr(dbt.cli.main, "cli", lambda **kwargs: seen.append(gc.get_threshold()) or 0)
    before = gc.get_threshold()
    assert dbt_cli.main() == 0
    assert seen == [FEWER_COLLECTIONS]
    assert gc.get_threshold() == before != FEWER_COLLECTIONS
