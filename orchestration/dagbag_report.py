"""Run by Airflow's own Python (not the project's): ``dagbag_report.py DAGS_FOLDER OUT.json`` loads the DAG
folder as Airflow's DagBag does and writes, as JSON, the import errors and each DAG's settings, tasks and
edges (to a file: Airflow logs to standard output). The tests read it, since the
project's environment has no Airflow to import the DAGs with."""

from __future__ import annotations

import json
import sys


def describe(dag) -> dict:
    tasks = {}
    for task in dag.tasks:
        tasks[task.task_id] = {
            "operator": type(task).__name__,
            "downstream": sorted(task.downstream_task_ids),
            "retries": task.retries,
            "trigger_rule": getattr(task.trigger_rule, "value", task.trigger_rule),
            "has_failure_callback": bool(task.on_failure_callback),
            # Cosmos operators: what dbt runs
            "select": getattr(task, "select", None),
            "exclude": getattr(task, "exclude", None),
            "indirect_selection": getattr(task, "indirect_selection", None),
            # Cosmos's watcher: the tests the producer reports per node, and how its sensors wait
            "tests_per_model": getattr(task, "tests_per_model", None),
            "mode": getattr(task, "mode", None),
            "deferrable": getattr(task, "deferrable", None),
            # what a Cosmos operator adds to dbt's environment
            "env": getattr(task, "env", None),
        }
    return {
        "schedule": str(dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tasks": tasks,
    }


def main() -> int:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    report = {
        "import_errors": {str(path): str(error) for path, error in bag.import_errors.items()},
        "dags": {dag_id: describe(dag) for dag_id, dag in bag.dags.items()},
    }
    with open(sys.argv[2], "w") as out:
        json.dump(report, out, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
