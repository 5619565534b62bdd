"""Shared by every test package: the fixtures for real services (testkit/fixtures.py) and the business
clock of the test worlds (testkit/clock.py)."""

from __future__ import annotations

import pytest

from testkit.clock import TEST_AS_OF

pytest_plugins = ["testkit.fixtures"]


@pytest.fixture(scope="session", autouse=True)
def business_clock():
    """Every process a test starts (dbt, monitors, loaders) counts TEST_AS_OF as now."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TELEMED_AS_OF", TEST_AS_OF)
        yield TEST_AS_OF
