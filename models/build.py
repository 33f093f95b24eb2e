"""``antinex dataset build``: captures (pcap or sensor JSON lines) decoded as the sensor does,
labelled by rules, written as one dataset file, with a progress line on standard error."""

from __future__ import annotations

import gzip
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from antinex.logs import event
from antinex.options import UsageError
from capture.schema import NAMES
from models.dataset import DatasetWriter, records_to_columns
from models.labels import LabelRule, apply_rules
from models.progress import Progress

log = logging.getLogger("antinex.models")

_CHUNK_ROWS = 20_000
_PCAP_RECORD_HEADER = 16

_CAPLEN = NAMES.index("frame_caplen")


class _LabellingSink:
    """The sensor's output during ``dataset build``: labels chunks of records and writes them.

    ``share_done`` tells the progress bar how far through its input the build is.
    """

    due = math.inf  # chunks are labelled on the sensor's regular ticks

    def __init__(
        self, writer: DatasetWriter, rules: list[LabelRule], scenario: str, capture: str
    ) -> None:
        self.writer = writer
        self.rules = rules
        self.scenario = scenario
        self.capture = capture
        self.meter = Progress(f"dataset build {capture}", unit="records")
        self.share_done: Callable[[], float | None] = lambda: None
        self.written = 0
        self.pcap_bytes = 24  # the pcap file header; each record adds its bytes and header
        self.matched = [0] * len(rules)
        self.by_type: dict[str, int] = {}
        self._pending: list[list[Any]] = []

    def add(self, record: list[Any]) -> None:
        self._pending.append(record)
        self.pcap_bytes += record[_CAPLEN] + _PCAP_RECORD_HEADER
        if len(self._pending) >= _CHUNK_ROWS:
            self.flush()

    def tick(self) -> None:
        self.meter.update(self.written + len(self._pending), self.share_done())

    def close(self, timeout: float = 0.0) -> None:
        self.flush()
        self.meter.finish()

    def flush(self) -> None:
        if not self._pending:
            return
        columns = records_to_columns(self._pending)
        self._pending = []
        label, attack_type, matched = apply_rules(self.rules, columns)
        n = len(label)
        columns["label"] = label
        columns["attack_type"] = attack_type
        columns["scenario"] = np.full(n, self.scenario, dtype=object)
        columns["capture"] = np.full(n, self.capture, dtype=object)
        self.writer.write(columns)
        self.written += n
        self.matched = [a + b for a, b in zip(self.matched, matched, strict=True)]
        kinds, counts = np.unique(attack_type.astype(str), return_counts=True)
        for kind, count in zip(kinds.tolist(), counts.tolist(), strict=True):
            self.by_type[kind] = self.by_type.get(kind, 0) + count
        self.tick()


def _is_json_lines(path: str) -> bool:
    opener: Callable[..., Any] = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(64).lstrip()
    except FileNotFoundError as err:
        raise UsageError(
            f"input {path} does not exist; give a pcap or a sensor .jsonl file"
        ) from err
    except (OSError, EOFError) as err:
        raise UsageError(f"input {path} is not readable ({err})") from err
    return head.startswith(b"{")


def _read_json_lines(path: str, sink: _LabellingSink) -> None:
    from capture.encoding import BadMessage, parse_json_record

    size = max(os.path.getsize(path), 1)
    with open(path, "rb") as raw:
        sink.share_done = lambda: raw.tell() / size
        stream: Iterable[bytes] = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                sink.add(parse_json_record(line))
            except BadMessage as err:
                raise UsageError(
                    f"{path} line {number} is not a valid packet record ({err}); "
                    "give JSON lines written by `antinex sensor --output jsonl`"
                ) from err
            if number % 4096 == 0:
                sink.tick()
        sink.close()


def _read_pcap(path: str, sink: _LabellingSink, payload_bytes: int, context_size: int) -> None:
    """Run the sensor's own decoding (and context features) over the pcap into ``sink``."""
    from capture.context import ContextTracker
    from capture.sensor import Sensor
    from capture.sources import PcapSource

    size = max(os.path.getsize(path), 1)
    # An estimate: pcapng blocks carry more overhead than the 16-byte pcap record header.
    sink.share_done = lambda: min(sink.pcap_bytes / size, 0.99)
    context = ContextTracker(context_size) if context_size > 0 else None
    # Limitation: the sensor takes SIGINT as "stop this capture", so Ctrl-C during a build of
    # several captures ends the current one early and goes on with the next.
    Sensor(PcapSource(path), sink, payload_bytes, 0, 0.0, context).run()


def build(
    inputs: Sequence[str],
    rules: list[LabelRule],
    out: str | Path,
    scenario: str | None = None,
    payload_bytes: int = 16,
    context_size: int = 100_000,
) -> dict[str, Any]:
    """Decode each input (pcap or sensor JSON lines), label its packets, write one dataset.

    Each input is one capture; the context features start afresh for each, as they would for a
    sensor started on that capture. Returns a summary: rows, rows per attack type, rule hits.
    """
    matched = [0] * len(rules)
    by_type: dict[str, int] = {}
    if not rules:
        event(log, logging.WARNING, "label_rules_empty", detail="every packet is labelled benign")
    with DatasetWriter(out) as writer:
        for path in inputs:
            name = os.path.basename(path)
            sink = _LabellingSink(writer, rules, scenario or name.split(".")[0], name)
            if _is_json_lines(path):
                _read_json_lines(path, sink)
            else:
                _read_pcap(path, sink, payload_bytes, context_size)
            matched = [a + b for a, b in zip(matched, sink.matched, strict=True)]
            for kind, count in sink.by_type.items():
                by_type[kind] = by_type.get(kind, 0) + count
            event(log, logging.INFO, "capture_labelled", input=name, rows=sink.written)
        rows = writer.rows
    for number, (rule, hits) in enumerate(zip(rules, matched, strict=True), 1):
        if hits == 0:
            event(
                log,
                logging.WARNING,
                "label_rule_unused",
                rule=number,
                attack_type=rule.attack_type,
                hint="no packet matched; check the rule's time window, hosts and ports",
            )
    return {"rows": rows, "by_attack_type": by_type, "rule_matches": matched, "out": str(out)}
