"""The ingest service's Prometheus metrics (loaders/serve.py), every name prefixed ``telemed_``.

Two sources, one endpoint:

- What only a loader process knows (rows committed, how long each batch's transaction took, retries)
  is counted in the child process that loads, with prometheus-client's multiprocess mode: each child
  writes its values to memory-mapped files in a folder the parent made (PROMETHEUS_MULTIPROC_DIR, set
  in the children's environment only), and the parent merges them at every scrape. Counters keep the
  counts of a child that died and was restarted, so they never go back.
- What is true whatever any process remembers (consumer lag, the supervisor's view of its children) is
  computed by the parent at scrape time: lag from the broker's end offsets and the offsets stored in
  Postgres (loaders/lag.py), so it is right even while the consumer is down or restarting.

Rates are left to the scraper (``rate(telemed_rows_loaded_total[1m])`` is rows loaded per second), as
Prometheus counters mean to be.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from loaders.runs import RunCounts

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_METRICS_PORT = 9108
METRICS_PORT_ENV = "TELEMED_METRICS_PORT"

# Seconds a batch's Postgres transaction takes, retries included: small batches of a quiet stream take
# milliseconds, a 50k-event batch of a backlog about a second.
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

LAST_COMMIT = "telemed_last_commit_timestamp_seconds"


class LoaderMetrics:
    """A loader child's metrics (multiprocess mode: the parent's endpoint serves them)."""

    def __init__(self, loader: str):
        if not os.environ.get(MULTIPROC_ENV):
            raise RuntimeError(f"{MULTIPROC_ENV} is not set: a loader child is started by `python -m loaders serve`")
        self.loader = loader
        labels = ["loader"]
        # registry=None: in multiprocess mode the values live in the shared files, read by the parent.
        self.loaded = Counter(
            "telemed_rows_loaded", "Rows committed to raw (events or feedback forms)", labels, registry=None
        ).labels(loader)
        self.rejected = Counter(
            "telemed_rows_rejected", "Inputs committed to a _rejected table with a reason", labels, registry=None
        ).labels(loader)
        self.duplicates = Counter(
            "telemed_rows_duplicate", "Inputs skipped as already loaded (exactly once)", labels, registry=None
        ).labels(loader)
        received = Counter(
            "telemed_messages_received", "Kafka messages polled (committed or still in hand)", labels, registry=None
        )
        self.received = received.labels(loader) if loader == "consume" else None
        self.batches = Histogram(
            "telemed_batch_commit_seconds",
            "Seconds from the start of a batch's Postgres transaction to its commit, retries included",
            labels,
            buckets=COMMIT_BUCKETS,
            registry=None,
        ).labels(loader)
        self.last_commit = Gauge(
            LAST_COMMIT,
            "Unix time of the last batch committed to raw",
            labels,
            multiprocess_mode="max",
            registry=None,
        ).labels(loader)
        self.retries = Counter(
            "telemed_retries",
            "Waits before retrying an unreachable Postgres or broker (loaders/retry.py)",
            labels,
            registry=None,
        ).labels(loader)
        # Every series is shown from the start: counters at 0; the last commit stays 0 (never) until the
        # first batch, and the endpoint leaves a 0 out rather than serve a time 56 years ago.

    def batch_committed(self, counts: RunCounts, seconds: float) -> None:
        self.loaded.inc(counts.loaded)
        self.rejected.inc(counts.rejected)
        self.duplicates.inc(counts.duplicates)
        self.batches.observe(seconds)
        self.last_commit.set(time.time())

    def messages_received(self, count: int) -> None:
        if self.received is not None:
            self.received.inc(count)

    def count_retries(self) -> logging.Handler:
        """Count every retry the loader announces: loaders/retry.py's Backoff logs one WARNING per wait,
        and that logger says nothing else, so counting its warnings counts the retries without a hook
        inside the backoff. Returns the handler (already installed)."""
        handler = _RetryCounter(self.retries)
        logging.getLogger("loaders.retry").addHandler(handler)
        return handler


class _RetryCounter(logging.Handler):
    def __init__(self, counter):
        super().__init__(level=logging.WARNING)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self.counter.inc()


class ServiceCollector:
    """What the parent's endpoint serves: the children's merged metrics, the seconds since each loader's
    last commit (from their last-commit times), consumer lag per partition and the supervisor's
    children. ``lag`` returns (group, topic, [(partition, end offset, next offset, lag)]) or raises;
    ``children`` returns (name, up, restarts) of each child."""

    def __init__(
        self,
        multiproc_dir: str,
        lag: Callable[[], tuple[str, str, list[tuple[int, int, int, int]]]],
        children: Callable[[], Iterable[tuple[str, bool, int]]],
    ):
        self.children_metrics = MultiProcessCollector(None, path=multiproc_dir)
        self.lag = lag
        self.children = children
        self._lock = threading.Lock()  # the HTTP server answers scrapes in threads; the probe is not shared

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        for family in self.children_metrics.collect():
            if family.name == LAST_COMMIT:
                # 0 is a child's initial value: no batch committed yet, so no series (absent, not 1970).
                family.samples = [sample for sample in family.samples if sample.value > 0]
                since = GaugeMetricFamily(
                    "telemed_seconds_since_last_commit",
                    "Seconds since the loader's last batch committed to raw (absent before the first)",
                    labels=["loader"],
                )
                for sample in family.samples:
                    since.add_metric([sample.labels["loader"]], max(0.0, now - sample.value))
                yield family
                yield since
            else:
                yield family
        yield from self._lag_families()
        up = GaugeMetricFamily("telemed_child_up", "1 while the supervised child process runs", labels=["child"])
        restarts = CounterMetricFamily(
            "telemed_child_restarts", "Restarts of a supervised child after it died", labels=["child"]
        )
        for name, running, count in self.children():
            up.add_metric([name], 1.0 if running else 0.0)
            restarts.add_metric([name], count)
        yield up
        yield restarts

    def _lag_families(self) -> Iterator[Metric]:
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily(
            "telemed_consumer_lag_messages",
            "Broker end offset minus the next offset stored in Postgres (raw.kafka_offsets), per partition",
            labels=labels,
        )
        end = GaugeMetricFamily(
            "telemed_consumer_end_offset", "The broker's end offset (high watermark)", labels=labels
        )
        stored = GaugeMetricFamily(
            "telemed_consumer_next_offset", "Where the loader goes on: the offset stored in Postgres", labels=labels
        )
        success = GaugeMetricFamily(
            "telemed_consumer_lag_probe_success", "1 when the last lag reading reached the broker and Postgres"
        )
        with self._lock:
            try:
                group, topic, partitions = self.lag()
            except Exception as exc:  # noqa: BLE001 - a scrape must answer: say the reading failed
                log.warning("consumer lag unavailable: %s", exc)
                success.add_metric([], 0.0)
                yield success
                return
        for partition, end_offset, next_offset, partition_lag in partitions:
            key = [group, topic, str(partition)]
            lag.add_metric(key, partition_lag)
            end.add_metric(key, end_offset)
            stored.add_metric(key, next_offset)
        success.add_metric([], 1.0)
        yield from (lag, end, stored, success)


def service_registry(collector: ServiceCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
