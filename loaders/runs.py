"""One ``raw.load_runs`` row per loader run.

The row is opened as ``running`` when the run starts, its counters are advanced inside each batch's
own transaction (so they stay exact even when the process is killed), and it is closed with a status,
an error and details (offsets, files) at the end.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from loaders.retry import RetryGaveUp, RetryInterrupted
from runtime.processes import pid_alive

log = logging.getLogger(__name__)


@dataclass
class RunCounts:
    read: int = 0
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0

    def add(self, other: RunCounts) -> None:
        self.read += other.read
        self.loaded += other.loaded
        self.rejected += other.rejected
        self.duplicates += other.duplicates


@dataclass
class Outcome:
    """How a load run's work ended: ``succeeded``, ``interrupted`` or ``failed``, and why."""

    status: str = "succeeded"
    error: str | None = None


@contextmanager
def run_outcome(*failures: type[Exception]) -> Iterator[Outcome]:
    """The outcome of the work in the block: interrupted by a stop request or a signal, failed (and logged)
    when Postgres stayed away past the retries or on one of ``failures``, else succeeded. Any other
    exception is a bug and propagates."""
    outcome = Outcome()
    try:
        yield outcome
    except RetryInterrupted as exc:
        outcome.status, outcome.error = "interrupted", str(exc)
    except KeyboardInterrupt:
        outcome.status, outcome.error = "interrupted", "interrupted by a signal"
    except (RetryGaveUp, *failures) as exc:
        outcome.status, outcome.error = "failed", str(exc)
        log.error("%s", outcome.error)


@dataclass
class LoadRun:
    loader: str
    run_id: int | None = None
    counts: RunCounts = field(default_factory=RunCounts)

    def open(self, conn, details: dict | None = None) -> int:
        base = {"pid": os.getpid(), "host": socket.gethostname()}
        with conn, conn.cursor() as cur:
            _close_abandoned(cur, self.loader, base["host"])
            cur.execute(
                "insert into raw.load_runs (loader, details) values (%s, %s) returning run_id",
                (self.loader, json.dumps({**base, **(details or {})})),
            )
            self.run_id = cur.fetchone()[0]
        log.info("%s run %s started", self.loader, self.run_id)
        return self.run_id

    def advance(self, cur, batch: RunCounts) -> None:
        """Add a batch's counts; call inside the batch's transaction."""
        cur.execute(
            "update raw.load_runs set rows_read = rows_read + %s, rows_loaded = rows_loaded + %s,"
            " rows_rejected = rows_rejected + %s, duplicates_skipped = duplicates_skipped + %s"
            " where run_id = %s",
            (batch.read, batch.loaded, batch.rejected, batch.duplicates, self.run_id),
        )

    def close(self, conn, status: str, error: str | None = None, details: dict | None = None) -> None:
        with conn, conn.cursor() as cur:
            cur.execute(
                "update raw.load_runs set finished_at = now(), status = %s, error = %s,"
                " details = details || %s::jsonb where run_id = %s",
                (status, error, json.dumps(details or {}), self.run_id),
            )
        log.info("%s run %s %s", self.loader, self.run_id, status)

    def finish(self, session, status: str, error: str | None = None, details: dict | None = None) -> None:
        """Close the run through ``session`` (a PgSession, which retries): the end of a run whose row was
        opened. A database that stays away is logged, not raised: the run's own outcome is what the caller
        reports, and the next run of this loader closes the row as abandoned."""
        if self.run_id is None:
            return
        try:
            session.run("closing the load run", lambda conn: self.close(conn, status, error, details))
        except RetryGaveUp as exc:
            log.error("could not record the end of run %s: %s", self.run_id, exc)


def _close_abandoned(cur, loader: str, host: str) -> None:
    """Mark ``running`` rows of this loader whose process on this host is gone (killed) as interrupted.

    Their counters stay: they are exact, advanced with each committed batch.
    """
    cur.execute(
        "select run_id, (details->>'pid')::int from raw.load_runs"
        " where loader = %s and status = 'running' and details->>'host' = %s",
        (loader, host),
    )
    gone = [run_id for run_id, pid in cur.fetchall() if pid is None or not pid_alive(pid)]
    if gone:
        cur.execute(
            "update raw.load_runs set status = 'interrupted', error = 'the process ended without closing its run'"
            " where run_id = any(%s)",
            (gone,),
        )
        log.warning("%s: runs %s ended without closing (killed?); marked interrupted", loader, gone)
