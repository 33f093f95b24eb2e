"""What the processor writes to Kafka — alerts and dead letters — and the wait for their acks.

Offsets are committed only after everything a batch sent is acknowledged: ``settle`` flushes
the producer and reports whether any send since the last settle failed. Metrics count a message
when the broker acknowledged it, not when it was handed to the client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from antinex.logs import event
from stream_processor import alerts, metrics
from stream_processor.intake import DeadLetter
from stream_processor.windows import Raised

log = logging.getLogger("antinex.processor")

DEAD_LETTER_VALUE_LIMIT = 1 << 20


class Outbox:
    """Sends alerts and dead letters through one producer and tracks their outcome."""

    def __init__(
        self, producer: Any, alerts_topic: str, dead_letter_topic: str, window_s: float
    ) -> None:
        self.producer = producer
        self.alerts_topic = alerts_topic
        self.dead_letter_topic = dead_letter_topic
        self.window_s = window_s
        self.pending = 0
        self._failures = 0
        self._lock = threading.Lock()

    def send_alerts(self, raised: list[Raised], model_version: str, threshold: float) -> None:
        for item in raised:
            document = alerts.alert_document(item, model_version, threshold, self.window_s)
            self._send(
                "alert",
                self.alerts_topic,
                item.flow_id.encode(),
                alerts.encode(document),
                [("content-type", alerts.CONTENT_TYPE)],
                self._alert_acked,
                document["antinex"]["attack_type"],
            )

    def send_dead_letters(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            value = letter.value
            headers = [
                ("reason", letter.reason.encode()),
                ("detail", letter.detail.encode("utf-8", "replace")[:1000]),
                ("source-topic", letter.topic.encode()),
                ("source-partition", str(letter.partition).encode()),
                ("source-offset", str(letter.offset).encode()),
            ]
            if letter.row is not None:
                headers.append(("source-row", str(letter.row).encode()))
                headers.append(("content-type", b"application/json"))
            if len(value) > DEAD_LETTER_VALUE_LIMIT:
                value = value[:DEAD_LETTER_VALUE_LIMIT]
                headers.append(("truncated", b"1"))
            self._send(
                "dead_letter",
                self.dead_letter_topic,
                letter.key,
                value,
                headers,
                self._dead_letter_acked,
                letter.reason,
            )

    def settle(self, timeout_s: float | None = None) -> bool:
        """Wait until every send so far is acknowledged or failed; True when none failed since
        the previous settle. Raises KafkaTimeoutError when ``timeout_s`` passes first."""
        if self.pending:
            self.producer.flush(timeout=timeout_s)
            self.pending = 0
        with self._lock:
            failed, self._failures = self._failures, 0
        return failed == 0

    def close(self, timeout_s: float = 5.0) -> None:
        self.producer.close(timeout=timeout_s)

    def _send(
        self,
        kind: str,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        acked: Callable[[str, Any], None],
        label: str,
    ) -> None:
        from kafka.errors import KafkaError

        try:
            future = self.producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as err:  # no metadata or buffer space within max_block_ms: broker away
            self._failed(kind, err)
            return
        future.add_callback(acked, label)
        future.add_errback(self._failed, kind)
        self.pending += 1

    def _alert_acked(self, attack_type: str, _metadata: Any) -> None:
        metrics.ALERTS_PUBLISHED.labels(attack_type=attack_type).inc()

    def _dead_letter_acked(self, reason: str, _metadata: Any) -> None:
        metrics.DEAD_LETTERED.labels(reason=reason).inc()

    def _failed(self, kind: str, err: Any) -> None:
        metrics.PUBLISH_FAILURES.inc()
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        if first:  # one event per batch that failed, not one per message
            event(log, logging.ERROR, "publish_failed", kind=kind, error=str(err))
