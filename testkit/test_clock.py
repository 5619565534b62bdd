"""The test clock: worlds are pinned (testkit/clock.py), and where a run fakes the date
(``make test-dates``) it fakes it for Python and the warehouse alike."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from testkit.clock import TEST_AS_OF

pytestmark = pytest.mark.dates


def test_every_process_a_test_starts_gets_the_world_as_of():
    assert os.environ["TELEMED_AS_OF"] == TEST_AS_OF == "2026-11-01T00:00:00Z"


def test_python_and_the_warehouse_agree_on_the_time(pg):
    """Under a faked date both clocks are faked by the same offset; otherwise both are real."""
    with pg.cursor() as cur:
        cur.execute("select now()")
        (warehouse,) = cur.fetchone()
    python = datetime.now(timezone.utc)
    assert abs((warehouse - python).total_seconds()) < 120, (warehouse, python)
