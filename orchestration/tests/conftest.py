"""Fixtures for the Airflow tests: Airflow's own environment (made by `make test-airflow` / `make pytest`),
a manifest of the dbt project parsed for the test, an Airflow home and metadata database of the module's
own on the test Postgres, and the loopback Slack and SMTP receivers of the monitors' tests."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from loaders.tests.loader_support import loader_env
from monitors.tests.conftest import smtp, webhook  # noqa: F401 - the loopback alert receivers, as fixtures
from orchestration import supervisor
from runtime import db
from runtime.settings import PROJECT_ROOT, Settings
from testkit.dbt import dbt_ok_as_child
from testkit.fixtures import free_port

DAGS = PROJECT_ROOT / "orchestration" / "dags"


def airflow_python() -> Path:
    python = supervisor.airflow_venv() / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: `make test-airflow` (or `make airflow-venv`) creates Airflow's environment")
    return python


def run_dbt(env: dict[str, str], *args: str) -> str:
    """dbt with the environment `python -m loaders env` gives a child of ``env`` (in this process:
    testkit/dbt.py)."""
    return dbt_ok_as_child(env, *args, tail=5000)


@pytest.fixture(scope="session")
def dbt_target(tmp_path_factory) -> Path:
    """`dbt parse` into a target folder of the session's own: the manifest the DAGs are rendered from
    (TELEMED_DBT_MANIFEST), as `make airflow` makes target/airflow/manifest.json."""
    target = tmp_path_factory.mktemp("airflow-dbt") / "target"
    run_dbt(loader_env(Settings.from_env()), "parse", "--quiet", "--target-path", str(target))
    return target


@dataclass
class AirflowHarness:
    """An Airflow home and metadata database; `env` is the environment Airflow runs with."""

    site: supervisor.AirflowSite
    settings: Settings
    manifest: Path

    def env(self, world: Settings, **extra: str) -> dict[str, str]:
        base = loader_env(world, TELEMED_DBT_MANIFEST=str(self.manifest), **extra)
        return supervisor.airflow_env(self.settings, self.site, base=base)

    def airflow(self, env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(supervisor.airflow_bin()), *args],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextmanager
    def api_server(self, env: dict[str, str]) -> Iterator[str]:
        """Airflow's api-server (with the UI) on this site's loopback port, for as long as the block runs."""
        log = open(self.site.home / "api-server.log", "wb")  # noqa: SIM115 - closed below, after the server
        proc = subprocess.Popen(
            [str(supervisor.airflow_bin()), "api-server", "--host", "127.0.0.1", "--port", str(self.site.port)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while not supervisor.api_healthy(self.site):
                assert proc.poll() is None, (self.site.home / "api-server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the api-server did not answer within 180 s"
                time.sleep(1)
            yield self.site.url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()

    def task_states(self, dag_id: str, logical_date: str) -> dict[str, tuple[str, int]]:
        """task id -> (state, try number) of the DAG's run at that logical date, from the metadata database."""
        conn = db.connect(self.settings, database=self.site.database)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "select ti.task_id, ti.state, ti.try_number from task_instance as ti"
                    " join dag_run as dr on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id"
                    " where ti.dag_id = %s and dr.logical_date = %s",
                    (dag_id, logical_date),
                )
                return {task: (state, tries) for task, state, tries in cur.fetchall()}
        finally:
            conn.close()


@pytest.fixture(scope="module")
def airflow(base_settings: Settings, dbt_target: Path, tmp_path_factory) -> Iterator[AirflowHarness]:
    airflow_python()
    database = f"airflow_test_{uuid.uuid4().hex[:10]}"
    site = supervisor.AirflowSite(home=tmp_path_factory.mktemp("airflow-home"), database=database, port=free_port())
    metadata = dataclasses.replace(base_settings, pg_database="postgres")
    harness = AirflowHarness(site=site, settings=metadata, manifest=dbt_target / "manifest.json")
    supervisor.prepare(metadata, site, supervisor.airflow_env(metadata, site))
    yield harness
    db.drop_database(base_settings, database)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
