"""``python -m runtime.dbt_cli ARGS``: the dbt command line (what ``dbt ARGS`` runs), each thread's connection
kept from node to node (runtime/dbt_connections.py), with fewer garbage collections (runtime/processes.py). The
make targets, Airflow's tasks and the benchmarks run dbt this way."""

from __future__ import annotations

import sys

from runtime.dbt_connections import keep_connections
from runtime.processes import fewer_collections


def command(*args: str) -> list[str]:
    """The command line that runs ``dbt args`` this way, with this process's Python, started in the project
    folder (every caller's working directory)."""
    return [sys.executable, "-m", "runtime.dbt_cli", *args]


def main() -> int:
    keep_connections()
    # dbt allocates about a million containers in an hourly run (the manifest, each node's Jinja context and
    # compiled templates), many of which live to the end. At Python's default pace (runtime/processes.py) the
    # collector ran 1,423 young, 129 middle and 8 full collections in it, each full one walking dbt's whole
    # heap: 1.2 s of the run's 9.7 under the GIL, which dbt's threads share; at the slower pace about 0.5 s.
    # Measured on copies of one 1M warehouse (docs/benchmarks.md, "Hourly runs"): the hourly run 0.7-1.1 s
    # shorter, dbt's start-up 0.3-0.4 s, a full build 1.3 s (one pair: 45.5 s against 46.8).
    with fewer_collections():
        from dbt.cli.main import cli

        return cli(prog_name="dbt")


if __name__ == "__main__":
    sys.exit(main())
