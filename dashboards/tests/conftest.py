"""Fixtures for the dashboard tests: a database with the real marts (built by the pipeline, see marts.py)
and a monitors history, read as the reporting role; and Debian's Chromium."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from dashboards.tests import marts
from runtime import db
from runtime.settings import PROJECT_ROOT, REPORTING_ROLE, Settings

ARTIFACTS = PROJECT_ROOT / ".local" / "artifacts" / "dashboards"
CHROMIUM = Path(os.environ.get("TELEMED_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="session")
def marts_settings(base_settings: Settings):
    """A bootstrapped database of this session's own, with the marts (and a monitors history) in it."""
    name = f"telemed_dash_{uuid.uuid4().hex[:10]}"
    isolated = dataclasses.replace(base_settings, pg_database=name)
    db.bootstrap(isolated)
    marts.build(isolated)
    yield isolated
    db.drop_database(base_settings, name)


@pytest.fixture
def reporting_conn(marts_settings: Settings):
    conn = db.connect(marts_settings, role=REPORTING_ROLE)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make test` installs it when it runs as root; otherwise `sudo apt-get install chromium`)"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
