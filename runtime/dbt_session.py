"""dbt in this process: one import of dbt for many calls, and with a session, one parse of the project.

Each dbt command line is a new process that pays dbt's start-up again: its imports, its serialisers and the
partial-parse file (about 4 CPU-seconds per call on the reference machine). A process that makes several
calls (a monitor run: source freshness, the monitor models with the data tests, the failing tests again;
a test that builds a world several times) makes them here instead, through dbt's programmatic invocation
(``dbtRunner``), one call at a time as dbt requires. A ``DbtSession`` with a target folder parses the
project once and every later call reuses that manifest (``dbtRunner(manifest=...)``): for calls on one
project state, such as a monitor run's.

Each call sees the environment a child process would (the connection, the role passwords, DBT_* settings)
for its duration only, and keeps what dbt prints (``output``, the names of its events in ``events``): on a
failure to run, the last lines are logged, as the output of a failed process was. dbt's own log file is
written as with the command line (logs/dbt.log, or DBT_LOG_PATH).
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from runtime.dbt_connections import keep_connections
from runtime.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

# Exit statuses as the command line gives them: 0 success, 1 a test or freshness check failed (what the
# monitors monitor), 2 dbt could not run (no connection, a project that does not parse).
SUCCESS, FAILURES, CRASHED = 0, 1, 2
KEEP_LINES = 200
PRINTED_LEVELS = {"info", "warn", "error"}  # dbt's default on the command line: debug goes to the log file only


@contextmanager
def environment(values: Mapping[str, str], *, whole: bool = False) -> Iterator[None]:
    """os.environ with ``values`` set (with ``whole``, nothing else: a child's whole environment), restored
    afterwards (dbt reads its env_var() calls and DBT_* settings from it)."""
    saved = dict(os.environ)
    if whole:
        os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def profiles_dir() -> str:
    """Where a dbt process started in the project folder finds profiles.yml: DBT_PROFILES_DIR, else the
    project folder when it holds one, else dbt's default (~/.dbt)."""
    if os.environ.get("DBT_PROFILES_DIR"):
        return os.environ["DBT_PROFILES_DIR"]
    if (PROJECT_ROOT / "profiles.yml").exists():
        return str(PROJECT_ROOT)
    return str(Path.home() / ".dbt")


class DbtSession:
    """dbt calls sharing one environment; with ``target_path``, that target folder and one parse (without,
    each call parses, from the partial-parse file of the target folder its environment names)."""

    def __init__(
        self,
        env: Mapping[str, str],
        target_path: Path | None = None,
        keep_lines: int | None = KEEP_LINES,
        *,
        whole_environment: bool = False,
    ) -> None:
        self.env = dict(env)
        self.whole_environment = whole_environment  # env is all a child would see, not additions to ours
        self.target_path = None if target_path is None else target_path.resolve()
        # What the command line would print (info level and above), the last `keep_lines` lines (None: all).
        self.output: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self.events: list[str] = []  # the names of the last call's events (dbt's event types)
        self._manifest = None
        self._parsed = False

    def _keep(self, event) -> None:
        self.events.append(event.info.name)
        message = event.info.msg
        if message and event.info.level in PRINTED_LEVELS:
            self.output.append(str(message))

    def _args(self, args: list[str]) -> list[str]:
        """The call's command line. Read inside the call's environment (DBT_LOG_LEVEL_FILE)."""
        target = [] if self.target_path is None else ["--target-path", str(self.target_path)]
        # Nothing is printed (the callback keeps the output), but `--log-level none` alone would silence dbt's
        # log file too: dbt gives the file the console's level unless one is set for it. The command line's
        # default for the file, debug, unless DBT_LOG_LEVEL_FILE sets another.
        file_level = [] if os.environ.get("DBT_LOG_LEVEL_FILE") else ["--log-level-file", "debug"]
        return [*args, "--project-dir", str(PROJECT_ROOT), "--profiles-dir", self._profiles_dir(), *target,
                "--log-level", "none", *file_level]  # fmt: skip

    def _profiles_dir(self) -> str:
        with environment(self.env, whole=self.whole_environment):
            return profiles_dir()

    def _invoke(self, args: list[str]):
        from dbt.cli.main import dbtRunner  # imported on the first call only: a run without dbt needs none of it

        runner = dbtRunner(manifest=self._manifest, callbacks=[self._keep])
        with environment(self.env, whole=self.whole_environment):
            keep_connections()  # read in the call's environment (TELEMED_DBT_KEEP_CONNECTIONS)
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
        if self.target_path is not None and not self._parsed:
            self._parse()
        log.info("running dbt %s%s", " ".join(args), f" --target-path {self.target_path}" if self.target_path else "")
        self.output.clear()
        self.events.clear()
        done = self._invoke(args)
        if done.exception is not None:
            log.error("dbt %s failed to run: %s\n%s", args[0], done.exception, "\n".join(self.output))
            return CRASHED
        return SUCCESS if done.success else FAILURES
