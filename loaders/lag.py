"""Consumer lag as the loaders count it: per partition, the broker's end offset minus the next offset
stored in Postgres (``raw.kafka_offsets``).

Postgres is the truth about what is in raw: the consumer stores its offsets in the transaction of the rows
(loaders/consume.py); the offsets it also commits to Kafka are a copy for lag tools. So lag is read from
Postgres and the broker, never from the group's Kafka offsets. The ingest service exposes it as a metric
(loaders/serve.py) and the monitors check it against thresholds (monitors/checks.py).

Where the consumer goes on, per partition: the stored offset; the earliest offset when nothing is
stored or when the topic was recreated since (its topic id changed), as the consumer does on assignment.

Note on the embedded broker (Tansu): the end offset it reports is the first offset of the partition's
last record batch, not the offset after it, so its lag is low by up to one producer batch per partition
(a drained topic reads 0 either way: the lag of a partition is never below 0). Apache Kafka reports the
true end offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from runtime.kafka import admin_client, client_config, topic_id
from runtime.settings import Settings

# A group id is required to make a Consumer; this one never subscribes, so it never joins a group.
PROBE_GROUP = "telemed-lag-probe"

STORED_OFFSETS_SQL = """
select consumer_group, topic, partition, next_offset, topic_id
from raw.kafka_offsets
order by consumer_group, topic, partition
"""


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    end_offset: int
    next_offset: int  # where the loader goes on (see the module docstring)
    stored: bool  # False: nothing stored, or stored for a topic since recreated

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.next_offset)


@dataclass
class TopicLag:
    group: str
    topic: str
    partitions: list[PartitionLag] = field(default_factory=list)
    # Why the lag could not be measured (the topic is gone from the broker), else None.
    missing: str | None = None

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)


StoredOffsets = dict[tuple[str, str], dict[int, tuple[int, str | None]]]


def stored_offsets(cur) -> StoredOffsets:
    """Every (consumer group, topic) of raw.kafka_offsets: partition -> (next offset, topic id)."""
    cur.execute(STORED_OFFSETS_SQL)
    found: StoredOffsets = {}
    for group, topic, partition, next_offset, stored_topic_id in cur.fetchall():
        found.setdefault((group, topic), {})[partition] = (next_offset, stored_topic_id)
    return found


class LagProbe:
    """Asks the broker for the watermarks of a topic's partitions; ``measure`` combines them with what
    Postgres stored. Every broker call is bounded by ``timeout`` seconds; an unreachable broker raises
    confluent_kafka.KafkaException."""

    def __init__(self, settings: Settings, timeout: float = 5.0):
        self.timeout = timeout
        self.admin = admin_client(settings)
        self.consumer = Consumer(
            client_config(
                settings,
                **{"group.id": PROBE_GROUP, "enable.auto.commit": False, "allow.auto.create.topics": False},
            )
        )

    def measure(self, group: str, topic: str, stored: dict[int, tuple[int, str | None]]) -> TopicLag:
        result = TopicLag(group, topic)
        # Asked through the consumer, which never creates topics: a metadata request for one topic through
        # the admin client creates a missing topic on a broker that creates topics on demand (Tansu does).
        metadata = self.consumer.list_topics(topic=topic, timeout=self.timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            result.missing = f"topic {topic} does not exist on the broker"
            return result
        current_id = topic_id(self.admin, topic, timeout=self.timeout)
        for partition in sorted(found.partitions):
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.timeout, cached=False
            )
            offset, stored_id = stored.get(partition, (None, None))
            recreated = offset is not None and stored_id and current_id and stored_id != current_id
            if offset is None or recreated:
                result.partitions.append(PartitionLag(partition, high, low, stored=False))
            else:
                result.partitions.append(PartitionLag(partition, high, offset, stored=True))
        return result

    def close(self) -> None:
        self.consumer.close()
