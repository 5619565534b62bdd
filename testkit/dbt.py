"""dbt for the tests, in the test's own process (runtime/dbt_session.py): dbt's start-up is paid once per
worker, not once per call. One helper for every test that builds or runs with dbt and needs it to succeed."""

from __future__ import annotations

from collections.abc import Mapping

from runtime.dbt_session import DbtSession
from runtime.envcmd import child_env
from runtime.settings import Settings


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What `python -m loaders env` gives a child started with ``env``: ``env`` and its connection."""
    return {**env, **child_env(Settings.from_env(dict(env)))}


def dbt_call(env: Mapping[str, str], *args: str, whole_environment: bool = False) -> tuple[int, str]:
    """Run ``dbt args`` with ``env`` (with ``whole_environment``, nothing else of this process's): the exit
    status the command line would give (0, 1 for failed nodes, 2 when dbt could not run) and what it would
    print (info level and above)."""
    session = DbtSession(env, keep_lines=None, whole_environment=whole_environment)
    status = session.run(list(args))
    return status, "\n".join(session.output)


def dbt_ok(env: Mapping[str, str], *args: str, whole_environment: bool = False, tail: int = 6000) -> str:
    """dbt_call, failing the test with the last ``tail`` characters of dbt's output unless dbt succeeds;
    returns that output."""
    status, output = dbt_call(env, *args, whole_environment=whole_environment)
    assert status == 0, f"dbt {' '.join(args)} failed (exit {status}):\n{output[-tail:]}"
    return output


def dbt_ok_as_child(env: Mapping[str, str], *args: str, tail: int = 6000) -> str:
    """dbt_ok as `python -m loaders env -- dbt args`, started with ``env``, would run: with ``env`` and its
    connection, and nothing else of this process's environment."""
    return dbt_ok(child_environment(env), *args, whole_environment=True, tail=tail)
