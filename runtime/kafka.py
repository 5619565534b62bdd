"""Kafka plumbing shared by the producer and the consumer: client settings, topic creation, topic ids."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from runtime.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 3


def client_config(settings: Settings, **extra: object) -> dict[str, object]:
    """The settings every client shares; librdkafka's own log lines go through Python logging.

    The security properties (``security.protocol``, ``sasl.*``, ``ssl.ca.location``) come from the
    environment (KAFKA_SECURITY_PROTOCOL, ... in .env.example) into every producer, consumer and admin
    client, so a broker off this machine is reached over TLS and with SASL credentials when configured."""
    config: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": "telemed-elt",
        "logger": logging.getLogger("librdkafka"),
        # Reconnect quickly after a broker restart, but never hammer it.
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 5000,
        **dict(settings.kafka_security),
    }
    config.update(extra)
    return config


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def topic_exists(admin: AdminClient, topic: str, timeout: float = 10.0) -> bool:
    metadata = admin.list_topics(topic=topic, timeout=timeout)
    found = metadata.topics.get(topic)
    return found is not None and found.error is None and bool(found.partitions)


def ensure_topic(admin: AdminClient, topic: str, partitions: int = DEFAULT_PARTITIONS, timeout: float = 30.0) -> bool:
    """Create the topic when it is missing; True when it was created."""
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    log.info("created topic %s with %d partitions", topic, partitions)
    return True


def topic_id(admin: AdminClient, topic: str, timeout: float = 10.0) -> str | None:
    """The broker's id of the topic (it changes when a topic is deleted and created again), or None."""
    try:
        description = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic].result(
            timeout=timeout
        )
    except KafkaException as exc:
        log.debug("cannot describe topic %s: %s", topic, exc)
        return None
    return str(description.topic_id) if description.topic_id is not None else None
