"""Shared by every test package: the fixtures for real services (testkit/fixtures.py) and the business
clock of the test worlds (testkit/clock.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.settings import PROJECT_ROOT
from testkit.clock import TEST_AS_OF

pytest_plugins = ["testkit.fixtures"]


@pytest.fixture(scope="session", autouse=True)
def dbt_packages():
    """The dbt packages of packages.yml (the local dbt_expectations), for a plain `pytest` on a fresh
    clone: `make` installs them before any target that runs dbt."""
    if not (PROJECT_ROOT / "dbt_packages" / "dbt_expectations").is_dir():
        dbt = Path(sys.executable).parent / "dbt"
        subprocess.run([str(dbt), "deps", "--quiet"], cwd=PROJECT_ROOT, check=True)


@pytest.fixture(scope="session", autouse=True)
def business_clock():
    """Every process a test starts (dbt, monitors, loaders) counts TEST_AS_OF as now."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TELEMED_AS_OF", TEST_AS_OF)
        yield TEST_AS_OF
