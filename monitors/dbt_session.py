"""The monitors' dbt calls, in this process: one import of dbt and one parse of the project per run.

A monitor run makes two or three dbt calls (source freshness, the monitor models with the data tests, and,
when a test failed or warned, those tests again storing their failing rows). As separate processes, each
paid dbt's start-up again: its imports, its serialisers and the partial-parse file (about 4 CPU-seconds
per call on the reference machine). Here the project is parsed once and every call reuses that manifest
(dbt's programmatic invocation, ``dbtRunner(manifest=...)``); one call at a time, as dbt requires.

Each call sees the environment a child process would (the connection, the role passwords, the run's scope)
for its duration only, and keeps what dbt prints: on a failure to run, the last lines are logged, as the
output of a failed process was. dbt's own log file (logs/dbt.log) is written as with the command line.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from runtime.settings import PROJECT_ROOT

log = logging.getLogger("monitors")

# Exit statuses as the command line gives them: 0 success, 1 a test or freshness check failed (what the
# monitors monitor), 2 dbt could not run (no connection, a project that does not parse).
SUCCESS, FAILURES, CRASHED = 0, 1, 2
KEEP_LINES = 200


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with ``values`` set, restored afterwards (dbt reads its env_var() calls from it)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def profiles_dir() -> str:
    """Where a dbt process started in the project folder finds profiles.yml: DBT_PROFILES_DIR, else the
    project folder when it holds one, else dbt's default (~/.dbt)."""
    if os.environ.get("DBT_PROFILES_DIR"):
        return os.environ["DBT_PROFILES_DIR"]
    if (PROJECT_ROOT / "profiles.yml").exists():
        return str(PROJECT_ROOT)
    return str(Path.home() / ".dbt")


class DbtSession:
    """dbt invocations of one monitor run, sharing one environment, one target folder and one parse."""

    def __init__(self, env: Mapping[str, str], target_path: Path) -> None:
        self.env = dict(env)
        self.target_path = target_path.resolve()
        self.output: collections.deque[str] = collections.deque(maxlen=KEEP_LINES)
        self.events: list[str] = []  # the names of the last call's events (dbt's event types)
        self._manifest = None
        self._parsed = False

    def _keep(self, event) -> None:
        self.events.append(event.info.name)
        message = event.info.msg
        if message:
            self.output.append(str(message))

    def _args(self, args: list[str]) -> list[str]:
        return [
            *args,
            "--project-dir",
            str(PROJECT_ROOT),
            "--profiles-dir",
            profiles_dir(),
            "--target-path",
            str(self.target_path),
            "--log-level",
            "none",
        ]

    def _invoke(self, args: list[str]):
        from dbt.cli.main import dbtRunner  # imported on the first call only: a run without dbt needs none of it

        runner = dbtRunner(manifest=self._manifest, callbacks=[self._keep])
        with environment(self.env):
            return runner.invoke(self._args(args))

    def _parse(self) -> None:
        """Parse once (from the partial-parse file in the target folder when it is current); a project
        that does not parse leaves the manifest unset, so each call parses, and fails, on its own."""
        self._parsed = True
        parsed = self._invoke(["parse"])
        if parsed.success:
            self._manifest = parsed.result

    def run(self, args: list[str]) -> int:
        """One dbt call; its exit status as the command line gives it."""
        if not self._parsed:
            self._parse()
        log.info("running dbt %s --target-path %s", " ".join(args), self.target_path)
        self.output.clear()
        self.events.clear()
        done = self._invoke(args)
        if done.exception is not None:
            log.error("dbt %s failed to run: %s\n%s", args[0], done.exception, "\n".join(self.output))
            return CRASHED
        return SUCCESS if done.success else FAILURES
