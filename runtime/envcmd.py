"""``python -m loaders env [-- command ...]``: the effective connection settings.

Without a command it prints them as shell exports; with one, it runs the command with them set, so
dbt, psql and Metabase provisioning see the same server the loaders use (embedded or configured).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess

from runtime import pseudonym
from runtime.settings import Settings


def child_env(settings: Settings) -> dict[str, str]:
    env = settings.libpq_env()
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    if settings.pg_password:
        env["DBT_ENV_SECRET_PGPASSWORD"] = settings.pg_password
    # The pseudonym key's HMAC pads as session settings: dbt's macro pseudonymous_key reads them.
    key = pseudonym.key_bytes(settings.state_dir)
    env["PGOPTIONS"] = pseudonym.pgoptions(key, os.environ.get("PGOPTIONS", ""))
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders env", description=__doc__)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a command to run, after --")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    env = child_env(settings)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        for key, value in env.items():
            shown = "********" if "PASSWORD" in key or key == "PGOPTIONS" else shlex.quote(value)
            print(f"export {key}={shown}")
        return 0
    return subprocess.call(command, env={**os.environ, **env})
