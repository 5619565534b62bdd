"""``python -m orchestration.supervisor up|down|status|airflow -- ...``: Apache Airflow on this machine.

``up`` (``make airflow``) runs Airflow's api-server (with the UI), scheduler and dag-processor from
Airflow's own environment, on loopback, with AIRFLOW_HOME under the state directory
(``.local/airflow``) and the metadata in a database of its own (``airflow``) on the project's Postgres,
embedded or configured. It prints the URL and the login and leaves them running; ``down``
(``make airflow-down``) stops them; ``status`` says what runs. ``airflow -- <args>`` runs Airflow's
command line in the same environment (``orchestration/bin/airflow`` is that command).

The environment every Airflow process gets is ``airflow_env``: the project's own settings stay as the
caller has them (the DAGs' commands read them, as the loaders do), plus Airflow's configuration. The
admin password and Airflow's signing keys are generated on first use and kept in AIRFLOW_HOME (mode
0600); nothing secret is committed or written into a DAG.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from runtime import db
from runtime.processes import pid_alive
from runtime.settings import PROJECT_ROOT, Settings

log = logging.getLogger("orchestration.supervisor")

DEFAULT_PORT = 8081
DEFAULT_DATABASE = "airflow"
ADMIN_USER = "admin"
COMPONENTS = ("api-server", "scheduler", "dag-processor")
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30
# Cosmos and Airflow report usage to their makers unless told not to; nothing here phones home.
NO_TELEMETRY = {
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "DO_NOT_TRACK": "true",
    "SCARF_ANALYTICS": "false",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
}


class AirflowError(RuntimeError):
    """Airflow could not be prepared, started or reached; the message says why."""


def airflow_venv() -> Path:
    return Path(os.environ.get("TELEMED_AIRFLOW_VENV") or PROJECT_ROOT / ".local" / "airflow" / "venv")


def airflow_bin() -> Path:
    path = airflow_venv() / "bin" / "airflow"
    if not path.exists():
        raise AirflowError(f"{path} is missing: `make airflow` (or `make airflow-venv`) creates Airflow's environment")
    return path


@dataclass(frozen=True)
class AirflowSite:
    """One Airflow installation's place: its home, metadata database and api-server port."""

    home: Path
    database: str
    port: int

    @classmethod
    def from_env(cls, settings: Settings) -> AirflowSite:
        return cls(
            home=Path(os.environ.get("TELEMED_AIRFLOW_HOME") or settings.state_dir / "airflow"),
            database=os.environ.get("TELEMED_AIRFLOW_DATABASE") or DEFAULT_DATABASE,
            port=int(os.environ.get("TELEMED_AIRFLOW_PORT") or DEFAULT_PORT),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pidfile(self, component: str) -> Path:
        return self.home / "run" / f"{component}.pid"

    def logfile(self, component: str) -> Path:
        return self.home / "run" / f"{component}.log"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    @property
    def keys_file(self) -> Path:
        return self.home / "keys.json"


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)


def ensure_secrets(site: AirflowSite) -> dict[str, str]:
    """The admin password and the keys Airflow's components must share, generated once per home."""
    if not site.passwords_file.exists():
        _write_private(site.passwords_file, json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}))
    if not site.keys_file.exists():
        keys = {
            "jwt_secret": secrets.token_urlsafe(32),
            "secret_key": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        }
        _write_private(site.keys_file, json.dumps(keys))
    return json.loads(site.keys_file.read_text())


def admin_password(site: AirflowSite) -> str:
    return json.loads(site.passwords_file.read_text())[ADMIN_USER]


def metadata_url(settings: Settings, database: str) -> str:
    credentials = quote(settings.pg_user, safe="")
    password = settings.password_for()  # the embedded server's comes from its passwords file
    if password:
        credentials += ":" + quote(password, safe="")
    return f"postgresql+psycopg2://{credentials}@{settings.pg_host}:{settings.pg_port}/{quote(database, safe='')}"


def airflow_env(settings: Settings, site: AirflowSite, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every Airflow process and command (the caller's, plus Airflow's settings)."""
    keys = ensure_secrets(site)
    env = dict(os.environ if base is None else base)
    pythonpath = env.get("PYTHONPATH")
    env.update(NO_TELEMETRY)
    env.update(
        {
            "AIRFLOW_HOME": str(site.home),
            "PYTHONPATH": str(PROJECT_ROOT) + (f":{pythonpath}" if pythonpath else ""),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "orchestration" / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Two cores: a few dbt processes at a time.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(site.passwords_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{site.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings, site.database),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(site.port),
            "AIRFLOW__API__BASE_URL": site.url,
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            # New and changed DAG files show within half a minute.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(site.home / "logs"),
            # Cosmos would cache the parsed selectors in Airflow Variables; the manifest parses in well
            # under a second, and the Variables list stays the operator's.
            "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS": "False",
            # Cosmos keeps dbt's partial parse between tasks; in this home, not a /tmp folder shared by all.
            "AIRFLOW__COSMOS__CACHE_DIR": str(site.home / "cosmos"),
        }
    )
    return env


def airflow_command(env: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(airflow_bin()), *args], env=env, cwd=PROJECT_ROOT, check=False, **kwargs)


def prepare(settings: Settings, site: AirflowSite, env: dict[str, str]) -> None:
    """The metadata database (created when missing) at Airflow's current schema."""
    if db.ensure_database(settings, site.database):
        log.info("created the Airflow metadata database %s", site.database)
    done = airflow_command(env, "db", "migrate", capture_output=True, text=True)
    if done.returncode != 0:
        raise AirflowError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def component_pid(site: AirflowSite, component: str) -> int | None:
    try:
        pid = int(site.pidfile(component).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if pid_alive(pid) and b"airflow" in cmdline else None


def api_healthy(site: AirflowSite) -> bool:
    try:
        with urllib.request.urlopen(f"{site.url}/api/v2/monitor/health", timeout=3) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def up(settings: Settings, site: AirflowSite) -> list[str]:
    """Start the components that are not running; the names started."""
    env = airflow_env(settings, site)
    prepare(settings, site, env)
    started = []
    for component in COMPONENTS:
        if component_pid(site, component):
            continue
        args = [component] + (["--host", "127.0.0.1", "--port", str(site.port)] if component == "api-server" else [])
        site.logfile(component).parent.mkdir(parents=True, exist_ok=True)
        with open(site.logfile(component), "ab") as logf:
            proc = subprocess.Popen(
                [str(airflow_bin()), *args],
                env=env,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the shell that ran `make airflow` must not stop it
            )
        site.pidfile(component).write_text(f"{proc.pid}\n")
        started.append(component)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not api_healthy(site):
        for component in COMPONENTS:
            if not component_pid(site, component):
                raise AirflowError(f"airflow {component} exited; see {site.logfile(component)}")
        if time.monotonic() > deadline:
            raise AirflowError(
                f"the api-server did not answer within {START_TIMEOUT_S}s; see {site.logfile('api-server')}"
            )
        time.sleep(1)
    return started


def down(site: AirflowSite) -> list[str]:
    stopped = []
    for component in reversed(COMPONENTS):
        pid = component_pid(site, component)
        if pid is None:
            site.pidfile(component).unlink(missing_ok=True)
            continue
        # Each component leads a session of its own (start_new_session): its workers stop with it.
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            log.warning("airflow %s did not stop on SIGTERM, killing it", component)
            os.killpg(pid, signal.SIGKILL)
        site.pidfile(component).unlink(missing_ok=True)
        stopped.append(component)
    return stopped


def status_lines(site: AirflowSite) -> list[str]:
    lines = []
    for component in COMPONENTS:
        pid = component_pid(site, component)
        address = site.url if component == "api-server" else ""
        state = "running" if pid else "stopped"
        detail = f"pid {pid}, log {site.logfile(component)}" if pid else f"log {site.logfile(component)}"
        lines.append(f"{'airflow':<9} {component:<13} {address:<22} {state:<8} {detail}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.supervisor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("up", help="start Airflow's api-server, scheduler and dag-processor on loopback")
    sub.add_parser("down", help="stop them")
    status = sub.add_parser("status", help="say which runs")
    status.add_argument("--if-installed", action="store_true", help="say nothing when Airflow was never started")
    command = sub.add_parser("airflow", help="run Airflow's command line in this environment")
    command.add_argument("args", nargs=argparse.REMAINDER, help="its arguments, after --")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    settings = Settings.from_env()
    site = AirflowSite.from_env(settings)
    try:
        if args.action == "up":
            started = up(settings, site)
            print("\n".join(status_lines(site)))
            print(
                f"Airflow {'started' if started else 'was running'}: {site.url}"
                f"  login {ADMIN_USER} / {admin_password(site)}"
            )
            print("`make airflow-down` stops it; orchestration/bin/airflow runs its command line.")
        elif args.action == "down":
            stopped = down(site)
            print(
                "stopped: "
                + (", ".join(f"airflow {name}" for name in stopped) if stopped else "airflow was not running")
            )
        elif args.action == "status":
            if args.if_installed and not site.home.exists():
                return 0
            print("\n".join(status_lines(site)))
        else:
            rest = args.args[1:] if args.args[:1] == ["--"] else args.args
            return airflow_command(airflow_env(settings, site), *rest).returncode
    except AirflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
