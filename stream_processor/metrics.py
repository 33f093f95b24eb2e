"""The stream processor's Prometheus metrics, including histograms fed a whole batch at a time.

Per-record histograms (attack scores, capture-to-verdict latency) would cost a Python call per
record through ``Histogram.observe``; at 150,000 records/s that alone eats a core. They are kept
as numpy bucket counts instead, filled with one vectorised call per batch and exported through a
custom collector in the same text format as any other histogram.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class BulkHistogram:
    """A Prometheus histogram observed with numpy arrays: one call per batch, not per value."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        """Count every value of ``values`` into its bucket (upper bounds are inclusive)."""
        if values.size == 0:
            return
        slots = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(slots, minlength=len(self._counts))
        total = float(values.sum(dtype=np.float64))
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        buckets = [
            (floatToGoString(bound), float(count))
            for bound, count in zip(self._bounds, cumulative[:-1], strict=True)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


RECORDS_CONSUMED = Counter(
    "antinex_processor_records_consumed", "Packet records read from the packets topic"
)
RECORDS_SCORED = Counter(
    "antinex_processor_records_scored", "Records scored by the model, by verdict", ["verdict"]
)
ALERTS_PUBLISHED = Counter(
    "antinex_processor_alerts_published",
    "Alerts acknowledged by the broker on the alerts topic, by the model's attack type",
    ["attack_type"],
)
ALERTS_SUPPRESSED = Counter(
    "antinex_processor_alerts_suppressed",
    "Attack records folded into a flow's open alert window instead of raising a new alert",
)
DEAD_LETTERED = Counter(
    "antinex_processor_records_dead_lettered",
    "Records or whole messages sent to the dead-letter topic, by reason",
    ["reason"],
)
DUPLICATES = Counter(
    "antinex_processor_duplicates",
    "Records scored again after a restart or rebalance (at or below a partition's scored mark)",
)
PUBLISH_FAILURES = Counter(
    "antinex_processor_publish_failures", "Alert or dead-letter messages the broker did not take"
)
COMMIT_FAILURES = Counter(
    "antinex_processor_commit_failures", "Offset commits that failed; their records come again"
)
POLL_FAILURES = Counter(
    "antinex_processor_poll_failures",
    "Consumer polls that failed with a retriable broker error and were retried after a wait",
)
BATCH_RECORDS = Histogram(
    "antinex_processor_batch_records",
    "Records per scored batch (one consumer poll)",
    buckets=(100, 500, 1000, 2500, 5000, 10_000, 20_000, 40_000, 80_000, 160_000),
)
SCORE_SECONDS = Histogram(
    "antinex_processor_score_seconds",
    "Time to build the feature matrix and score one batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
CAPTURE_TO_VERDICT = BulkHistogram(
    "antinex_processor_capture_to_verdict_seconds",
    "Time from a record's capture timestamp (ts_ns) to its verdict",
    buckets=(
        0.001,
        0.002,
        0.005,
        0.01,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        0.75,
        1.0,
        2.0,
        5.0,
        10.0,
        30.0,
        60.0,
    ),
)
SCORE = BulkHistogram(
    "antinex_processor_score",
    "Attack scores of scored records (0 benign .. 1 attack)",
    buckets=tuple(round(0.05 * i, 2) for i in range(1, 21)),
)
CONSUMER_LAG = Gauge(
    "antinex_processor_consumer_lag",
    "Offsets (messages, each a batch of records) between the position and the partition end",
    ["partition"],
)
MODEL_INFO = Info("antinex_processor_model", "The model version being scored with")
MODEL_RELOADS = Counter(
    "antinex_processor_model_reloads", "Model versions found on disk, by outcome", ["result"]
)
ALERT_WINDOWS = Gauge(
    "antinex_processor_alert_windows", "Flows with an open alert window (bounded by --max-flows)"
)
