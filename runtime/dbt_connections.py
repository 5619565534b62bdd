"""dbt-postgres keeps each thread's connection from one node to the next, instead of opening one per node.

dbt closes a thread's connection when a node ends and opens another for the next node (dbt-adapters'
``BaseConnectionManager.release``): on Postgres a login, an authentication and a new server process for each
model, snapshot and data test, whose catalog caches start cold. A run of the project's 522 data tests
opened as many connections: 13.3 CPU-seconds (dbt and the server) against 10.7 with one per thread, about
3.4 ms of the server's CPU and 1 ms of dbt's per connection (docs/tests.md). dbt itself supports a
connection that outlives its node (``set_connection_name`` renames an open connection, event
``ConnectionReused``), and dbt-snowflake keeps them open with its profile setting ``reuse_connections``;
dbt-postgres has no such setting, so ``keep_connections`` gives its connection manager a ``release`` that
keeps a healthy connection:

- what the node left uncommitted is rolled back (what closing the connection would have done), so the next
  node starts outside any transaction, with no lock or snapshot of the node before it, and its first
  statement opens a transaction as on a new connection (psycopg2's BEGIN, which dbt-postgres relies on);
- a connection that is closed, broken or cannot be rolled back is closed as dbt would close it, and the
  next node opens a new one (dbt's own retries on connecting apply as before);
- a profile with ``role`` (run as ``set role`` on each new connection, inside a transaction a rollback
  would undo) and dbt's record/replay handles keep dbt's behaviour.

The connections are closed when the run ends (dbt's ``cleanup_all``). Every dbt run of the project (the make
targets, ``runtime/dbt_session.py``, Airflow's tasks) goes through here; ``TELEMED_DBT_KEEP_CONNECTIONS=0``
gives dbt's own behaviour, and a plain ``dbt`` command line has it too.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV_SWITCH = "TELEMED_DBT_KEEP_CONNECTIONS"
_INSTALLED = "_telemed_keeps_connections"


def wanted() -> bool:
    """Whether this process's environment keeps connections (TELEMED_DBT_KEEP_CONNECTIONS, on unless 0)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def keep_connections() -> bool:
    """Install the connection-keeping ``release`` in this process (once; later calls do nothing), which keeps
    connections while the environment does not switch it off (read at each release). False when switched off,
    or when the installed dbt-postgres has a ``release`` of its own that this would replace."""
    from dbt.adapters.base.connections import BaseConnectionManager
    from dbt.adapters.postgres.connections import PostgresConnectionManager

    current = PostgresConnectionManager.release
    if getattr(current, _INSTALLED, False):
        return wanted()
    if current is not BaseConnectionManager.release:
        log.warning("dbt-postgres releases its connections its own way: kept as it is, one connection per node")
        return False
    close_release = BaseConnectionManager.release

    def release(self) -> None:
        """Keep this thread's connection for its next node when it is healthy (runtime/dbt_connections.py)."""
        connection = self.get_if_exists()
        if connection is None or not wanted() or not _ready_for_next_node(connection):
            close_release(self)

    setattr(release, _INSTALLED, True)
    PostgresConnectionManager.release = release
    return wanted()


def _ready_for_next_node(connection) -> bool:
    """Whether ``connection`` (a dbt Connection) is open, healthy and outside any transaction, rolling back
    what its node left uncommitted."""
    import psycopg2.extensions as ext

    handle = connection.handle
    if connection.state != "open" or not isinstance(handle, ext.connection) or handle.closed:
        return False
    if getattr(connection.credentials, "role", None):
        return False
    try:
        # Two views of the transaction: the server's (libpq's transaction status) and psycopg2's own, which
        # decides whether psycopg2 sends BEGIN before the next statement. dbt ends its transactions with a
        # COMMIT statement, which psycopg2 does not see: the server is idle, psycopg2 still "in a transaction",
        # and on a kept connection the next node's statements would each commit on their own (a seed's table
        # visible before its grants). A rollback sets both back to idle; when only psycopg2 counts a
        # transaction, one is begun first, so that the rollback ends a real one (a ROLLBACK outside any draws
        # a warning in the server's log, one per node).
        in_transaction = handle.info.transaction_status != ext.TRANSACTION_STATUS_IDLE
        if not in_transaction and handle.status != ext.STATUS_READY:
            with handle.cursor() as cursor:
                cursor.execute("begin")
            in_transaction = True
        if connection.transaction_open or in_transaction:
            handle.rollback()
            connection.transaction_open = False
        return handle.info.transaction_status == ext.TRANSACTION_STATUS_IDLE and handle.status == ext.STATUS_READY
    except Exception:  # any failure here means: close it, as dbt would have
        log.debug("dbt connection %s not kept: rollback failed", connection.name, exc_info=True)
        return False
