"""Fixtures that hand tests a real Postgres and a real Kafka-protocol broker (a pytest plugin: the root
conftest.py loads it for every test package).

The services are the effective ones (embedded unless PG*/KAFKA_BOOTSTRAP_SERVERS say otherwise);
embedded ones are started when needed and stopped again only if this session started them.
Every test module gets its own database, and every Kafka test its own topic, so tests never see
the demo's data or each other's.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from runtime import db, services
from runtime.settings import PROJECT_ROOT, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def own_services(
    label: str, database: str
) -> Iterator[tuple[Settings, services.EmbeddedPostgres, services.EmbeddedBroker]]:
    """A Postgres and a broker of a test's own (state under .local/<label>/, free ports), for tests that
    stop, pause or restart servers and so must never touch the session's shared ones."""
    state = PROJECT_ROOT / ".local" / label / uuid.uuid4().hex[:8]
    env = {"TELEMED_STATE_DIR": str(state), "TELEMED_PG_PORT": str(free_port()), "TELEMED_KAFKA_PORT": str(free_port())}
    settings = dataclasses.replace(Settings.from_env(env), pg_database=database)
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


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    settings = Settings.from_env()
    started = services.up(settings)
    yield settings
    if started:
        services.down(settings, only=started)


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
    admin = AdminClient({"bootstrap.servers": base_settings.kafka_bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)
