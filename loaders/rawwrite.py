"""The loaders' one write path into raw: a reconnecting session, exactly-once inserts, a background writer.

- `PgSession` is the only reconnect loop: ``session.run(what, work)`` calls ``work(conn)`` until it
  succeeds, dropping the connection and waiting with the loader's `Backoff` after each infrastructure
  error, up to the retry deadline. Every loader (consume, feedback, reference) goes through it.
- `RawTable` inserts a batch of COPY lines into a raw table keyed on one column, exactly once: a COPY
  straight into the table (the fast path) or, after a key conflict, COPY into a temporary stage and
  ``insert ... on conflict do nothing``. The caller runs it inside the transaction that also writes its
  bookkeeping (Kafka offsets, feedback file records, the load run's counters), so rows and bookkeeping
  commit together or not at all.
- `BackgroundWriter` is the only threading design: the caller reads and decodes batch N+1 while one
  background thread writes batch N (psycopg2 releases the GIL while the server works); `prompt_handoffs`
  keeps the writer from waiting long for the GIL between its statements.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import errorcodes

from loaders.pgcopy import copy_rows, escape, existing_keys, stage_tables_ddl
from loaders.retry import TRANSIENT_DB_ERRORS, Backoff
from runtime import db
from runtime.settings import LOADER_ROLE, Settings

T = TypeVar("T")
B = TypeVar("B")
R = TypeVar("R")

# After a key already in raw shows up, this many batches look their keys up before the COPY.
LOOKUP_BATCHES = 20


class PgSession:
    """One Postgres connection as the loader role, made again after every transient error.

    ``setup`` is SQL run on each new connection (the session's temporary tables). A lock makes the
    session safe to share between the caller's thread and a background writer.
    """

    def __init__(self, settings: Settings, backoff: Backoff, setup: str | None = None):
        self.settings = settings
        self.backoff = backoff
        self.setup = setup
        self.target = f"Postgres at {settings.pg_host}:{settings.pg_port}"
        self._conn = None
        self._lock = threading.Lock()

    def _connection(self):
        if self._conn is None or self._conn.closed:
            conn = db.connect(self.settings, role=LOADER_ROLE)
            if self.setup:
                with conn, conn.cursor() as cur:
                    cur.execute(self.setup)
            self._conn = conn
        return self._conn

    def run(self, what: str, work: Callable[[object], T]) -> T:
        """``work(conn)`` until it succeeds; RetryDeadlineExceeded once the outage outlasts the deadline,
        RetryInterrupted when a stop is requested meanwhile (see loaders/retry.py). Each attempt is
        watched: one that outlasts ``settings.pg_watchdog_s`` has its connection severed (`_Watchdog`)."""
        with self._lock:
            while True:
                try:
                    with _Watchdog(self.settings.pg_watchdog_s, lambda: self._conn) as watchdog:
                        result = work(self._connection())
                    if watchdog.fired:  # the work ended as the watchdog struck: do not trust the connection
                        self._drop()
                except TRANSIENT_DB_ERRORS as exc:
                    if is_data_error(exc):  # class 54 is an OperationalError too, but retrying cannot cure it
                        raise
                    self._drop()
                    self.backoff.wait(what, exc, self.target)
                    continue
                self.backoff.reset()
                return result

    def transaction(self, what: str, work: Callable[[object], T]) -> T:
        """``work(cursor)`` inside one transaction, retried whole (see `run`)."""

        def in_transaction(conn) -> T:
            with conn, conn.cursor() as cur:
                return work(cur)

        return self.run(what, in_transaction)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


class _Watchdog:
    """Severs the connection of an attempt that outlasts ``seconds``.

    A server that stops while its host's kernel still answers TCP (a frozen process, SIGSTOP, a hung
    machine whose network stack lives on) raises nothing on the client: keepalives and
    ``tcp_user_timeout`` are acknowledged by the kernel, and ``statement_timeout`` is the frozen server's
    own to enforce. Shutting the socket down makes libpq's blocked read fail at once; psycopg2 raises an
    OperationalError, which `PgSession.run` retries like any outage, up to the loader's deadline.
    """

    def __init__(self, seconds: float, connection: Callable[[], object]):
        self.seconds, self.connection = seconds, connection
        self.fired = False
        self._done = threading.Lock()
        self._timer = threading.Timer(seconds, self._sever)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._done:  # a strike in progress finishes before the attempt is judged
            self._timer.cancel()

    def _sever(self) -> None:
        with self._done:
            conn = self.connection()
            if conn is None or conn.closed:
                return
            self.fired = True
            # A duplicate of libpq's descriptor: shutdown acts on the connection they share, close only
            # on the duplicate, so libpq still owns (and later closes) its own descriptor.
            with contextlib.suppress(OSError, psycopg2.Error), socket.socket(fileno=os.dup(conn.fileno())) as dup:
                dup.shutdown(socket.SHUT_RDWR)


class RawTable:
    """Exactly-once inserts of COPY text lines into ``table``, unique on ``key``.

    Fast path: COPY straight into the table inside a savepoint. A key already in raw (a duplicate
    delivery, or a batch read again after a crash) fails it on the key; the batch then takes the general
    path, COPY into the stage table and ``insert ... on conflict do nothing``, and the next
    LOOKUP_BATCHES batches first look their keys up and leave the known ones out, until a run of clean
    batches switches the lookup off again.
    """

    def __init__(self, table: str, columns: str, key: str, stage: str):
        self.table, self.columns, self.key, self.stage = table, columns, key, stage
        self.ddl = stage_tables_ddl(stage, table, columns, key)
        self._insert_staged = (
            f"insert into {table} ({columns}) select {columns} from {stage}"
            f" on conflict ({key}) do nothing returning {key}"
        )
        self._lookup_batches = 0

    def insert(self, cur, keys: list[str], lines: list[str]) -> tuple[Sequence[int], list[tuple[int, str]]]:
        """Insert ``lines`` (``keys[i]`` is the COPY-escaped key of ``lines[i]``, unique in the batch).

        Returns the indexes of the lines inserted, and (index, detail) of the lines Postgres refused on
        their data (see `is_data_error`): the batch is split in halves until each refused line stands
        alone, and every other line is inserted. The remaining lines' keys were in the table already.
        """
        candidates: Sequence[int] = range(len(lines))
        if self._lookup_batches > 0:
            self._lookup_batches -= 1
            existing = {escape(found) for found in existing_keys(cur, self.stage, self.table, self.key, keys)}
            if existing:
                candidates = [i for i, key in enumerate(keys) if key not in existing]
                self._lookup_batches = LOOKUP_BATCHES
        return self._insert(cur, keys, lines, candidates)

    def _insert(self, cur, keys, lines, rows: Sequence[int]) -> tuple[Sequence[int], list[tuple[int, str]]]:
        if not rows:
            return rows, []
        selected = lines if len(rows) == len(lines) else [lines[i] for i in rows]
        data = "".join(selected).encode()
        cur.execute("savepoint raw_insert")
        try:
            try:
                copy_rows(cur, self.table, self.columns, data)
                inserted = rows
            except psycopg2.errors.UniqueViolation:
                cur.execute("rollback to savepoint raw_insert")
                self._lookup_batches = LOOKUP_BATCHES
                inserted = self._merge(cur, keys, rows, data)
        except psycopg2.Error as exc:
            if not is_data_error(exc):
                raise
            cur.execute("rollback to savepoint raw_insert")
            cur.execute("release savepoint raw_insert")
            if len(rows) == 1:
                return [], [(rows[0], refusal(exc))]
            half = len(rows) // 2
            first, refused_first = self._insert(cur, keys, lines, rows[:half])
            second, refused_second = self._insert(cur, keys, lines, rows[half:])
            return [*first, *second], refused_first + refused_second
        cur.execute("release savepoint raw_insert")
        return inserted, []

    def _merge(self, cur, keys, rows: Sequence[int], data: bytes) -> list[int]:
        """The general path: COPY into the stage table, then insert what raw does not hold yet."""
        copy_rows(cur, self.stage, self.columns, data)
        cur.execute(self._insert_staged)
        inserted = {escape(row[0]) for row in cur.fetchall()}
        cur.execute(f"delete from {self.stage}")
        return [i for i in rows if keys[i] in inserted]


# SQLSTATE classes that blame the data, not the server: 22 data exception (a number out of range, bad
# encoding), 23 integrity constraint violation, 54 program limit exceeded (nesting too deep, index row
# too big). Connection, resource and operator classes (08, 53, 57, ...) are infrastructure: retried.
DATA_ERROR_CLASSES = ("22", "23", "54")


def is_data_error(exc: BaseException) -> bool:
    code = getattr(exc, "pgcode", None)
    return bool(code) and code[:2] in DATA_ERROR_CLASSES


def refusal(exc: BaseException) -> str:
    """Postgres's verdict on a row without the row's values (they may be patient data)."""
    code = exc.pgcode
    return f"Postgres refused it: SQLSTATE {code} ({(errorcodes.lookup(code) or 'unknown').lower()})"


def insert_values(
    cur, statement: str, rows: list[tuple], template: str | None = None, droppable: tuple[int, ...] = ()
) -> int:
    """``statement`` (``insert ... values %s``) for all ``rows`` at once; returns the rows inserted.

    One statement for all of them, so rowcount is the number actually inserted (``on conflict do
    nothing`` leaves out rows that are there already). Should Postgres refuse the data, the rows are
    inserted one by one, and a row it refuses again without its ``droppable`` columns (the raw payload)
    with the refusal added to its detail, column 1.
    """
    if not rows:
        return 0
    if not droppable:
        psycopg2.extras.execute_values(cur, statement, rows, template=template, page_size=len(rows))
        return cur.rowcount
    cur.execute("savepoint raw_values")
    try:
        psycopg2.extras.execute_values(cur, statement, rows, template=template, page_size=len(rows))
    except psycopg2.Error as exc:
        if not is_data_error(exc):
            raise
        cur.execute("rollback to savepoint raw_values")
    else:
        inserted = cur.rowcount
        cur.execute("release savepoint raw_values")
        return inserted
    inserted = 0
    for row in rows:
        try:
            psycopg2.extras.execute_values(cur, statement, [row], template=template)
        except psycopg2.Error as exc:
            if not is_data_error(exc):
                raise
            cur.execute("rollback to savepoint raw_values")
            stripped = [None if i in droppable else value for i, value in enumerate(row)]
            stripped[1] = f"{row[1]}; payload left out: {refusal(exc)}"
            psycopg2.extras.execute_values(cur, statement, [tuple(stripped)], template=template)
        inserted += cur.rowcount
        cur.execute("release savepoint raw_values")
        cur.execute("savepoint raw_values")
    cur.execute("release savepoint raw_values")
    return inserted


# How long a thread that computes may keep the GIL while another waits for it, during `prompt_handoffs`.
HANDOFF_SECONDS = 0.0005
_handoffs_lock = threading.Lock()
_handoffs_users = 0
_handoffs_saved = 0.0


@contextlib.contextmanager
def prompt_handoffs(seconds: float = HANDOFF_SECONDS):
    """Within: CPython's switch interval at most ``seconds`` (the default is 5 ms), for the whole process.

    A background writer sends a batch as a dozen statements and COPY chunks; psycopg2 releases the GIL
    while each one waits for the server, and its thread must take the GIL back before it sends the next.
    While the caller's thread decodes and validates, that takes up to one switch interval: with 5 ms,
    Postgres sat idle for a good part of each batch and the writer, not the work, set the pace. A
    shorter interval costs a few more thread switches. Nested and concurrent uses share one setting,
    restored when the last ends.
    """
    global _handoffs_users, _handoffs_saved
    with _handoffs_lock:
        if _handoffs_users == 0:
            _handoffs_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(seconds, _handoffs_saved))
        _handoffs_users += 1
    try:
        yield
    finally:
        with _handoffs_lock:
            _handoffs_users -= 1
            if _handoffs_users == 0:
                sys.setswitchinterval(_handoffs_saved)


_DONE = object()


class BackgroundWriter(Generic[B, R]):
    """``write(batch)`` for each submitted batch, in order, in one background thread.

    The caller submits a batch and goes on reading the next one; at most ``depth`` batches wait for the
    writer. `finished` hands back (batch, result) of the batches written, in order. An exception raised
    by ``write`` stops the writer and is raised again in the caller by the next `submit` or `finished`.
    """

    def __init__(self, write: Callable[[B], R], name: str, depth: int = 2):
        self._write = write
        self._inbox: queue.Queue = queue.Queue(maxsize=depth)
        self._outbox: queue.Queue = queue.Queue()
        self._in_flight = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _loop(self) -> None:
        while True:
            batch = self._inbox.get()
            if batch is _DONE:
                return
            try:
                result = self._write(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which stops the run
                self._outbox.put((batch, exc, True))
                return
            self._outbox.put((batch, result, False))

    def _check_alive(self) -> None:
        if not self._thread.is_alive() and self._outbox.empty():
            raise RuntimeError("the writer thread stopped unexpectedly")

    def submit(self, batch: B) -> list[tuple[B, R]]:
        """Queue ``batch`` (waiting while the queue is full); returns the batches finished meanwhile."""
        done: list[tuple[B, R]] = []
        while True:
            done += self.finished(block=False)
            self._check_alive()
            try:
                self._inbox.put(batch, timeout=0.5)
            except queue.Full:
                continue
            self._in_flight += 1
            return done

    def finished(self, block: bool) -> list[tuple[B, R]]:
        """The batches written so far; with ``block`` wait until every submitted batch is written."""
        done: list[tuple[B, R]] = []
        while self._in_flight:
            try:
                batch, outcome, failed = self._outbox.get(timeout=0.5) if block else self._outbox.get_nowait()
            except queue.Empty:
                if not block:
                    break
                self._check_alive()
                continue
            self._in_flight -= 1
            if failed:
                raise outcome
            done.append((batch, outcome))
        return done

    def close(self, timeout: float = 30) -> None:
        """Let the writer finish what it holds, then end its thread (waits at most ``timeout``)."""
        if self._thread.is_alive():
            while True:
                try:
                    self._inbox.put(_DONE, timeout=0.5)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join(timeout=timeout)
