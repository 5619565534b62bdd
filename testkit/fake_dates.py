"""``python -m testkit.fake_dates [--date ISO ...] -- COMMAND``: run COMMAND once per faked date.

Each run sees another calendar, the same in every process and still ticking:
- Python processes (the tests, the loaders, dbt, the monitors) through time-machine, started by the
  sitecustomize.py in fake_clock/, which this puts on PYTHONPATH;
- a Postgres of the run's own (state under .local/fake-dates/, a free port) under Debian's libfaketime,
  so the warehouse clock that stamps load times and answers now() is faked too.
Both run a fixed offset away from the real clock; monotonic clocks stay real. The broker is the shared one
(KAFKA_BOOTSTRAP_SERVERS or the embedded default, which must run): librdkafka's timed waits hang under
libfaketime, and no Kafka timestamp is read as a date.

The default dates are the ones a calendar bug likes: a month and year end that turns over during the run,
a Monday, a US federal holiday, 29 February and a date a year on. Exit status 0 when every run passed.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from runtime import db
from runtime.services import EmbeddedPostgres
from runtime.settings import PROJECT_ROOT, Settings
from testkit.fixtures import private_services_env

DATES = {
    "2026-12-31T23:58:30Z": "month and year end; the date turns over during the run",
    "2027-01-04T09:00:00Z": "a Monday",
    "2027-07-05T12:00:00Z": "a US federal holiday (Independence Day, observed)",
    "2028-02-29T12:00:00Z": "29 February of a leap year",
    "2027-11-30T12:00:00Z": "a year on from this round",
}
FAKE_CLOCK = Path(__file__).parent / "fake_clock"


def parse(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"a faked date needs a UTC offset: {text!r}")
    return when


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise SystemExit("fake_dates: libfaketime is missing: install Debian's faketime (make faketime does)")
    return found[0]


@contextmanager
def faked_postgres(settings: Settings, offset: int):
    """A Postgres of its own whose clock runs `offset` seconds away (libfaketime, preloaded into the
    server's tools and so into the server they start; this process's own clock is untouched)."""
    postgres = EmbeddedPostgres(settings, server_env={"LD_PRELOAD": libfaketime(), "FAKETIME": f"{offset:+d}"})
    postgres.start()
    try:
        db.bootstrap(settings)
        yield postgres
    finally:
        postgres.stop(mode="immediate")


def run_at(when: datetime, command: list[str], broker: str, log: Path | None = None) -> int:
    state = PROJECT_ROOT / ".local" / "fake-dates" / when.strftime("%Y%m%dT%H%M%S")
    shutil.rmtree(state, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env.update(private_services_env(state))
    env["KAFKA_BOOTSTRAP_SERVERS"] = broker  # the shared broker: its port in TELEMED_KAFKA_PORT goes unused
    settings = Settings.from_env(env)
    offset = round(when.timestamp() - time.time())  # the one reading of the wall clock: to leave it
    try:
        with faked_postgres(settings, offset):
            env.update(
                {
                    "TELEMED_FAKE_CLOCK_OFFSET": str(offset),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(FAKE_CLOCK), env.get("PYTHONPATH")])),
                }
            )
            if log is None:
                return subprocess.call(command, cwd=PROJECT_ROOT, env=env)
            with open(log, "wb") as out:
                return subprocess.call(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.fake_dates", description=__doc__)
    parser.add_argument("--date", action="append", type=parse, help="a faked date (repeatable; default: five)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="faked dates run at once (default 1; above 1 each run's output goes to a log)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is needed after --")
    broker = Settings.from_env().kafka_bootstrap_servers
    dates = args.date or [parse(text) for text in DATES]
    logs = PROJECT_ROOT / ".local" / "artifacts" / "fake-dates"
    logs.mkdir(parents=True, exist_ok=True)

    def one(when: datetime) -> int:
        why = DATES.get(when.strftime("%Y-%m-%dT%H:%M:%SZ"), "")
        title = f"faked date {when:%Y-%m-%d %H:%M:%S} UTC" + (f" ({why})" if why else "")
        if args.jobs <= 1:
            print(f"== {title}", flush=True)
            return run_at(when, command, broker)
        log = logs / f"{when:%Y%m%dT%H%M%S}.log"
        code = run_at(when, command, broker, log)
        tail = "" if code == 0 else "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        print(f"== {title}: {'passed' if code == 0 else f'FAILED (exit {code})'}, log {log}{tail}", flush=True)
        return code

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        codes = list(pool.map(one, dates))
    failed = [f"{when:%Y-%m-%d %H:%M} (exit {code})" for when, code in zip(dates, codes, strict=True) if code != 0]
    passed = len(dates) - len(failed)
    print(f"fake_dates: {passed} of {len(dates)} faked dates passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
