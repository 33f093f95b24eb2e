"""Publishing records to Kafka with kafka-python: per-partition batches, a bounded queue, drops
counted, and a broker outage ridden out with backoff.

kafka-python costs about as much per message whatever its size, so records are grouped: each
flow maps to one partition (from its flow id), records wait in a per-partition batch, and a full
or lingering batch becomes one message. The capture thread never waits for the broker: batches go
through a bounded queue to a sender thread, and when the queue is full the batch is dropped and
counted, so memory stays bounded however long the broker is away.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from antinex.logs import event
from capture.decode import FLOW_ID
from capture.encoding import CONTENT_TYPE_BATCH, CONTENT_TYPE_JSON, BatchCodec, record_to_json
from capture.schema import SCHEMA_VERSION

log = logging.getLogger("antinex.publisher")

MAX_MESSAGE_BYTES = 4 << 20


@dataclass
class KafkaSettings:
    """Where and how to publish; every field has a command-line flag."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "antinex.packets"
    partitions: int = 3
    batch_records: int = 500
    linger_ms: int = 25
    compression: str = "lz4"
    queue_batches: int = 256
    encoding: str = "batch"
    payload_bytes: int = 16
    client_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PublishCounts:
    """Running totals the sensor exports as metrics."""

    published: int = 0
    errors: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    queued_records: int = 0

    def drop(self, reason: str, records: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + records


def partition_of(flow_id: str, partitions: int) -> int:
    """The partition of a flow: every packet of one flow lands on the same partition."""
    return int(flow_id[:8] or "0", 16) % partitions


class KafkaPublisher:
    """Collects records per partition and hands full batches to a sender thread."""

    def __init__(
        self,
        settings: KafkaSettings,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.counts = PublishCounts()
        self._codec = BatchCodec(settings.payload_bytes)
        self._partitions = settings.partitions
        self._pending: dict[int, list[Sequence[Any]]] = {}
        self._oldest: dict[int, float] = {}
        self.due = math.inf
        self._queue: queue.Queue[tuple[int, list[Sequence[Any]]] | None] = queue.Queue(
            maxsize=settings.queue_batches
        )
        self._lock = threading.Lock()
        self._closed = False
        self._on_connected = on_connected
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._producer: Any = None
        self._sender = threading.Thread(target=self._send_loop, name="kafka-sender", daemon=True)
        self._sender.start()

    # Capture side ---------------------------------------------------------------------------

    def add(self, record: Sequence[Any]) -> None:
        flow_id = record[FLOW_ID]
        partition = partition_of(flow_id, self._partitions) if flow_id else 0
        batch = self._pending.get(partition)
        if batch is None:
            batch = self._pending[partition] = []
            started = self._oldest[partition] = time.monotonic()
            self.due = min(self.due, started + self.settings.linger_ms / 1000)
        batch.append(record)
        if len(batch) >= self.settings.batch_records:
            self._enqueue(partition)

    def tick(self) -> None:
        """Hand over batches that have waited longer than the linger time."""
        limit = time.monotonic() - self.settings.linger_ms / 1000
        for partition in [p for p, t in self._oldest.items() if t <= limit]:
            self._enqueue(partition)
        oldest = min(self._oldest.values(), default=math.inf)
        self.due = oldest + self.settings.linger_ms / 1000

    def _enqueue(self, partition: int, wait: float = 0.0) -> None:
        rows = self._pending.pop(partition)
        self._oldest.pop(partition, None)
        try:
            self._queue.put((partition, rows), block=wait > 0, timeout=wait or None)
        except queue.Full:
            with self._lock:
                self.counts.drop("queue_full", len(rows))
            return
        with self._lock:
            self.counts.queued_records += len(rows)

    def close(self, timeout: float = 30.0) -> None:
        """Publish what is pending, wait up to ``timeout`` seconds, count the rest as dropped.

        Without a broker connection the wait is short: nothing pending can be sent anyway.
        """
        if not self._connected.is_set():
            timeout = min(timeout, 5.0)
        deadline = time.monotonic() + timeout
        for partition in list(self._pending):
            self._enqueue(partition, wait=max(0.1, deadline - time.monotonic()))
        self._closing.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.1, deadline - time.monotonic()))
        self._sender.join(max(0.1, deadline - time.monotonic()))
        if self._producer is not None:
            waited = max(0.1, deadline - time.monotonic())
            try:
                self._producer.flush(timeout=waited)
            except Exception as err:  # kafka-python: KafkaTimeoutError when acks are late
                event(
                    log,
                    logging.WARNING,
                    "flush_timed_out",
                    waited_s=round(waited, 1),
                    unacknowledged_records=self.counts.queued_records,
                    error=type(err).__name__,
                )
            # kafka-python's close flushes once more and raises when that times out too.
            with contextlib.suppress(Exception):
                self._producer.close(timeout=1)
        leftover = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftover += len(item[1])
        with self._lock:
            if leftover:
                self.counts.drop("shutdown", leftover)
                self.counts.queued_records -= leftover
            # Sent, never acknowledged: whether the broker kept them is unknown. They count as
            # dropped, and acks or failures that still arrive are not counted a second time.
            if self.counts.queued_records > 0:
                self.counts.drop("unacknowledged", self.counts.queued_records)
                self.counts.queued_records = 0
            self._closed = True

    # Sender side ----------------------------------------------------------------------------

    def _send_loop(self) -> None:
        if not self._connect():
            return
        while True:
            item = self._queue.get()
            if item is None:
                return
            partition, rows = item
            self._send(partition, rows)

    def _connect(self) -> bool:
        """Connect and make sure the topic exists, retrying with backoff until closing."""
        delay = 0.5
        while not self._closing.is_set():
            try:
                self._producer = self._make_producer()
                self._partitions = self._ensure_topic()
            except Exception as err:  # kafka-python raises many kinds for an absent broker
                event(
                    log,
                    logging.WARNING,
                    "broker_unreachable",
                    bootstrap=self.settings.bootstrap_servers,
                    retry_in_s=delay,
                    error=type(err).__name__,
                )
                if self._producer is not None:
                    self._producer.close(timeout=0)
                    self._producer = None
                self._closing.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            event(
                log,
                logging.INFO,
                "broker_connected",
                bootstrap=self.settings.bootstrap_servers,
                topic=self.settings.topic,
                partitions=self._partitions,
            )
            self._connected.set()
            if self._on_connected:
                self._on_connected()
            return True
        return False

    def _make_producer(self) -> Any:
        from kafka import KafkaProducer

        s = self.settings
        return KafkaProducer(
            bootstrap_servers=s.bootstrap_servers.split(","),
            acks="all",
            # Records already wait in the per-partition batches for up to linger_ms; a second
            # wait inside the producer would only add to the latency.
            linger_ms=0,
            compression_type=None if s.compression == "none" else s.compression,
            max_request_size=MAX_MESSAGE_BYTES,
            batch_size=1 << 20,
            retries=2**31 - 1,
            delivery_timeout_ms=120_000,
            max_block_ms=10_000,
            bootstrap_timeout_ms=5_000,
            **s.client_options,
        )

    def _ensure_topic(self) -> int:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        s = self.settings
        admin = KafkaAdminClient(
            bootstrap_servers=s.bootstrap_servers.split(","),
            bootstrap_timeout_ms=5_000,
            **s.client_options,
        )
        try:
            if s.topic not in admin.list_topics():
                try:
                    admin.create_topics([NewTopic(s.topic, s.partitions, 1)])
                    event(
                        log, logging.INFO, "topic_created", topic=s.topic, partitions=s.partitions
                    )
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()
        deadline = time.monotonic() + 10
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = self._producer.partitions_for(s.topic)
            if not partitions:
                time.sleep(0.2)
        if not partitions:
            raise RuntimeError(f"topic {s.topic} has no partitions")
        return len(partitions)

    def _send(self, partition: int, rows: list[Sequence[Any]]) -> None:
        s = self.settings
        count = len(rows)
        if partition >= self._partitions:
            partition %= self._partitions
        try:
            if s.encoding == "batch":
                headers = [
                    ("content-type", CONTENT_TYPE_BATCH),
                    ("schema-version", str(SCHEMA_VERSION).encode()),
                    ("records", str(count).encode()),
                ]
                future = self._producer.send(
                    s.topic, value=self._codec.encode(rows), partition=partition, headers=headers
                )
                future.add_callback(self._delivered, count)
                future.add_errback(self._failed, count)
            else:
                headers = [("content-type", CONTENT_TYPE_JSON)]
                for row in rows:
                    future = self._producer.send(
                        s.topic,
                        key=row[FLOW_ID].encode(),
                        value=record_to_json(row),
                        partition=partition,
                        headers=headers,
                    )
                    future.add_callback(self._delivered, 1)
                    future.add_errback(self._failed, 1)
        except Exception as err:  # a send that cannot even be queued: count and go on
            self._failed(count, err)

    def _delivered(self, count: int, _metadata: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self.counts.published += count
            self.counts.queued_records -= count

    def _failed(self, count: int, err: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self.counts.errors += 1
            self.counts.drop("publish_failed", count)
            self.counts.queued_records -= count
        event(log, logging.ERROR, "publish_failed", records=count, error=str(err))
