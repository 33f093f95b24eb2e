"""The sensor loop: frames from a source, decoded into records, handed to an output, counted."""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from antinex.heap import freeze_startup_heap
from antinex.logs import event
from capture import metrics
from capture.context import ContextTracker
from capture.decode import DECODE_ERROR, FrameDecoder, Undecodable
from capture.sources import LiveSource, PcapSource

log = logging.getLogger("antinex.sensor")

_CHUNK = 1024  # packets between metric updates and limit checks
_FLUSH_S = 0.05  # longest time between them when packets trickle in


class Output(Protocol):
    # Monotonic time by which ``tick`` must run (a batch's linger ends); inf when nothing waits.
    due: float

    def add(self, record: Any) -> None: ...
    def tick(self) -> None: ...
    def close(self, timeout: float = ...) -> None: ...


@dataclass
class SensorReport:
    """What one run did, for the closing log line and the tests."""

    captured: int = 0
    decoded: int = 0
    partial: int = 0
    undecodable: Counter[str] = field(default_factory=Counter)
    published: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    kernel_drops: int = 0
    seconds: float = 0.0
    source_note: str = ""


class Sensor:
    """Runs one source into one output until the source ends, a limit is hit or a signal."""

    def __init__(
        self,
        source: PcapSource | LiveSource,
        output: Output,
        payload_bytes: int = 16,
        limit: int = 0,
        duration: float = 0.0,
        context: ContextTracker | None = None,
    ) -> None:
        self.source = source
        self.output = output
        self.decoder = FrameDecoder(source.name, payload_bytes)
        self.context = context
        self.limit = limit
        self.duration = duration
        self.report = SensorReport()
        self._stop = False
        self._exported: dict[int, int] = {}

    def stop(self, *_: Any) -> None:
        self._stop = True
        if isinstance(self.source, LiveSource):
            self.source.stop()

    def run(self) -> SensorReport:
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        freeze_startup_heap()
        try:
            self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._finish()
        return self.report

    def _loop(self) -> None:
        decode = self.decoder.decode
        add = self.output.add
        update_context = self.context.update if self.context else None
        clock = time.monotonic
        output = self.output
        report = self.report
        undecodable = report.undecodable
        started = time.monotonic()
        deadline = started + self.duration if self.duration else float("inf")
        limit = self.limit or -1
        flushed = clock()
        decode_s = 0.0
        in_chunk = partial = 0
        last_ts = 0
        event(
            log,
            logging.INFO,
            "sensor_started",
            source=self.source.name,
            limit=self.limit,
            duration_s=self.duration,
        )
        for frame in self.source:
            if frame is not None:
                report.captured += 1
                in_chunk += 1
                last_ts = frame.ts_ns
                began = clock()
                try:
                    record = decode(*frame)
                except Undecodable as err:
                    undecodable[err.reason] += 1
                else:
                    if record[DECODE_ERROR]:
                        partial += 1
                    if update_context:
                        update_context(record)
                    add(record)
                    report.decoded += 1
                now = clock()
                decode_s += now - began
                if self._stop or report.captured == limit:
                    break
                if now >= output.due:  # a batch's linger is over
                    output.tick()
                if in_chunk < _CHUNK and now - flushed < _FLUSH_S:
                    continue
            # A full chunk, a pause in the input, or time to flush: linger, metrics, limits.
            self.output.tick()
            self._update_metrics(in_chunk, partial, decode_s, last_ts)
            in_chunk = partial = 0
            decode_s = 0.0
            flushed = clock()
            if self._stop or time.monotonic() >= deadline:
                break
        self._update_metrics(in_chunk, partial, decode_s, last_ts)
        report.seconds = time.monotonic() - started

    def _update_metrics(self, packets: int, partial: int, decode_s: float, last_ts: int) -> None:
        if packets:
            metrics.EXTRACT_SECONDS.observe(decode_s / packets)
            metrics.LAST_PACKET.set(last_ts / 1e9)
            self.report.partial += partial
        if self.context is not None:
            for table, entries in self.context.sizes().items():
                metrics.CONTEXT_ENTRIES.labels(table).set(entries)
        report = self.report
        self._advance(metrics.PACKETS_CAPTURED, report.captured)
        self._advance(metrics.PACKETS_DECODED, report.decoded)
        self._advance(metrics.PACKETS_PARTIAL, report.partial)
        for reason, count in report.undecodable.items():
            self._advance(metrics.PACKETS_UNDECODABLE.labels(reason), count)
        self._export_output_counts()

    def _export_output_counts(self) -> None:
        counts = getattr(self.output, "counts", None)
        if counts is not None:
            published, dropped = counts.published, dict(counts.dropped)
            self._advance(metrics.PUBLISH_ERRORS, counts.errors)
            metrics.QUEUE_DEPTH.set(counts.queued_records)
        else:
            published, dropped = getattr(self.output, "written", 0), {}
        self._advance(metrics.RECORDS_PUBLISHED, published)
        for reason, count in dropped.items():
            self._advance(metrics.RECORDS_DROPPED.labels(reason), count)
        if isinstance(self.source, LiveSource):
            self._advance(metrics.KERNEL_DROPS, self.source.read_kernel_drops())

    def _advance(self, counter: Any, total: int) -> None:
        """Move a Prometheus counter up to ``total`` (counters only take increments)."""
        delta = total - self._exported.get(id(counter), 0)
        if delta > 0:
            counter.inc(delta)
            self._exported[id(counter)] = total

    def _finish(self) -> None:
        self.output.close()
        self._export_output_counts()
        report = self.report
        counts = getattr(self.output, "counts", None)
        report.published = counts.published if counts else getattr(self.output, "written", 0)
        report.dropped = dict(counts.dropped) if counts else {}
        report.kernel_drops = self.source.stats.kernel_drops
        report.source_note = self.source.stats.end_reason or "; ".join(self.source.stats.notes)
        level = logging.WARNING if report.undecodable or report.dropped else logging.INFO
        event(
            log,
            level,
            "sensor_stopped",
            captured=report.captured,
            decoded=report.decoded,
            partial=report.partial,
            undecodable=sum(report.undecodable.values()),
            undecodable_by_reason=dict(report.undecodable) or None,
            published=report.published,
            dropped=report.dropped or None,
            kernel_drops=report.kernel_drops,
            seconds=round(report.seconds, 3),
            pkt_per_s=round(report.captured / report.seconds) if report.seconds else None,
            source_note=report.source_note or None,
        )
