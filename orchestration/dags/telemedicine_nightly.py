"""telemedicine_nightly_dag, nightly: the full `dbt build` with every test (seeds, views, every model,
unit tests, source tests), then the snapshot of the providers, then `dbt docs generate` into target/
(what `make docs-serve` shows). No overlapping runs, no catchup; the same retries and failure alert as
the hourly DAG (orchestration/dagkit.py).
"""

from __future__ import annotations

from airflow.sdk import DAG
from cosmos.operators.local import DbtBuildLocalOperator, DbtDocsLocalOperator

from orchestration import dagkit

COMMON = dagkit.dbt_operator_args()

with DAG(
    dag_id="telemedicine_nightly_dag",
    description="full dbt build with every test, the snapshot, dbt docs generate",
    schedule="0 3 * * *",
    start_date=dagkit.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=dagkit.default_args(),
    tags=["telemed-elt", "nightly"],
    doc_md=__doc__,
) as dag:
    dbt_build = DbtBuildLocalOperator(task_id="dbt_build", exclude="resource_type:snapshot", **COMMON)
    # The snapshot reads the staging view the build (re)creates; its own tests run with it.
    dbt_snapshot = DbtBuildLocalOperator(task_id="dbt_snapshot", select="resource_type:snapshot", **COMMON)
    dbt_docs_generate = DbtDocsLocalOperator(
        task_id="dbt_docs_generate",
        dbt_cmd_flags=["--target-path", str(dagkit.PROJECT_ROOT / "target")],
        **COMMON,
    )

    dbt_build >> dbt_snapshot >> dbt_docs_generate
