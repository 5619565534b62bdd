"""The DAG folder as Airflow loads it (DagBag, in Airflow's own environment): no import error, the
expected tasks and order, one `dbt build` of dbt's `hourly` selector with a Cosmos watcher task per model,
no cycle."""

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
    base = loader_env(settings, TELEMED_DBT_MANIFEST=str(dbt_target / "manifest.json"))
    # As Airflow is started by hand: no dbt log settings of its own (the test targets export one).
    for name in ("DBT_LOG_LEVEL_FILE", "DBT_LOG_PATH"):
        base.pop(name, None)
    env = supervisor.airflow_env(settings, site, base=base)
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


PRODUCER = "dbt_hourly.dbt_producer_watcher"
PRODUCER_DONE = "dbt_hourly.dbt_producer_watcher_done"


def test_dbt_tasks_write_no_file_log_into_their_temporary_copy_of_the_project(dagbag):
    """Cosmos runs each dbt task in a temporary copy of the project, deleted when the task ends: the file
    log dbt writes there is for nobody, so every dbt task of both DAGs writes none (dagkit.file_log_env),
    and the hourly DAG's tasks still run in the hourly scope."""
    dbt_tasks = 0
    for dag_id in (INGESTION, NIGHTLY):
        for task, info in dagbag["dags"][dag_id]["tasks"].items():
            if info["operator"].startswith("Dbt"):
                dbt_tasks += 1
                assert info["env"].get("DBT_LOG_LEVEL_FILE") == "none", (dag_id, task, info["env"])
    assert dbt_tasks > 20
    tasks = dagbag["dags"][INGESTION]["tasks"]
    for task in (PRODUCER, "cross_model_tests"):
        assert tasks[task]["env"]["TELEMED_RUN_SCOPE"] == "hourly", task


def hourly_node_tasks(tasks: dict, suffixes: tuple[str, ...]) -> dict[str, str]:
    """The dbt_hourly group's tasks by the node they stand for: ``dbt_hourly.<node>.<kind>`` (a node with
    tests: a task group of the node's task and its tests' task) or ``dbt_hourly.<node>_<kind>``."""
    found = {}
    for task in tasks:
        group, _, name = task.partition(".")
        for suffix in suffixes:
            if group == "dbt_hourly" and name.endswith(suffix):
                found[name.removesuffix(suffix)] = task
    return found


def hourly_model_tasks(tasks: dict) -> dict[str, str]:
    """The sensors that report each model's and the snapshot's own result."""
    return hourly_node_tasks(tasks, (".run", "_run", ".snapshot", "_snapshot"))


def hourly_test_tasks(tasks: dict) -> dict[str, str]:
    """The sensors that report the result of the tests on each node alone."""
    return hourly_node_tasks(tasks, (".test",))


@pytest.fixture(scope="module")
def hourly_single_node_tests(dbt_target) -> dict[str, set[str]]:
    """The selector's tests that read one node, by the node they test."""
    tests: dict[str, set[str]] = {}
    for node in dbt_ls_hourly(dbt_target, "test", keys="name depends_on"):
        parents = {parent for parent in node["depends_on"]["nodes"] if not parent.startswith("macro.")}
        if len(parents) == 1:
            tests.setdefault(parents.pop().split(".")[-1], set()).add(node["name"])
    return tests


def test_one_cosmos_watcher_task_per_model_of_the_hourly_selector(dagbag, hourly_models, hourly_single_node_tests):
    """Cosmos's watcher mode: one `dbt build` of the whole selection (the producer), and per model and for
    the snapshot a sensor that reports its result from dbt's log, then one for the tests on it alone (one
    dbt start per run instead of one per node)."""
    tasks = dagbag["dags"][INGESTION]["tasks"]
    nodes = hourly_model_tasks(tasks)
    assert set(nodes) == hourly_models
    assert tasks[nodes.pop("snap_clinic_ops__providers")]["operator"] == "DbtSnapshotWatcherOperator"
    assert {tasks[task]["operator"] for task in nodes.values()} == {"DbtRunWatcherOperator"}
    tested = hourly_test_tasks(tasks)
    assert set(tested) == set(hourly_single_node_tests)
    assert {tasks[task]["operator"] for task in tested.values()} == {"DbtTestWatcherOperator"}
    assert tasks[PRODUCER]["operator"] == "DbtProducerWatcherOperator"
    assert tasks[PRODUCER_DONE]["trigger_rule"] == "none_failed"
    # Nothing else in the group: no separate run or test tasks.
    group = {task for task in tasks if task.startswith("dbt_hourly.")}
    assert group == {*hourly_model_tasks(tasks).values(), *tested.values(), PRODUCER, PRODUCER_DONE}
    # The sensors give up their worker slot between two looks and never defer (see dagkit).
    for task in group - {PRODUCER, PRODUCER_DONE}:
        assert (tasks[task]["mode"], tasks[task]["deferrable"]) == ("reschedule", False), task


def test_the_producer_builds_the_selector_but_its_cross_model_tests(
    dagbag, dbt_target, hourly_models, hourly_single_node_tests, hourly_cross_model_tests
):
    """The producer's one `dbt build` selects what dbt's `hourly` selector selects but the tests that read
    several nodes, as dbt itself lists it; its test sensors wait for exactly the tests on each node."""
    producer = dagbag["dags"][INGESTION]["tasks"][PRODUCER]
    assert producer["indirect_selection"] == "cautious"
    listed = run_dbt(
        loader_env(Settings.from_env()),
        "ls",
        "--quiet",
        "--select",
        producer["select"],
        "--exclude",
        producer["exclude"],
        "--indirect-selection",
        producer["indirect_selection"],
        "--resource-type",
        "model",
        "snapshot",
        "test",
        "--output",
        "json",
        "--output-keys",
        "name resource_type",
        "--target-path",
        str(dbt_target),
    )
    built = [json.loads(line) for line in listed.splitlines() if line.startswith("{")]
    assert {node["name"] for node in built if node["resource_type"] != "test"} == hourly_models
    tests = {node["name"] for node in built if node["resource_type"] == "test"}
    assert tests == set().union(*hourly_single_node_tests.values())
    assert not tests & hourly_cross_model_tests
    reported = {
        node_id.split(".")[-1]: {test_id.split(".")[2] for test_id in test_ids}
        for node_id, test_ids in producer["tests_per_model"].items()
    }
    assert reported == hourly_single_node_tests


def test_tests_on_several_models_run_once_all_are_built(dagbag, hourly_models, hourly_cross_model_tests):
    """The build runs the tests on each node alone (cautious selection); a test that reads two models
    (assert_every_appointment_reaches_fact_appointment reads the appointments and the fact) runs in
    cross_model_tests, after every model's sensor: run with the first alone, it would fail on a model not
    yet built. Together they are the selector's tests, as dbt lists them."""
    tasks = dagbag["dags"][INGESTION]["tasks"]
    for model, task in hourly_test_tasks(tasks).items():
        assert tasks[task]["indirect_selection"] == "cautious", model
    cross = tasks["cross_model_tests"]
    assert set(cross["select"].split()) == hourly_cross_model_tests
    assert "assert_every_appointment_reaches_fact_appointment" in hourly_cross_model_tests
    assert hourly_cross_model_tests <= set(tasks[PRODUCER]["exclude"].split())
    upstream = edges(dagbag["dags"][INGESTION])
    dbt_tasks = {task for task in tasks if task.startswith("dbt_hourly.")}
    assert upstream["cross_model_tests"] and upstream["cross_model_tests"] <= dbt_tasks
    assert PRODUCER_DONE in upstream["cross_model_tests"]
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
