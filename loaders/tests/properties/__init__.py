"""Property-based tests of the loaders (issue 15): hypothesis generates messages and landing files, the real
consumer and feedback loader take them into the real Postgres from the real broker, and the tests check
what must hold for any input (every input exactly once in raw or in quarantine, exit 0, offsets at the end).

Two profiles, chosen with HYPOTHESIS_PROFILE:
- ``ci`` (the default, `make test`): few examples per test, derandomized (the same examples on every run,
  so a red CI run is reproducible), no example database, no deadline (one example is a whole loader run);
- ``fuzz`` (`make fuzz`): FUZZ_FACTOR (20) times the examples from a random seed (`make fuzz` passes one
  and prints it; `make fuzz FUZZ_SEED=n` repeats a run). A failure prints the falsifying example and a
  ``@reproduce_failure`` blob. No example database: with a seed given, hypothesis would not use one anyway
  (its caches still go to .hypothesis/, which git ignores).
"""

from __future__ import annotations

import os
from unittest import mock

import time_machine
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy

from loaders import validation
from loaders.__main__ import main as loaders_cli
from loaders.tests.loader_support import loader_env
from runtime import db

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ_FACTOR = int(os.environ.get("FUZZ_FACTOR", "20"))

# One example runs a loader against real services: seconds, not microseconds; and the inputs are big.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "ci", deadline=None, derandomize=True, database=None, print_blob=True, suppress_health_check=_SLOW_IS_FINE
)
settings.register_profile("fuzz", deadline=None, database=None, print_blob=True, suppress_health_check=_SLOW_IS_FINE)
if PROFILE not in ("ci", "fuzz"):
    raise RuntimeError(f"HYPOTHESIS_PROFILE must be ci or fuzz, not {PROFILE!r}")


def examples(ci: int) -> settings:
    """The settings of a property test: ``ci`` examples under the ci profile, FUZZ_FACTOR times more under fuzz."""
    return settings(settings.get_profile(PROFILE), max_examples=ci if PROFILE == "ci" else ci * FUZZ_FACTOR)


def drawn(strategy: SearchStrategy, count: int) -> list:
    """``count`` values of ``strategy`` (FUZZ_FACTOR times more under fuzz) for a fixture that loads them all
    at once, such as the dbt build of test_value_edges.py. There is no shrinking there: the values are the
    same on every ci run, so a failure is found among them."""
    values: list = []

    @settings(examples(count), phases=[Phase.generate])
    @given(strategy)
    def keep(value) -> None:
        values.append(value)

    keep()
    return values


def run_pinned(settings_, argv: list[str], load_time) -> int:
    """One run of the real loader CLI in this process, on ``settings_``'s services, with the load time (and
    so the validator's upper bound) pinned; its exit code."""
    with mock.patch.dict(os.environ, loader_env(settings_), clear=True), time_machine.travel(load_time, tick=False):
        validation.reset_latest_timestamp()
        try:
            return loaders_cli(argv)
        finally:
            validation.reset_latest_timestamp()


def empty_tables(settings_, *tables: str) -> None:
    conn = db.connect(settings_)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"truncate {', '.join(tables)}")
    finally:
        conn.close()
