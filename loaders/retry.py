"""Bounded exponential backoff for infrastructure errors (a database or broker that went away).

Bad data is never retried: it is rejected with a reason. What is retried is the infrastructure, with a
capped delay so a long outage costs little, and a deadline so a dead server ends in a clear error
instead of a loader that hangs forever. A stop request (SIGINT or SIGTERM, see `stop_on_signals`) ends
any wait within a fraction of a second.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator

import psycopg2

log = logging.getLogger(__name__)

# Errors that a reconnect can cure: the server went away, restarts, or refuses connections for a while.
TRANSIENT_DB_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

# How often a wait looks for a stop request.
_STOP_POLL_S = 0.25


class RetryGaveUp(RuntimeError):
    """The loader stopped retrying an infrastructure error."""


class RetryDeadlineExceeded(RetryGaveUp):
    """An infrastructure error persisted past the loader's retry deadline."""


class RetryInterrupted(RetryGaveUp):
    """A stop was requested (SIGINT, SIGTERM) while the loader waited out an infrastructure error."""


class Backoff:
    """``Backoff(deadline_s).wait(what, exc)`` sleeps 0.5 s, 1 s, 2 s ... capped, until the deadline.

    ``reset()`` after a success so the next outage starts again from the short delay. ``target`` names
    what is unreachable ("Postgres at host:port"), so the deadline's message says what to check.
    ``request_stop()`` (thread-safe, signal-safe) makes every current and later wait raise RetryInterrupted.
    """

    def __init__(self, deadline_s: float = 300.0, first_s: float = 0.5, cap_s: float = 10.0):
        self.deadline_s = deadline_s
        self.first_s = first_s
        self.cap_s = cap_s
        self.stopping = threading.Event()
        self.reset()

    def reset(self) -> None:
        self.attempt = 0
        self.failing_since: float | None = None

    def request_stop(self) -> None:
        self.stopping.set()

    def fork(self) -> Backoff:
        """A backoff of its own (attempts, failing since) with the same bounds, stopped with this one: for
        another thread, whose waits and successes must not reset or advance this one's count."""
        forked = Backoff(self.deadline_s, self.first_s, self.cap_s)
        forked.stopping = self.stopping
        return forked

    def wait(self, what: str, exc: BaseException, target: str | None = None) -> None:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        failing_for = now - self.failing_since
        if self.stopping.is_set():
            raise RetryInterrupted(f"interrupted by a signal while {what} kept failing: {_one_line(exc)}") from exc
        if failing_for >= self.deadline_s:
            raise RetryDeadlineExceeded(deadline_message(what, exc, target, failing_for, self.deadline_s)) from exc
        delay = min(self.cap_s, self.first_s * 2**self.attempt) * random.uniform(0.8, 1.2)  # noqa: S311
        delay = min(delay, max(0.0, self.deadline_s - failing_for))
        self.attempt += 1
        log.warning("%s failed (%s); retry %d in %.1fs", what, _one_line(exc), self.attempt, delay)
        until = now + delay
        while (left := until - time.monotonic()) > 0:
            if self.stopping.wait(min(_STOP_POLL_S, left)):
                raise RetryInterrupted(f"interrupted by a signal while {what} kept failing: {_one_line(exc)}") from exc


@contextlib.contextmanager
def stop_on_signals(backoff: Backoff, on_stop: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM stop ``backoff``'s waits, then call ``on_stop`` (by default raise
    KeyboardInterrupt in the main thread, as Ctrl-C does). The previous handlers come back afterwards."""

    def handler(signum, _frame) -> None:
        backoff.request_stop()
        if on_stop is None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        on_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def deadline_message(what: str, exc: BaseException, target: str | None, failing_for: float, deadline_s: float) -> str:
    """What a loader says when it gives up: what to check first (``target`` unreachable), then the detail."""
    tried = f"{what} kept failing for {failing_for:.0f}s (retry deadline {deadline_s:.0f}s): {_one_line(exc)}"
    if target is None:
        return tried
    return f"cannot reach {target}: is it running? (make status / make up); {tried}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
