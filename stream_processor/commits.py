"""Offset commits of the processor: the offset after the last acknowledged batch of each owned
partition, committed without waiting, and committed again after a failure.

Every commit carries every owned partition, not only those of the batch just acknowledged, so
one good commit covers all the failed ones before it. Commits fail while the broker restarts
(NotCoordinatorError and its kin); the latest offsets are committed again every ``retry_s``
until one gets through, so the group's offsets catch up even when no new batch arrives. If the
member is dropped from the group first (it did not reach the restarted broker within its session
timeout), the partitions are re-read from the last good commit: duplicates, counted as such.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from antinex.logs import event
from stream_processor import metrics

log = logging.getLogger("antinex.processor")


class Commits:
    """The commits of one consumer in a group, offsets committed by hand."""

    def __init__(self, consumer: Any, retry_s: float = 1.0) -> None:
        self.consumer = consumer
        self.retry_s = retry_s
        self.latest: dict[Any, Any] = {}  # TopicPartition -> OffsetAndMetadata
        self._attempts = 0
        self._last_failed = 0  # attempt numbers: a failure matters until a later attempt succeeds
        self._last_good = 0
        self._next_retry = 0.0

    @property
    def owed(self) -> bool:
        """Whether the broker may hold older offsets than ``latest``."""
        return self._last_failed > self._last_good

    def acknowledged(self, last: dict[Any, int]) -> None:
        """Commit the offsets after ``last``: the highest offset per partition of a batch whose
        alerts and dead letters the broker acknowledged."""
        from kafka.structs import OffsetAndMetadata

        for tp, offset in last.items():
            self.latest[tp] = OffsetAndMetadata(offset + 1, "", -1)
        self._send()

    def retry(self, now: float) -> None:
        """Commit again if the last commits failed and ``retry_s`` passed since the last try."""
        if self.owed and now >= self._next_retry:
            self._next_retry = now + self.retry_s
            self._send()

    def forget(self, partitions: Iterable[Any]) -> None:
        """Drop partitions that left: their next owner commits them."""
        for tp in partitions:
            self.latest.pop(tp, None)

    def commit_and_wait(self) -> None:
        """Commit ``latest`` and wait: at shutdown, after any commits without waiting."""
        from kafka.errors import KafkaError

        if not self.latest:
            return
        try:
            self.consumer.commit(dict(self.latest))
        except KafkaError as err:  # the group moved on: the next owner re-reads (duplicates)
            metrics.COMMIT_FAILURES.inc()
            event(log, logging.WARNING, "commit_failed", error=type(err).__name__, detail=str(err))

    def _send(self) -> None:
        if not self.latest:
            return
        self._attempts += 1
        attempt = self._attempts
        self.consumer.commit_async(
            dict(self.latest),
            callback=lambda _offsets, response: self._done(attempt, response),
        )

    def _done(self, attempt: int, response: Any) -> None:
        if not isinstance(response, Exception):
            self._last_good = max(self._last_good, attempt)
            return
        metrics.COMMIT_FAILURES.inc()
        if not self.owed:  # one event per run of failures, not one per retry
            event(
                log,
                logging.WARNING,
                "commit_failed",
                error=type(response).__name__,
                retry_in_s=self.retry_s,
            )
        self._last_failed = max(self._last_failed, attempt)
