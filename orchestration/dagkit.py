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
    PRODUCER_WATCHER_TASK_ID,
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
# The hourly DAG's one `dbt build` (the watcher's producer) keeps its artifacts here, and its monitors task
# reads them: the performance checks judge the timings of that run's own build, never those of whatever
# other dbt call last wrote target/. TELEMED_HOURLY_DBT_TARGET moves it (the tests give each world its own).
HOURLY_TARGET = Path(os.environ.get("TELEMED_HOURLY_DBT_TARGET") or PROJECT_ROOT / "target" / "hourly")

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


def file_log_env() -> dict[str, str]:
    """dbt's file log in the DAGs' dbt tasks. Cosmos runs each task's dbt in a temporary copy of the project,
    so logs/dbt.log is written there and deleted with the copy when the task ends; the task's own log keeps
    dbt's output (each node's start and result, warnings, errors). At dbt's default file level, debug (every
    statement of every node: over a megabyte an hourly run), writing that file takes about 0.8 s of the
    hourly build's 7.5 (dbt's threads format it under one GIL; docs/benchmarks.md, "Hourly runs"). So the tasks
    write none, unless Airflow's environment says otherwise: with DBT_LOG_LEVEL_FILE, or with DBT_LOG_PATH
    naming a folder that outlives the task (then dbt's own default applies), it is passed on as it is."""
    if os.environ.get("DBT_LOG_LEVEL_FILE") or os.environ.get("DBT_LOG_PATH"):
        return {}
    return {"DBT_LOG_LEVEL_FILE": "none"}


def operator_args(*env: dict[str, str]) -> dict:
    """What every dbt task gets. append_env: dbt (through the wrapper) sees the environment Airflow runs
    with, TELEMED_* included; `env` adds to it the file log setting (file_log_env), then ``env``."""
    merged = file_log_env()
    for part in env:
        merged.update(part)
    return {"append_env": True, "install_deps": False, "env": merged}


# The hourly DAG's dbt build selects models rather than naming the `hourly` selector: this tells dbt it is
# the hourly run all the same (macro hourly_run): its tests keep to the rows it touched.
HOURLY_ENV = {"TELEMED_RUN_SCOPE": "hourly"}

# The dbt tasks after the hourly build (the cross-model tests, source freshness) start from the build's
# parse: dbt reads the partial-parse file named by DBT_PARTIAL_PARSE_FILE_PATH and writes its own to its
# target as usual. Cosmos runs each task in a fresh copy of the project, where dbt found no partial-parse
# file and parsed the whole project again: about 8 CPU-seconds and as many of wall time per task, every
# hour. dbt checks the file against the call's profile, variables, environment and files as always, and
# parses in full when it does not match (or is missing).
AFTER_HOURLY_BUILD_ENV = {"DBT_PARTIAL_PARSE_FILE_PATH": str(HOURLY_TARGET / "partial_parse.msgpack")}

# The watcher's sensors (one per model, one per model's tests) poke in reschedule mode: between two looks
# at the producer's results a sensor holds no worker slot and no process. Neither deferral (it needs an
# Airflow triggerer, which `make airflow` does not run, and `airflow dags test` runs a deferred sensor's
# trigger in line, so a sensor scheduled before the producer would wait for it forever) nor a sensor that
# keeps its slot (with AIRFLOW__CORE__PARALLELISM=4, four waiting sensors would leave the producer's
# retry no slot to run in) fits this machine. Under the scheduler each look starts the task again (a
# process that parses this DAG file); `airflow dags test` runs it in its own process.
SENSOR_POKE_INTERVAL_S = 10
# A sensor still waiting after an hour (the next run is due) fails and alerts instead of waiting a week.
SENSOR_TIMEOUT_S = 3600
# The producer's retry runs no dbt: it hands the first try's results back to the sensors and is skipped
# (Cosmos), so it need not wait the tasks' backoff. A sensor whose node failed retries by running it,
# once the producer is skipped; a retry that comes before reads the same failure again.
PRODUCER_RETRY_DELAY = timedelta(seconds=1)


def hourly_operator_args() -> dict:
    """operator_args() for the hourly DAG's dbt task group: dbt's environment and the sensors' settings."""
    return {
        **operator_args(HOURLY_ENV),
        "deferrable": False,
        "mode": "reschedule",
        "poke_interval": SENSOR_POKE_INTERVAL_S,
        "timeout": SENSOR_TIMEOUT_S,
    }


def dbt_operator_args(*env: dict[str, str]) -> dict:
    """Arguments of a single Cosmos operator (freshness, the nightly build, docs) outside a task group, with
    ``env`` (operator_args)."""
    return {
        "project_dir": str(PROJECT_ROOT),
        "profile_config": profile_config(),
        "dbt_executable_path": DBT,
        "invocation_mode": InvocationMode.SUBPROCESS,
        **operator_args(*env),
    }


def hourly_render_config() -> RenderConfig:
    """The `hourly` selector of selectors.yml, read from the manifest: a sensor per model and one for the
    snapshot, and one per node for the tests on it alone (TestBehavior.AFTER_EACH; in watcher mode these
    are sensors of the one `dbt build`: see hourly_execution_config). The selector is spelled out as
    Cosmos selections: Cosmos reads YAML selectors but not their `indirect_selection`, and would render
    tests on seeds and views that dbt leaves out. The tests check that these select exactly what
    `dbt ls --selector hourly` lists."""
    return RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        select=["resource_type:model", "resource_type:snapshot"],
        exclude=["config.materialized:view", "tag:static", "tag:monitor"],
        test_behavior=TestBehavior.AFTER_EACH,
        emit_datasets=False,
    )


def hourly_execution_config() -> ExecutionConfig:
    """Cosmos's watcher mode (experimental): one task, the producer, runs a single `dbt build` of the
    selection with dbt's threads, and each model's task is a sensor that reports that model's result as
    dbt's JSON log gives it (one dbt process per run instead of one per node). dbt runs from the project's
    environment as a subprocess: Airflow's environment holds no dbt.

    Only the tests on a node alone run with it (cautious): a test that reads two models (a relationship,
    assert_every_appointment_reaches_fact_appointment) runs in one task after the group
    (cross_model_tests), as before; producer_runs_single_node_tests keeps them out of the build.

    Retries differ from one task per node (Cosmos 1.15.1): the producer's retry never runs dbt again. It
    hands the sensors the first try's results (kept in an Airflow Variable while it runs) and ends skipped;
    Cosmos's dbt_producer_watcher_done keeps that skip from skipping the tasks after the group. A sensor
    whose node failed fails, and each of its retries runs that node alone (dbt run, snapshot or test
    --select it), as the per-node tasks did; so does every sensor when the group is cleared in the UI."""
    return ExecutionConfig(
        execution_mode=ExecutionMode.WATCHER,
        invocation_mode=InvocationMode.SUBPROCESS,
        dbt_executable_path=DBT,
        test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        setup_operator_args={
            "indirect_selection": TestIndirectSelection.CAUTIOUS.value,
            "retry_delay": PRODUCER_RETRY_DELAY,
            # The producer only: a sensor's retry (one node) must not replace the build's run_results.json.
            "dbt_cmd_flags": ["--target-path", str(HOURLY_TARGET)],
        },
    )


def _built_nodes(graph) -> set[str]:
    """The models and the snapshot the group builds. ``graph`` is the DbtTaskGroup's Cosmos graph."""
    return {
        node_id
        for node_id, node in graph.filtered_nodes.items()
        if node.resource_type in (DbtResourceType.MODEL, DbtResourceType.SNAPSHOT)
    }


def _test_parents(node) -> list[str]:
    return [parent for parent in node.depends_on if not parent.startswith("macro.")]


def cross_model_tests(graph) -> list[str]:
    """The tests of the hourly selection that read more than one node, by name: every parent is a node
    the group builds or a seed (dbt's selector keeps tests against seeds and drops those against views
    and the static dimensions). ``graph`` is the DbtTaskGroup's Cosmos graph (manifest nodes)."""
    built = _built_nodes(graph)
    names = []
    for node in graph.nodes.values():
        parents = _test_parents(node)
        if node.resource_type != DbtResourceType.TEST or len(parents) < 2 or not built.intersection(parents):
            continue
        if all(parent in built or parent.startswith("seed.") for parent in parents):
            names.append(node.unique_id.split(".")[2])
    return sorted(names)


def producer_runs_single_node_tests(group) -> None:
    """The watcher's `dbt build` runs each built node's tests on it alone, as the per-node builds did, and
    its test sensors wait for exactly those. Cosmos gives the producer every test that touches a built
    node, for the test sensor of each (``tests_per_model``), and builds with the selection's exclusions
    only: cautious selection would still run a test whose parents are all models (one against a static
    dimension, one between two hourly models, which cross_model_tests runs once all are built), and a
    test sensor that does not defer would wait until its timeout for a test dbt never ran. So the
    producer excludes, by name, every test that reads more than one node, and counts only the others."""
    producer = group.tasks_map[PRODUCER_WATCHER_TASK_ID]
    built = _built_nodes(group.dbt_graph)
    single: dict[str, list[str]] = {}
    several = set()
    for node in group.dbt_graph.nodes.values():
        parents = _test_parents(node)
        if node.resource_type != DbtResourceType.TEST or not built.intersection(parents):
            continue
        if len(set(parents)) == 1:
            single.setdefault(parents[0], []).append(node.unique_id)
        else:
            several.add(node.unique_id.split(".")[2])
    untested = sorted(set(producer.tests_per_model) - set(single))
    if untested:
        raise ValueError(
            f"{', '.join(untested)}: only tests that read several nodes, so its test sensor would wait for "
            "results the hourly build never reports; give it a test of its own or leave it to the nightly build"
        )
    producer.tests_per_model = {node_id: sorted(tests) for node_id, tests in single.items()}
    producer.exclude = " ".join([producer.exclude, *sorted(several)])
