"""``python -m loaders env [-- command ...]``: the effective connection settings.

Without a command it prints them as shell exports; with one, it runs the command with them set, so
dbt, psql and Metabase provisioning see the same server the loaders use (embedded or configured).

By default PG* log in as the admin (psql, the bootstrap) and the login roles' passwords are passed on
(TELEMED_*_PASSWORD: a child that sees PGHOST treats the server as configured); dbt's profile logs in as
telemed_dbt with DBT_ENV_SECRET_TELEMED_DBT_PASSWORD. ``--role ROLE`` gives the command that role's login
and nothing more: `make` runs dbt with ``--role telemed_dbt``, so dbt never holds the admin's password.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import subprocess

from runtime import pseudonym
from runtime.passwords import PasswordFileError
from runtime.settings import DBT_ROLE, KAFKA_SECURITY_ENV, LOGIN_ROLES, ROLE_PASSWORD_ENV, Settings

log = logging.getLogger(__name__)


def child_env(settings: Settings, role: str | None = None) -> dict[str, str]:
    """The environment of a child process: the admin's login and every role's password, or with ``role``
    that login role's alone."""
    try:
        return _child_env(settings, role)
    except PasswordFileError as exc:
        # Before the embedded server's first start there is nothing to pass on yet (a command that only
        # compiles, such as sqlfluff's templater, still runs); one that connects is refused and says so.
        log.warning("%s; no passwords passed on", exc)
        return _child_env(dataclasses.replace(settings, pg_embedded=False), role)


def _child_env(settings: Settings, role: str | None) -> dict[str, str]:
    env = settings.libpq_env(user=role)
    if role is None:
        env.update(settings.role_password_env())
    else:
        password = settings.password_for(role)
        if password:
            env[ROLE_PASSWORD_ENV[role]] = password
    dbt_password = settings.password_for(DBT_ROLE) if role in (None, DBT_ROLE) else None
    if dbt_password:
        env["DBT_ENV_SECRET_TELEMED_DBT_PASSWORD"] = dbt_password
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    names = {prop: name for name, prop in KAFKA_SECURITY_ENV.items()}
    for prop, value in settings.kafka_security:
        env[names[prop]] = value
    # The pseudonym key's HMAC pads as session settings: dbt's macro pseudonymous_key reads them.
    key = pseudonym.key_bytes(settings.state_dir)
    env["PGOPTIONS"] = pseudonym.pgoptions(key, os.environ.get("PGOPTIONS", ""))
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders env", description=__doc__)
    parser.add_argument("--role", choices=LOGIN_ROLES, help="log in as this role only (default: the admin)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a command to run, after --")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    env = child_env(settings, role=args.role)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        for key, value in env.items():
            shown = "********" if "PASSWORD" in key or key == "PGOPTIONS" else shlex.quote(value)
            print(f"export {key}={shown}")
        return 0
    return subprocess.call(command, env={**os.environ, **env})
