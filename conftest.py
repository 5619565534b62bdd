"""Shared by every test package: the business clock of the test worlds (see loaders/tests/clock.py)."""

from __future__ import annotations

import pytest

from loaders.tests.clock import TEST_AS_OF


@pytest.fixture(scope="session", autouse=True)
def business_clock():
    """Every process a test starts (dbt, monitors, loaders) counts TEST_AS_OF as now."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TELEMED_AS_OF", TEST_AS_OF)
        yield TEST_AS_OF
