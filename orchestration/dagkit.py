"""What both DAGs share: where the project and its Python are, the dbt project as Cosmos sees it, and the
task defaults (retries with backoff, the failure alert).

This module runs inside Airflow's own environment (orchestration/requirements-airflow.txt), which holds
Airflow, Cosmos and nothing of the project. So every project step runs as a command of the project's
environment: the loaders and the monitors through its Python, dbt through ``orchestration/bin/dbt``
(``python -m loaders env --role telemed_dbt -- dbt``, the way every make target calls dbt). Connections are
never written here: each command reads them from the environment Airflow was started with, exactly as the loaders do
(embedded services, or PGHOST / DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS), so no DAG holds a secret.
"""

from __future__ import annotations

import logging
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    DbtResourceType,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    TestBehavior,
    TestIndirectSelection,
)

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project's own interpreter (the main .venv); the Docker image sets TELEMED_PYTHON to its copy.
PROJECT_PYTHON = os.environ.get("TELEMED_PYTHON") or str(PROJECT_ROOT / ".venv" / "bin" / "python")
DBT = str(PROJECT_ROOT / "orchestration" / "bin" / "dbt")
# Written by `dbt parse --target-path target/airflow` (make airflow, make test-airflow): only that step
# writes there, so the DAG processor never reads a manifest that another dbt run is rewriting.
MANIFEST = Path(os.environ.get("TELEMED_DBT_MANIFEST") or PROJECT_ROOT / "target" / "airflow" / "manifest.json")
PROFILES_YML = PROJECT_ROOT / "profiles.yml"

# A fixed start in the past: with catchup off, the scheduler only ever runs the latest interval.
START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
# Retries back off exponentially from RETRY_DELAY up to MAX_RETRY_DELAY. The tests shorten the delay
# (TELEMED_AIRFLOW_RETRY_DELAY_SECONDS): the scheduler, not a sleep, waits it out.
RETRIES = int(os.environ.get("TELEMED_AIRFLOW_RETRIES") or 2)
RETRY_DELAY = timedelta(seconds=float(os.environ.get("TELEMED_AIRFLOW_RETRY_DELAY_SECONDS") or 120))
MAX_RETRY_DELAY = timedelta(minutes=30)
ALERT_TIMEOUT_S = 120


def project_command(*args: str) -> str:
    """A shell command line running ``python -m <args>`` in the project's environment and folder."""
    quoted = " ".join(_shell_quote(arg) for arg in (PROJECT_PYTHON, "-m", *args))
    return f"cd {_shell_quote(str(PROJECT_ROOT))} && exec {quoted}"


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def alert_on_failure(context) -> None:
    """on_failure_callback: Airflow calls it once per task instance, after its last retry failed. The
    alert goes through the monitors' channels (Slack webhook, SMTP) as configured in the environment."""
    ti = context["ti"]
    exception = context.get("exception")
    command = [
        PROJECT_PYTHON,
        "-m",
        "orchestration.steps",
        "alert",
        "--dag",
        ti.dag_id,
        "--task",
        ti.task_id,
        "--run",
        str(context.get("run_id") or ti.run_id),
        "--tries",
        str(ti.try_number),
        "--error",
        f"{type(exception).__name__}: {exception}" if exception else "",
        "--log-url",
        str(getattr(ti, "log_url", "") or ""),
    ]
    try:
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=ALERT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("failure alert for %s.%s could not run: %s", ti.dag_id, ti.task_id, exc)
        return
    if done.returncode != 0:
        log.error("failure alert for %s.%s failed:\n%s%s", ti.dag_id, ti.task_id, done.stdout, done.stderr)
    else:
        log.info("failure alert for %s.%s: %s", ti.dag_id, ti.task_id, done.stdout.strip())


def default_args() -> dict:
    return {
        "owner": "telemed-elt",
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": MAX_RETRY_DELAY,
        "on_failure_callback": alert_on_failure,
    }


def project_config() -> ProjectConfig:
    # dbt packages are installed by make (dbt deps), never by a task.
    return ProjectConfig(dbt_project_path=PROJECT_ROOT, manifest_path=MANIFEST, install_dbt_deps=False)


def profile_config() -> ProfileConfig:
    """The project's own profiles.yml: every value comes through env_var() from the environment the
    wrapper sets (python -m loaders env), so the same file serves make, the loaders' settings and Airflow."""
    return ProfileConfig(
        profile_name="telemed",
        target_name=os.environ.get("DBT_TARGET") or "dev",
        profiles_yml_filepath=PROFILES_YML,
    )


def execution_config() -> ExecutionConfig:
    # dbt runs from the project's environment as a subprocess: Airflow's environment holds no dbt.
    return ExecutionConfig(
        execution_mode=ExecutionMode.LOCAL,
        invocation_mode=InvocationMode.SUBPROCESS,
        dbt_executable_path=DBT,
    )


def operator_args() -> dict:
    # append_env: dbt (through the wrapper) sees the environment Airflow runs with, TELEMED_* included.
    return {"append_env": True, "install_deps": False}


# The hourly DAG's dbt tasks select model by model rather than naming the `hourly` selector: this tells dbt
# it is the hourly run all the same (macro hourly_run): its tests keep to the rows it touched.
HOURLY_ENV = {"TELEMED_RUN_SCOPE": "hourly"}


def hourly_operator_args() -> dict:
    """operator_args() for the hourly DAG's dbt task group."""
    return {**operator_args(), "env": dict(HOURLY_ENV)}


def dbt_operator_args() -> dict:
    """Arguments of a single Cosmos operator (freshness, the nightly build, docs) outside a task group."""
    return {
        "project_dir": str(PROJECT_ROOT),
        "profile_config": profile_config(),
        "dbt_executable_path": DBT,
        "invocation_mode": InvocationMode.SUBPROCESS,
        **operator_args(),
    }


def hourly_render_config() -> RenderConfig:
    """The `hourly` selector of selectors.yml, read from the manifest: one task per model and one for the
    snapshot, each a `dbt build` of that node (the model, then the tests on it alone: see
    hourly_execution_config). One dbt invocation per node instead of a run task and a test task: each dbt
    start costs seconds whatever the data, and the hourly run pays it per task. The selector is spelled out
    as Cosmos selections: Cosmos reads YAML selectors but not their `indirect_selection`, and would render
    tests on seeds and views that dbt leaves out. The tests check that these select exactly what
    `dbt ls --selector hourly` lists."""
    return RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        select=["resource_type:model", "resource_type:snapshot"],
        exclude=["config.materialized:view", "tag:static", "tag:monitor"],
        test_behavior=TestBehavior.BUILD,
        emit_datasets=False,
    )


def hourly_execution_config() -> ExecutionConfig:
    """Per node, only the tests on that node alone (cautious): a test that reads two models (a
    relationship, assert_every_appointment_reaches_fact_appointment) would otherwise run with the first of
    them, before the other was built. Those run in one task after the group (cross_model_tests)."""
    config = execution_config()
    config.test_indirect_selection = TestIndirectSelection.CAUTIOUS
    return config


def cross_model_tests(graph) -> list[str]:
    """The tests of the hourly selection that read more than one node, by name: every parent is a node
    the group builds or a seed (dbt's selector keeps tests against seeds and drops those against views
    and the static dimensions). ``graph`` is the DbtTaskGroup's Cosmos graph (manifest nodes)."""
    built = {
        node_id
        for node_id, node in graph.filtered_nodes.items()
        if node.resource_type in (DbtResourceType.MODEL, DbtResourceType.SNAPSHOT)
    }
    names = []
    for node in graph.nodes.values():
        parents = [parent for parent in node.depends_on if not parent.startswith("macro.")]
        if node.resource_type != DbtResourceType.TEST or len(parents) < 2 or not built.intersection(parents):
            continue
        if all(parent in built or parent.startswith("seed.") for parent in parents):
            names.append(node.unique_id.split(".")[2])
    return sorted(names)
