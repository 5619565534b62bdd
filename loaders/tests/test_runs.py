"""How a load run's work ends (loaders/runs.py run_outcome): the status and error every loader records."""

from __future__ import annotations

import logging

import pytest

from loaders.retry import RetryDeadlineExceeded, RetryInterrupted
from loaders.runs import run_outcome


def test_work_that_returns_succeeded():
    with run_outcome() as outcome:
        pass
    assert (outcome.status, outcome.error) == ("succeeded", None)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (RetryInterrupted("stopped while waiting for Postgres"), ("interrupted", "stopped while waiting for Postgres")),
        (KeyboardInterrupt(), ("interrupted", "interrupted by a signal")),
        (RetryDeadlineExceeded("Postgres away for 300 s"), ("failed", "Postgres away for 300 s")),
        (LookupError("no table clinic.providers"), ("failed", "no table clinic.providers")),
    ],
)
def test_stops_and_named_failures_end_the_run_with_their_reason(raised, expected, caplog):
    with caplog.at_level(logging.ERROR, logger="loaders.runs"), run_outcome(LookupError) as outcome:
        raise raised
    assert (outcome.status, outcome.error) == expected
    assert (expected[1] in caplog.text) == (expected[0] == "failed"), "failures are logged, stops are not"


def test_any_other_exception_is_a_bug_and_propagates():
    with pytest.raises(ValueError, match="a bug"), run_outcome(LookupError):
        raise ValueError("a bug")
