"""The embedded services as a user drives them: `python -m loaders services ...` in subprocesses,
each test on its own state directory and free ports so it never touches the demo's services."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest

from loaders.tests.loader_support import run_loader as cli
from runtime import pgtuning, services
from runtime.settings import PROJECT_ROOT, Settings
from testkit.fixtures import free_port


@pytest.fixture
def isolated_env():
    state = PROJECT_ROOT / ".local" / "test-services" / uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in ("DATABASE_URL",)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(
        TELEMED_STATE_DIR=str(state),
        TELEMED_PG_PORT=str(free_port()),
        TELEMED_KAFKA_PORT=str(free_port()),
        TELEMED_VIDEO_API_PORT=str(free_port()),
    )
    yield env
    subprocess.run([sys.executable, "-m", "loaders", "services", "down"], env=env, capture_output=True, check=False)
    shutil.rmtree(state, ignore_errors=True)


def pids(env: dict[str, str]) -> dict[str, int | None]:
    settings = Settings.from_env(env)
    return {s.name: s.pid() for s in services.embedded_services(settings)}


def test_up_twice_is_harmless_and_down_leaves_nothing(isolated_env):
    first = cli(isolated_env, "services", "up")
    assert first.returncode == 0, first.stderr
    running = pids(isolated_env)
    assert all(running.values()), running

    second = cli(isolated_env, "services", "up")
    assert second.returncode == 0, second.stderr
    assert pids(isolated_env) == running, "a second `up` must not start new processes"

    status = cli(isolated_env, "services", "status")
    assert status.returncode == 0
    assert status.stdout.count("running") == 3
    assert f"127.0.0.1:{isolated_env['TELEMED_PG_PORT']}" in status.stdout
    assert f"127.0.0.1:{isolated_env['TELEMED_KAFKA_PORT']}" in status.stdout

    down = cli(isolated_env, "services", "down")
    assert down.returncode == 0, down.stderr
    for pid in running.values():
        assert not services.pid_alive(pid), f"process {pid} survived `down`"
    # Every postgres child exits with the postmaster: none may keep the data directory open.
    leftover = subprocess.run(["pgrep", "-f", isolated_env["TELEMED_STATE_DIR"]], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
    assert cli(isolated_env, "services", "status").stdout.count("stopped") == 3


def _admin_sql(settings: Settings, statement: str, params: tuple = ()) -> list[tuple]:
    """One statement as the admin on database postgres, in autocommit; its rows, if it returns any."""
    conn = psycopg2.connect(settings.dsn(database="postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_postgres_data_persists_across_down_and_up(isolated_env):
    assert cli(isolated_env, "services", "up").returncode == 0
    settings = Settings.from_env(isolated_env)
    _admin_sql(settings, "create table kept (x int); insert into kept values (42)")
    assert cli(isolated_env, "services", "down").returncode == 0
    assert cli(isolated_env, "services", "up").returncode == 0
    assert _admin_sql(settings, "select x from kept") == [(42,)]


def _show(settings: Settings, *names: str) -> dict[str, str]:
    query = "select name, current_setting(name) from pg_settings where name = any(%s)"
    return dict(_admin_sql(settings, query, (list(names),)))


def test_embedded_postgres_is_sized_to_the_machine_and_alter_system_overrides_it(isolated_env):
    assert cli(isolated_env, "services", "up").returncode == 0
    settings = Settings.from_env(isolated_env)
    want = pgtuning.server_settings(pgtuning.memory_for(settings.pg_memory_mb))
    assert _show(settings, *want) == want
    _admin_sql(settings, "alter system set work_mem = '7MB'")
    assert cli(isolated_env, "services", "down").returncode == 0
    assert cli(isolated_env, "services", "up").returncode == 0
    # The file is rewritten at every start and included once; ALTER SYSTEM, read after it, wins.
    conf = (Path(isolated_env["TELEMED_STATE_DIR"]) / "postgres" / "data" / "postgresql.conf").read_text()
    assert conf.splitlines().count(pgtuning.INCLUDE_LINE) == 1
    shown = _show(settings, "work_mem", "shared_buffers")
    assert shown == {"work_mem": "7MB", "shared_buffers": want["shared_buffers"]}


@pytest.mark.parametrize("which", ["TELEMED_PG_PORT", "TELEMED_KAFKA_PORT"])
def test_port_in_use_is_a_clear_error(isolated_env, which):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(isolated_env[which])))
        squatter.listen()
        result = cli(isolated_env, "services", "up")
    assert result.returncode == 1
    assert "is in use by another process" in result.stderr
    assert isolated_env[which] in result.stderr


def test_missing_broker_binary_is_a_clear_error(isolated_env):
    isolated_env["CALF_TANSU_BIN"] = "/nonexistent/tansu"
    result = cli(isolated_env, "services", "up")
    assert result.returncode == 1
    assert "no Tansu broker binary" in result.stderr


def test_stale_pid_files_are_replaced(isolated_env):
    state = Path(isolated_env["TELEMED_STATE_DIR"])
    (state / "kafka").mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (state / "kafka" / "tansu.pid").write_text(f"{dead.pid}\n")
    result = cli(isolated_env, "services", "up")
    assert result.returncode == 0, result.stderr
    assert "stale broker pid file" in result.stderr
    assert all(pids(isolated_env).values())


def test_server_that_cannot_start_reports_its_log(isolated_env):
    assert cli(isolated_env, "services", "up").returncode == 0
    assert cli(isolated_env, "services", "down").returncode == 0
    conf = Path(isolated_env["TELEMED_STATE_DIR"]) / "postgres" / "data" / "postgresql.auto.conf"
    conf.write_text(conf.read_text() + "\nshared_buffers = 'not a size'\n")
    result = cli(isolated_env, "services", "up")
    assert result.returncode == 1
    assert "did not come up" in result.stderr
    assert "shared_buffers" in result.stderr, "the error must show the tail of the server log"


def test_configured_postgres_is_used_and_embedded_one_not_started(isolated_env):
    """A second Postgres stands in for the user's own server; PGHOST points every command at it."""
    external_env = dict(isolated_env)
    external_env["TELEMED_STATE_DIR"] = isolated_env["TELEMED_STATE_DIR"] + "-external"
    external_env["TELEMED_KAFKA_PORT"] = str(free_port())
    external_env["TELEMED_VIDEO_API_PORT"] = str(free_port())
    try:
        assert cli(external_env, "services", "up").returncode == 0
        user_env = dict(isolated_env)
        user_env.update(PGHOST="127.0.0.1", PGPORT=external_env["TELEMED_PG_PORT"], PGUSER="postgres")
        # A configured server asks for passwords: the admin's and each login role's, as a user sets them.
        external = Settings.from_env(external_env)
        user_env.update(PGPASSWORD=external.password_for(), **external.role_password_env())
        user_env["TELEMED_PG_PORT"] = str(free_port())  # where an embedded server would go

        up = cli(user_env, "services", "up")
        assert up.returncode == 0, up.stderr
        assert "configured" in up.stdout
        init = cli(user_env, "db", "init")
        assert init.returncode == 0, init.stderr
        exported = cli(user_env, "env")
        assert f"export PGPORT={external_env['TELEMED_PG_PORT']}" in exported.stdout

        assert not (Path(user_env["TELEMED_STATE_DIR"]) / "postgres").exists()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(user_env["TELEMED_PG_PORT"]))) != 0
        conn = psycopg2.connect(external.dsn(database="telemed"))
        with conn.cursor() as cur:
            cur.execute("select count(*) from information_schema.tables where table_schema = 'raw'")
            assert cur.fetchone()[0] >= 10, "db init must have created the raw tables on the configured server"
        conn.close()
    finally:
        cli(external_env, "services", "down")
        shutil.rmtree(external_env["TELEMED_STATE_DIR"], ignore_errors=True)
