"""``python -m runtime.dbt_cli ARGS``: the dbt command line (what ``dbt ARGS`` runs), each thread's connection
kept from node to node (runtime/dbt_connections.py). The make targets and Airflow's tasks run dbt this way."""

from __future__ import annotations

import sys

from runtime.dbt_connections import keep_connections


def command(*args: str) -> list[str]:
    """The command line that runs ``dbt args`` this way, with this process's Python, started in the project
    folder (every caller's working directory)."""
    return [sys.executable, "-m", "runtime.dbt_cli", *args]


def main() -> int:
    keep_connections()
    from dbt.cli.main import cli

    return cli(prog_name="dbt")


if __name__ == "__main__":
    sys.exit(main())
