"""Bounded exponential backoff for infrastructure errors (a database or broker that went away).

Bad data is never retried: it is rejected with a reason. What is retried is the infrastructure, with a
capped delay so a long outage costs little, and a deadline so a dead server ends in a clear error
instead of a loader that hangs forever.
"""

from __future__ import annotations

import logging
import random
import time

import psycopg2

log = logging.getLogger(__name__)

# Errors that a reconnect can cure: the server went away, restarts, or refuses connections for a while.
TRANSIENT_DB_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class RetryDeadlineExceeded(RuntimeError):
    """An infrastructure error persisted past the loader's retry deadline."""


class Backoff:
    """``Backoff(deadline_s).wait(what, exc)`` sleeps 0.5 s, 1 s, 2 s ... capped, until the deadline.

    ``reset()`` after a success so the next outage starts again from the short delay.
    """

    def __init__(self, deadline_s: float = 300.0, first_s: float = 0.5, cap_s: float = 10.0):
        self.deadline_s = deadline_s
        self.first_s = first_s
        self.cap_s = cap_s
        self.reset()

    def reset(self) -> None:
        self.attempt = 0
        self.failing_since: float | None = None

    def wait(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        failing_for = now - self.failing_since
        if failing_for >= self.deadline_s:
            raise RetryDeadlineExceeded(
                f"{what} kept failing for {failing_for:.0f}s (retry deadline {self.deadline_s:.0f}s): {_one_line(exc)}"
            ) from exc
        delay = min(self.cap_s, self.first_s * 2**self.attempt) * random.uniform(0.8, 1.2)  # noqa: S311
        delay = min(delay, max(0.0, self.deadline_s - failing_for))
        self.attempt += 1
        log.warning("%s failed (%s); retry %d in %.1fs", what, _one_line(exc), self.attempt, delay)
        time.sleep(delay)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
