"""The processing loop: poll a batch, score it, publish its alerts and dead letters, wait for the
broker's acks, commit its offsets — then the next batch.

Delivery is at least once. A batch's offsets are committed only after its alerts and dead
letters are acknowledged, and only then is the next poll made; so when a rebalance revokes
partitions (which kafka-python does inside ``poll``) no batch is in flight, and the revoke
listener only closes the alert windows of the partitions that leave. A batch whose sends fail
is not committed: its partitions are rewound to the batch's first offsets and it is scored
again. Records re-scored after a crash or rebalance are counted as duplicates (see offsets.py).

A broker that restarts or becomes unreachable is waited out: kafka-python's ``poll`` raises a
retriable error (KafkaConnectionError) when its lookup of the group coordinator and the metadata
refresh after it both find the broker gone; such a poll is retried with backoff, and commits
that failed meanwhile are repeated (see commits.py).

SIGTERM and SIGINT end the loop after the batch in hand is committed; open alert windows are
summarised, the consumer leaves its group and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antinex.heap import freeze_startup_heap
from antinex.logs import event
from antinex.options import RuntimeFailure
from stream_processor import metrics
from stream_processor.clients import PollBackoff
from stream_processor.commits import Commits
from stream_processor.intake import MessageReader
from stream_processor.offsets import ScoredMarks
from stream_processor.outbox import Outbox
from stream_processor.reload import ModelWatcher, publish_model_info
from stream_processor.verdicts import Scorer
from stream_processor.windows import AlertWindows

log = logging.getLogger("antinex.processor")

PROGRESS_EVERY_S = 30.0
LAG_EVERY_S = 1.0
POLL_TIMEOUT_MS = 500
END_OFFSETS_TIMEOUT_MS = 10_000


@dataclass
class LoopSettings:
    """What the loop needs besides its Kafka clients; each field has a flag."""

    model_path: Path
    state_dir: Path
    alert_window_s: float = 60.0
    max_flows: int = 100_000
    reload_check_s: float = 5.0
    top_features: int = 5
    shutdown_timeout_s: float = 30.0


class Processor:
    """Runs batches until stopped; owns the consumer, the outbox and the scoring state."""

    def __init__(
        self,
        settings: LoopSettings,
        model: Any,
        consumer_factory: Any,
        outbox: Outbox,
        marks: ScoredMarks,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.scorer = Scorer(model, settings.top_features)
        self.reader = MessageReader(self.scorer.columns)
        self.windows = AlertWindows(settings.alert_window_s, settings.max_flows)
        self.watcher = ModelWatcher(settings.model_path, settings.reload_check_s)
        self.outbox = outbox
        self.marks = marks
        self.stop = stop or threading.Event()
        self._newly_assigned: set[Any] = set()
        self._totals = {"consumed": 0, "scored": 0, "attacks": 0, "alerts": 0, "duplicates": 0}
        self._next_lag = 0.0
        self._lag_partitions: set[int] = set()
        self._poll_backoff = PollBackoff()
        self._next_progress = time.monotonic() + PROGRESS_EVERY_S
        self.consumer = consumer_factory(_listener(self))
        self.commits = Commits(self.consumer)

    # The loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Process until SIGTERM/SIGINT (or ``stop`` is set); return the exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        publish_model_info(self.scorer.model)
        freeze_startup_heap()
        try:
            while not self.stop.is_set():
                polled = self._poll()
                if not self._take_assignment():
                    self._put_back(polled)  # scored once the marks of their partitions load
                    polled = {}
                if polled:
                    self.process(polled)
                self._between_batches()
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def process(self, polled: dict[Any, list[Any]]) -> bool:
        """Score, publish and commit one poll's messages; False when it must be redone."""
        messages = [m for records in polled.values() for m in records]
        intake = self.reader.read(messages)
        metrics.RECORDS_CONSUMED.inc(intake.consumed)
        duplicates = sum(
            size
            for (partition, offset, size) in intake.sizes
            if self.marks.is_duplicate(partition, offset)
        )
        if duplicates:
            metrics.DUPLICATES.inc(duplicates)

        verdicts = self.scorer.score(intake.chunks)
        attacks = verdicts.attacks
        metrics.BATCH_RECORDS.observe(len(verdicts.scores))
        metrics.RECORDS_SCORED.labels(verdict="attack").inc(attacks)
        metrics.RECORDS_SCORED.labels(verdict="benign").inc(len(verdicts.scores) - attacks)
        raised = self.scorer.sightings(verdicts, self.windows)
        model = self.scorer.model
        self.outbox.send_alerts(raised, model.version, model.manifest.threshold)
        self.outbox.send_dead_letters(intake.dead_letters)

        last = {tp: records[-1].offset for tp, records in polled.items() if records}
        for tp, offset in last.items():
            self.marks.advance(tp.partition, offset)
        if not self.outbox.settle():
            self._rewind(polled)
            return False
        self.commits.acknowledged(last)
        self._count(intake.consumed, len(verdicts.scores), attacks, len(raised), duplicates)
        return True

    # Steps ------------------------------------------------------------------------------------

    def _poll(self) -> dict[Any, list[Any]]:
        """One consumer poll; a retriable error (the broker restarting or unreachable) is waited
        out with backoff and yields no records."""
        from kafka.errors import KafkaError

        try:
            polled: dict[Any, list[Any]] = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except KafkaError as err:
            if not err.retriable:
                raise
            self.stop.wait(self._poll_backoff.failed(err))
            return {}
        self._poll_backoff.succeeded()
        return polled

    def _put_back(self, polled: dict[Any, list[Any]]) -> None:
        """Seek to the first offsets of ``polled`` so that its records are fetched again."""
        for tp, records in polled.items():
            if records:
                self.consumer.seek(tp, records[0].offset)

    def _rewind(self, polled: dict[Any, list[Any]]) -> None:
        self._put_back(polled)
        event(
            log,
            logging.ERROR,
            "batch_not_committed",
            reason="alerts or dead letters were not acknowledged",
            partitions=len(polled),
            retry_in_s=1.0,
        )
        self.stop.wait(1.0)

    def _between_batches(self) -> None:
        summaries = self.windows.expire()
        if summaries:
            model = self.scorer.model
            self.outbox.send_alerts(summaries, model.version, model.manifest.threshold)
            self._totals["alerts"] += len(summaries)
        metrics.ALERT_WINDOWS.set(len(self.windows))
        new_model = self.watcher.poll(self.scorer.model.version)
        if new_model is not None:
            self.scorer.use(new_model)
            self.reader.columns = self.scorer.columns
            publish_model_info(new_model)
        now = time.monotonic()
        self.commits.retry(now)
        if now >= self._next_lag:
            self._next_lag = now + LAG_EVERY_S
            self._update_lag()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_EVERY_S
            event(log, logging.INFO, "processor_progress", **self._totals)

    def _update_lag(self) -> None:
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = self.consumer.position(tp, timeout_ms=100)
            except Exception:  # position unknown yet (no committed offset fetched): skip
                continue
            if position is not None:
                metrics.CONSUMER_LAG.labels(partition=str(tp.partition)).set(end - position)
                self._lag_partitions.add(tp.partition)

    def _take_assignment(self) -> bool:
        """Load the scored marks of partitions assigned during the last poll (outside the
        listener: it runs on kafka-python's IO loop, where blocking calls are not allowed).
        False when the broker did not give their end offsets; the next call tries again."""
        from kafka.errors import KafkaError

        if not self._newly_assigned:
            return True
        assigned = list(self._newly_assigned)
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=END_OFFSETS_TIMEOUT_MS)
        except KafkaError as err:
            if not err.retriable:
                raise
            event(
                log,
                logging.WARNING,
                "scored_marks_not_loaded",
                partitions=sorted(tp.partition for tp in assigned),
                error=type(err).__name__,
            )
            self.stop.wait(1.0)
            return False
        self._newly_assigned.difference_update(assigned)
        for tp in assigned:
            self.marks.load(tp.partition, ends.get(tp))
        return True

    def _count(self, consumed: int, scored: int, attacks: int, alerts: int, dups: int) -> None:
        totals = self._totals
        totals["consumed"] += consumed
        totals["scored"] += scored
        totals["attacks"] += attacks
        totals["alerts"] += alerts
        totals["duplicates"] += dups

    # Rebalances and shutdown ----------------------------------------------------------------

    def on_revoked(self, partitions: Iterable[Any]) -> None:
        """Close the alert windows of the partitions that leave (no batch is in flight here)."""
        partitions = list(partitions)
        numbers = sorted(tp.partition for tp in partitions)
        summaries = self.windows.drain(numbers)
        if summaries:
            model = self.scorer.model
            self.outbox.send_alerts(summaries, model.version, model.manifest.threshold)
        self.commits.forget(partitions)
        for number in numbers:
            self.marks.forget(number)
            if number in self._lag_partitions:
                self._lag_partitions.discard(number)
                metrics.CONSUMER_LAG.remove(str(number))
        self._newly_assigned.difference_update(partitions)
        event(log, logging.INFO, "partitions_revoked", partitions=numbers, summaries=len(summaries))

    def on_assigned(self, partitions: Iterable[Any]) -> None:
        partitions = list(partitions)
        self._newly_assigned.update(partitions)
        numbers = sorted(tp.partition for tp in partitions)
        event(log, logging.INFO, "partitions_assigned", partitions=numbers)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop.set()
        event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)

    def _shutdown(self) -> int:
        from kafka.errors import KafkaTimeoutError

        summaries = self.windows.drain()
        if summaries:
            model = self.scorer.model
            self.outbox.send_alerts(summaries, model.version, model.manifest.threshold)
            self._totals["alerts"] += len(summaries)
        try:
            acked = self.outbox.settle(timeout_s=self.settings.shutdown_timeout_s)
        except KafkaTimeoutError:
            acked = False
        self.commits.commit_and_wait()
        self.consumer.close(autocommit=False)
        self.marks.close()
        self.outbox.close()
        event(log, logging.INFO, "processor_stopped", **self._totals)
        if not acked:
            raise RuntimeFailure(
                f"window summaries were not acknowledged by the broker within "
                f"{self.settings.shutdown_timeout_s:.0f} s and are lost"
            )
        return 0


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _listener(processor: Processor) -> Any:
    """A kafka-python rebalance listener that hands the events to ``processor``."""
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            processor.on_revoked(revoked)

        def on_partitions_assigned(self, assigned: Any) -> None:
            processor.on_assigned(assigned)

        def on_partitions_lost(self, lost: Any) -> None:
            processor.on_revoked(lost)

    return Listener()
