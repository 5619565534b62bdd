"""Fixtures that hand tests a real Postgres and a real Kafka-protocol broker (a pytest plugin: the root
conftest.py loads it for every test package).

The services are the effective ones (embedded unless PG*/KAFKA_BOOTSTRAP_SERVERS say otherwise);
embedded ones are started when needed and stopped again only if this session started them.
Every test module gets its own database, and every Kafka test its own topic, so tests never see
the demo's data or each other's.

Under pytest-xdist (`make test` runs `pytest -n`), each worker runs embedded services of its own (state
under .local/xdist/, free ports, set in the worker's environment so every process a test starts uses
them too): consumer groups of one worker never wait on another's rebalances on a shared broker.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from runtime import db, services
from runtime.kafka import client_config
from runtime.settings import PROJECT_ROOT, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_services_env(state: Path) -> dict[str, str]:
    """The environment of embedded services of their own: a state folder and three free ports."""
    return {
        "TELEMED_STATE_DIR": str(state),
        "TELEMED_PG_PORT": str(free_port()),
        "TELEMED_KAFKA_PORT": str(free_port()),
        "TELEMED_VIDEO_API_PORT": str(free_port()),
    }


@contextmanager
def own_services(
    label: str, database: str
) -> Iterator[tuple[Settings, services.EmbeddedPostgres, services.EmbeddedBroker]]:
    """A Postgres and a broker of a test's own (state under .local/<label>/, free ports), for tests that
    stop, pause or restart servers and so must never touch the session's shared ones."""
    state = PROJECT_ROOT / ".local" / label / uuid.uuid4().hex[:8]
    settings = dataclasses.replace(Settings.from_env(private_services_env(state)), pg_database=database)
    postgres, broker = services.EmbeddedPostgres(settings), services.EmbeddedBroker(settings)
    postgres.start()
    try:
        broker.start()
        db.bootstrap(settings)
        yield settings, postgres, broker
    finally:
        broker.stop()
        postgres.stop(mode="immediate")  # a case may have left it stopped: stop() then does nothing
        shutil.rmtree(state, ignore_errors=True)


def _worker_env() -> dict[str, str]:
    """A state folder and free ports for an xdist worker's own embedded services (empty elsewhere, and
    where Postgres or the broker is configured: then every worker shares them)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    configured = any(os.environ.get(k) for k in ("PGHOST", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"))
    if not worker or configured:
        return {}
    return private_services_env(PROJECT_ROOT / ".local" / "xdist" / f"{os.getpid()}-{worker}")


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    own = _worker_env()
    for attempt in range(3):
        os.environ.update(own)
        settings = Settings.from_env()
        try:
            started = services.up(settings)
            break
        except services.ServiceError:
            if not own or attempt == 2:
                raise
            services.down(settings)
            own = _worker_env()  # another worker took a port between choosing and binding it
    if own:
        db.bootstrap(settings)
    yield settings
    if started:
        services.down(settings, only=started)
    if own:
        shutil.rmtree(own["TELEMED_STATE_DIR"], ignore_errors=True)


@pytest.fixture(scope="module")
def settings(base_settings: Settings) -> Settings:
    """Settings pointing at a fresh, bootstrapped database of this test module's own."""
    name = f"telemed_pytest_{uuid.uuid4().hex[:10]}"
    isolated = dataclasses.replace(base_settings, pg_database=name)
    db.bootstrap(isolated)
    yield isolated
    db.drop_database(base_settings, name)


@pytest.fixture
def pg(settings: Settings):
    conn = db.connect(settings)
    yield conn
    conn.close()


@pytest.fixture
def kafka_topic(base_settings: Settings):
    """A fresh topic with three partitions, deleted afterwards."""
    name = f"test.events.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(client_config(base_settings))  # a configured broker's TLS and SASL settings too
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


@pytest.fixture(scope="session")
def s3_emulator():
    """An S3-compatible server on loopback: moto in server mode, an emulator (testkit/s3.py). The standard
    AWS variables of this process (and so of the loaders a test starts) point at it."""
    from testkit.s3 import S3Emulator

    emulator = S3Emulator()
    emulator.start()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
            patch.delenv(name, raising=False)
        for name, value in emulator.env.items():
            patch.setenv(name, value)
        yield emulator
    emulator.stop()


# Suites by cost, for `make test-fast` (-m "not slow and not faults"): the fault matrix and the outage
# tests kill, pause and restart servers (`faults`); these build whole worlds through dbt (`slow`).
FAULTS = (
    "loaders/tests/reliability/",
    "loaders/tests/test_consume_outages.py",
    "loaders/tests/test_outage_bounds.py",
    "loaders/tests/test_consume.py::test_kill_9_mid_batch_then_restart_loads_every_event_once",
)
SLOW = (
    "loaders/tests/test_pipeline.py",
    "loaders/tests/test_pipeline_lifecycle.py",
    "loaders/tests/test_load.py",
    "stewardship/tests/test_stewardship.py",
    "monitors/tests/test_scenarios.py",
    "monitors/tests/test_business_alerts.py",
    "dashboards/tests/test_browser.py",
    "dashboards/tests/test_card_sql.py",
    "dashboards/tests/test_free_text.py",  # reads the built marts
    "runtime/tests/test_services.py",
    "dashboards/tests/test_metabase.py::test_without_metabase_url_only_html_is_built",  # builds the marts
    # dbt parses the whole project into a new target folder (9 CPU-seconds)
    "runtime/tests/test_dbt_session.py::test_calls_share_one_parse_and_a_call_dbt_refuses_is_a_crash_with_its_reason",
    # the realism tests on the generator's 50k world (10 CPU-seconds to generate)
    *(
        f"simulator/tests/test_generate.py::test_{name}"
        for name in (
            "key_insights_are_calibrated_at_50k",
            "forms_agree_with_the_manifest_ratings",
            "seasonality_weekdays_business_hours_holidays",
            "durations_no_shows_and_connection_quality_behave",
            "rescheduled_appointments_chain_to_new_ones",
        )
    ),
)


# The modules that hold the date-sensitive tests (marker `dates`). `make test-dates` runs pytest -m dates
# once per faked date, and collects only these: importing the whole suite to select 17 tests cost each
# date 1.3 CPU-seconds. A whole run fails when a test marked `dates` is in a module not listed.
DATED = (
    "testkit/test_clock.py",
    "simulator/tests/test_generate.py",
    "monitors/tests/test_alerts.py",
    "monitors/tests/test_ingestion.py",
    "monitors/tests/test_business_alerts.py",
)

# pytest-xdist work units (`--dist loadgroup`, scheduled by pytest_xdist_make_scheduler below): a module is a
# unit of its own, so its tests stay on one worker, in order, sharing their module fixtures; modules that read
# one session-scoped world form one unit, so the world is built once per run instead of once per worker that
# happens to get one of them.
SHARED_WORLDS = {
    "dashboards/tests/": "dashboards-marts",  # dashboards/tests/conftest.py marts_settings
}
# The costliest units first (`--no-loadscope-reorder` keeps this order): a long unit started last would
# keep one worker busy after the others ran dry. Seconds per unit in a whole `make test` (four workers,
# 2026-12-07, the machine busy with the phases beside pytest) in comments; a unit that mostly waits on
# killed or paused servers (w) costs a worker's time but little CPU.
FIRST = (
    "orchestration/tests/test_ingestion_dag.py",  # 290: airflow dags test, task by task
    "monitors/tests/test_scenarios.py",  # 280: a world, then six monitor runs
    "loaders/tests/reliability/test_consumer_faults.py",  # 190 (w)
    "loaders/tests/test_pipeline.py",  # 170
    "dashboards-marts",  # 160
    "loaders/tests/reliability/test_pipeline_guarantees.py",  # 100
    "loaders/tests/test_outage_bounds.py",  # 80 (w)
    "loaders/tests/test_pipeline_lifecycle.py",  # 65
    "loaders/tests/test_consume.py",  # 65 (w)
    "loaders/tests/reliability/test_postgres_faults.py",  # 55 (w)
    "monitors/tests/test_business_alerts.py",  # 55: the anomaly world and a monitor run
    "loaders/tests/test_value_edges.py",  # 40
    "loaders/tests/test_serve.py",  # 35 (w)
    "loaders/tests/properties/test_consume_properties.py",  # 30
    "loaders/tests/test_consume_outages.py",  # 30 (w)
    # Measured later the same day (kept dbt connections): the units of 15 s or more not above, so that the
    # last units the workers take are short ones.
    "loaders/tests/test_poison_input.py",  # 23 (w)
    "simulator/tests/test_generate.py",  # 23
    "runtime/tests/test_services.py",  # 21 (w)
    "stewardship/tests/test_stewardship.py",  # 19
)


def work_unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return next((unit for prefix, unit in SHARED_WORLDS.items() if module.startswith(prefix)), module)


def pytest_ignore_collect(collection_path, config):
    """Under `-m dates` alone (the faked-date runs), test modules outside DATED are not imported."""
    module = collection_path.name.startswith("test_") and collection_path.suffix == ".py"
    if config.getoption("markexpr") != "dates" or not module:
        return None
    return True if collection_path.relative_to(config.rootpath).as_posix() not in DATED else None


def pytest_collection_modifyitems(config, items):
    """Markers by path or node id (FAULTS, SLOW); the costliest work units first. A `dates` test outside
    DATED is an error: the faked-date runs would never collect it."""
    undated = sorted({item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("dates")} - set(DATED))
    if undated:
        raise pytest.UsageError(f"tests marked dates in modules missing from testkit/fixtures.py DATED: {undated}")
    for item in items:
        if item.nodeid.startswith(FAULTS):
            item.add_marker(pytest.mark.faults)
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
    rank = {unit: i for i, unit in enumerate(FIRST)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(work_unit(item.nodeid), len(FIRST)), order[id(item)]))


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with testkit's work units. (pytest-xdist's own grouping by `xdist_group` markers does
    nothing under pytest 9.2: it renames a node id through an attribute pytest no longer reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)
