"""The DAG folder as Airflow loads it (DagBag, in Airflow's own environment): no import error, the
expected tasks and order, one Cosmos build task per model of dbt's `hourly` selector, no cycle."""

from __future__ import annotations

import graphlib
import json
import subprocess

import pytest

from loaders.tests.loader_support import loader_env
from orchestration import supervisor
from orchestration.tests.conftest import DAGS, airflow_python, run_dbt
from runtime.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow

INGESTION = "telemedicine_ingestion_dag"
NIGHTLY = "telemedicine_nightly_dag"


@pytest.fixture(scope="module")
def dagbag(dbt_target, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dagbag") / "dagbag.json"
    settings = Settings.from_env()
    site = supervisor.AirflowSite(home=tmp_path_factory.mktemp("airflow-home"), database="unused", port=0)
    env = supervisor.airflow_env(
        settings, site, base=loader_env(settings, TELEMED_DBT_MANIFEST=str(dbt_target / "manifest.json"))
    )
    done = subprocess.run(
        [str(airflow_python()), str(PROJECT_ROOT / "orchestration" / "dagbag_report.py"), str(DAGS), str(out)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(out.read_text())


def dbt_ls_hourly(dbt_target, *resource_types: str, keys: str = "name") -> list[dict]:
    """What dbt itself selects with `--selector hourly`, as JSON lines."""
    listed = run_dbt(
        loader_env(Settings.from_env()),
        "ls",
        "--quiet",
        "--selector",
        "hourly",
        "--resource-type",
        *resource_types,
        "--output",
        "json",
        "--output-keys",
        keys,
        "--target-path",
        str(dbt_target),
    )
    return [json.loads(line) for line in listed.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def hourly_models(dbt_target) -> set[str]:
    """The models and the snapshot of the selector."""
    return {node["name"] for node in dbt_ls_hourly(dbt_target, "model", "snapshot")}


@pytest.fixture(scope="module")
def hourly_cross_model_tests(dbt_target) -> set[str]:
    """The selector's tests that read two or more nodes."""
    return {
        node["name"]
        for node in dbt_ls_hourly(dbt_target, "test", keys="name depends_on")
        if len([parent for parent in node["depends_on"]["nodes"] if not parent.startswith("macro.")]) > 1
    }


def edges(dag: dict) -> dict[str, set[str]]:
    """task -> its upstream tasks."""
    upstream: dict[str, set[str]] = {task: set() for task in dag["tasks"]}
    for task, info in dag["tasks"].items():
        for child in info["downstream"]:
            upstream[child].add(task)
    return upstream


def test_dags_import_without_errors(dagbag):
    assert dagbag["import_errors"] == {}
    assert set(dagbag["dags"]) == {INGESTION, NIGHTLY}


def test_ingestion_dag_settings_and_order(dagbag):
    dag = dagbag["dags"][INGESTION]
    assert dag["schedule"] == "@hourly"
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    tasks = dag["tasks"]
    assert tasks["load_reference"]["downstream"] == ["drain_events"]
    assert tasks["drain_events"]["downstream"] == ["load_feedback"]
    # The drain is skipped while the ingest service consumes; the feedback files load all the same.
    assert tasks["load_feedback"]["trigger_rule"] == "none_failed"
    dbt_tasks = {task for task in tasks if task.startswith("dbt_hourly.")}
    assert tasks["load_feedback"]["downstream"] == ["load_call_sessions"]
    assert set(tasks["load_call_sessions"]["downstream"]) <= dbt_tasks
    upstream = edges(dag)
    # Every dbt task comes after the loads and before freshness; freshness before the monitors.
    assert upstream["source_freshness"] == {"cross_model_tests"}
    assert tasks["source_freshness"]["downstream"] == ["monitors"]
    assert tasks["monitors"]["downstream"] == []
    for task, info in tasks.items():
        assert info["has_failure_callback"], f"{task} has no failure alert"
        assert info["retries"] == (0 if task == "monitors" else 2), task


def hourly_build_tasks(tasks: dict) -> dict[str, str]:
    """The dbt_hourly group's tasks by the node they build: ``dbt_hourly.<node>_<type>_build``."""
    built = {}
    for task in tasks:
        group, _, name = task.partition(".")
        for suffix in ("_model_build", "_snapshot_build"):
            if group == "dbt_hourly" and name.endswith(suffix):
                built[name.removesuffix(suffix)] = task
    return built


def test_one_cosmos_build_task_per_model_of_the_hourly_selector(dagbag, hourly_models):
    """A `dbt build` per model and one for the snapshot: the node, then the tests on it alone, in one dbt
    invocation (dbt's start-up is paid once per node, not twice)."""
    tasks = dagbag["dags"][INGESTION]["tasks"]
    built = hourly_build_tasks(tasks)
    assert set(built) == hourly_models
    assert {tasks[task]["operator"] for task in built.values()} == {"DbtBuildLocalOperator"}
    assert built["snap_clinic_ops__providers"].endswith("_snapshot_build")
    # Nothing else in the group: no separate run or test tasks.
    assert {task for task in tasks if task.startswith("dbt_hourly.")} == set(built.values())


def test_tests_on_several_models_run_once_all_are_built(dagbag, hourly_models, hourly_cross_model_tests):
    """A per-model build runs the tests on that model alone (cautious selection); a test that reads two
    models (assert_every_appointment_reaches_fact_appointment reads the appointments and the fact) runs in
    cross_model_tests, after every model's build: run with the first alone, it would fail on a model not
    yet built. Together they are the selector's tests, as dbt lists them."""
    tasks = dagbag["dags"][INGESTION]["tasks"]
    for model, task in hourly_build_tasks(tasks).items():
        assert tasks[task]["indirect_selection"] == "cautious", model
    cross = tasks["cross_model_tests"]
    assert set(cross["select"].split()) == hourly_cross_model_tests
    assert "assert_every_appointment_reaches_fact_appointment" in hourly_cross_model_tests
    upstream = edges(dagbag["dags"][INGESTION])
    dbt_tasks = {task for task in tasks if task.startswith("dbt_hourly.")}
    assert upstream["cross_model_tests"] and upstream["cross_model_tests"] <= dbt_tasks
    assert cross["downstream"] == ["source_freshness"]


@pytest.mark.parametrize("dag_id", [INGESTION, NIGHTLY])
def test_no_cycles(dagbag, dag_id):
    order = list(graphlib.TopologicalSorter(edges(dagbag["dags"][dag_id])).static_order())
    assert len(order) == len(dagbag["dags"][dag_id]["tasks"])


def test_nightly_dag_builds_everything_then_snapshot_then_docs(dagbag):
    dag = dagbag["dags"][NIGHTLY]
    assert dag["catchup"] is False and dag["max_active_runs"] == 1
    tasks = dag["tasks"]
    assert tasks["dbt_build"]["operator"] == "DbtBuildLocalOperator"
    assert tasks["dbt_build"]["downstream"] == ["dbt_snapshot"]
    assert tasks["dbt_snapshot"]["downstream"] == ["dbt_docs_generate"]
    assert tasks["dbt_docs_generate"]["operator"] == "DbtDocsLocalOperator"
    assert all(info["has_failure_callback"] for info in tasks.values())
