"""telemedicine_ingestion_dag, hourly: what `make load` and `make build SELECTOR=hourly` then
`make freshness` / `make monitor` do, as Airflow tasks.

reference data -> a drain of the event consumer (skipped while the ingest service consumes) -> feedback
files -> the video platform's call sessions (when an API is configured or embedded) -> the dbt `hourly`
selector rendered by Cosmos from the manifest, in its watcher mode (one `dbt build` of every model with
the tests on it alone, and per model a task reporting its result and one its tests'; then the tests that
read several models) -> source freshness -> the monitors, which judge that build's own timings and run
the hourly selector's tests on the rows it touched. No overlapping runs, no catchup; every task retries
with backoff and alerts the monitors' channels once when its last try failed (orchestration/dagkit.py,
which also says how the watcher's retries differ).
"""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from cosmos import DbtTaskGroup
from cosmos.operators.local import DbtSourceLocalOperator, DbtTestLocalOperator

from orchestration import dagkit

with DAG(
    dag_id="telemedicine_ingestion_dag",
    description="load reference data, events, feedback and call sessions; dbt hourly selector; freshness; monitors",
    schedule="@hourly",
    start_date=dagkit.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=dagkit.default_args(),
    tags=["telemed-elt", "ingestion"],
    doc_md=__doc__,
) as dag:
    load_reference = BashOperator(
        task_id="load_reference",
        bash_command=dagkit.project_command("loaders", "reference"),
    )
    # Exit code 99 (the ingest service is consuming) leaves the task skipped, not failed.
    drain_events = BashOperator(
        task_id="drain_events",
        bash_command=dagkit.project_command("orchestration.steps", "drain-events"),
        skip_on_exit_code=99,
    )
    load_feedback = BashOperator(
        task_id="load_feedback",
        bash_command=dagkit.project_command("loaders", "feedback"),
        trigger_rule="none_failed",
    )
    load_call_sessions = BashOperator(
        task_id="load_call_sessions",
        bash_command=dagkit.project_command("orchestration.steps", "load-call-sessions"),
    )
    dbt_hourly = DbtTaskGroup(
        group_id="dbt_hourly",
        project_config=dagkit.project_config(),
        profile_config=dagkit.profile_config(),
        execution_config=dagkit.hourly_execution_config(),
        render_config=dagkit.hourly_render_config(),
        operator_args=dagkit.hourly_operator_args(),
    )
    # The build runs and reports the tests on each node alone; those reading several run below.
    dagkit.producer_runs_single_node_tests(dbt_hourly)
    # The tests that read two or more models, once all of them are built: one dbt invocation.
    cross_model_tests = DbtTestLocalOperator(
        task_id="cross_model_tests",
        select=" ".join(dagkit.cross_model_tests(dbt_hourly.dbt_graph)),
        **dagkit.dbt_operator_args(dagkit.HOURLY_ENV, dagkit.AFTER_HOURLY_BUILD_ENV),
    )
    source_freshness = DbtSourceLocalOperator(
        task_id="source_freshness", **dagkit.dbt_operator_args(dagkit.AFTER_HOURLY_BUILD_ENV)
    )
    # python -m monitors exits 1 when a check is at error level: it has alerted its channels already, and
    # a retry would only repeat the same checks, so this task does not retry.
    monitors = BashOperator(
        task_id="monitors",
        bash_command=dagkit.project_command("monitors", "--scope", "hourly", "--dbt-target", str(dagkit.HOURLY_TARGET)),
        retries=0,
    )

    loads = load_reference >> drain_events >> load_feedback >> load_call_sessions
    loads >> dbt_hourly >> cross_model_tests >> source_freshness >> monitors
