"""Consumed Kafka messages → record arrays to score, and the dead letters of what cannot be scored.

Both message kinds of the packets topic are read: binary batches (many records as a numpy
structured array) and JSON (one record per message). A message whose content type header is
absent is recognised by its first bytes. Whole messages that fail (garbage, wrong schema,
unreadable JSON) and single rows of a batch that fail (other schema version, NaN/inf) become
dead letters; nothing here raises on bad input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from capture.encoding import (
    CONTENT_TYPE_BATCH,
    CONTENT_TYPE_JSON,
    BadMessage,
    BatchCodec,
    invalid_rows,
    parse_json_record,
    row_to_dict,
)
from stream_processor.features import FeatureColumns

_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something that was not scored, with where it came from and why."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    row: int | None = None  # the row of a batch message, None for a whole message


@dataclass
class Chunk:
    """Records of one batch message (or of the JSON messages of one partition) to score."""

    records: np.ndarray
    topic: str
    partition: int
    offset: int


@dataclass
class Intake:
    """What one round of messages yielded."""

    chunks: list[Chunk] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    consumed: int = 0  # records read, good and bad (a whole bad message counts as one)
    sizes: list[tuple[int, int, int]] = field(default_factory=list)  # partition, offset, records


class MessageReader:
    """Decodes and checks the messages of the packets topic."""

    def __init__(self, columns: FeatureColumns, payload_bytes: int = 16) -> None:
        self.columns = columns
        self._codec = BatchCodec(payload_bytes)

    def read(self, messages: Iterable[Any]) -> Intake:
        """Records and dead letters of ``messages`` (kafka-python ConsumerRecords)."""
        intake = Intake()
        json_rows: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        json_first: dict[tuple[str, int], int] = {}
        for message in messages:
            kind = _content_type(message.headers, message.value)
            before = intake.consumed
            if kind == CONTENT_TYPE_BATCH:
                self._read_batch(message, intake)
            elif kind == CONTENT_TYPE_JSON:
                intake.consumed += 1
                record = self._read_json(message, intake)
                if record is not None:
                    where = (message.topic, message.partition)
                    json_first.setdefault(where, message.offset)
                    json_rows.setdefault(where, []).append(record)
            else:
                intake.consumed += 1
                shown = kind.decode("ascii", "replace")[:60]
                _refuse(intake, message, "unknown_content_type", f"content type {shown!r}")
            intake.sizes.append((message.partition, message.offset, intake.consumed - before))
        for (topic, partition), rows in json_rows.items():
            records = np.array(rows, dtype=self._codec.dtype)
            first = json_first[(topic, partition)]
            intake.chunks.append(Chunk(records, topic, partition, first))
        return intake

    def _read_batch(self, message: Any, intake: Intake) -> None:
        try:
            records = self._codec.decode(message.value)
        except BadMessage as err:
            intake.consumed += 1
            _refuse(intake, message, err.reason, err.detail)
            return
        intake.consumed += len(records)
        wrong = self.columns.wrong_column(records.dtype)
        if wrong is not None:
            _refuse(intake, message, "wrong_type", wrong)
            return
        bad = invalid_rows(records)
        if bad:
            keep = np.ones(len(records), dtype=bool)
            for row, reason, detail in bad:
                if keep[row]:
                    keep[row] = False
                    intake.dead_letters.append(_bad_row(message, records[row], row, reason, detail))
            records = records[keep]
        if len(records):
            intake.chunks.append(Chunk(records, message.topic, message.partition, message.offset))

    def _read_json(self, message: Any, intake: Intake) -> tuple[Any, ...] | None:
        try:
            return tuple(parse_json_record(message.value))
        except BadMessage as err:
            _refuse(intake, message, err.reason, err.detail)
            return None


def _content_type(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> bytes:
    for name, content in headers or ():
        if name.lower() == "content-type":
            return (content or b"").split(b";")[0].strip().lower()
    if value and value.startswith(_NPY_MAGIC):
        return CONTENT_TYPE_BATCH
    return CONTENT_TYPE_JSON


def _refuse(intake: Intake, message: Any, reason: str, detail: str) -> None:
    intake.dead_letters.append(
        DeadLetter(
            reason,
            detail,
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value or b"",
        )
    )


def _bad_row(message: Any, row: np.void, index: int, reason: str, detail: str) -> DeadLetter:
    record = {name: _json_safe(value) for name, value in row_to_dict(row).items()}
    value = json.dumps(record, separators=(",", ":")).encode()
    flow_id = record.get("flow_id")
    key = flow_id.encode() if isinstance(flow_id, str) and flow_id else message.key
    return DeadLetter(
        reason, detail, message.topic, message.partition, message.offset, key, value, index
    )


def _json_safe(value: Any) -> Any:
    """NaN and infinities as text: standard JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
