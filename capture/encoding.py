"""How packet records travel: binary batches (numpy ``.npy``) and JSON, each checked on arrival
against the record declaration.

A binary batch is one Kafka message holding many records of one partition as a numpy structured
array in the ``.npy`` format (read with ``allow_pickle=False``: no code runs on load). A JSON
message holds one record as an object keyed by field name; any Kafka client can read it.
"""

from __future__ import annotations

import io
import json
import math
import tokenize
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from capture.schema import FIELDS, NAMES, SCHEMA_VERSION, batch_dtype

CONTENT_TYPE_BATCH = b"application/vnd.antinex.batch+npy"
CONTENT_TYPE_JSON = b"application/json"
_NPY_MAGIC = b"\x93NUMPY"


class BadMessage(ValueError):
    """A message or record that does not match the record declaration.

    ``reason`` is a short stable label (for the dead-letter topic and metrics); the message
    text says which field and value were wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BatchCodec:
    """Encodes lists of records into ``.npy`` batches and decodes them back, caching dtypes."""

    def __init__(self, payload_bytes: int = 16) -> None:
        self.dtype = batch_dtype(payload_bytes)
        self._headers: dict[bytes, tuple[np.dtype, int, int]] = {}

    def encode(self, records: Sequence[Sequence[Any]]) -> bytes:
        array = np.array([tuple(r) for r in records], dtype=self.dtype)
        out = io.BytesIO()
        np.save(out, array, allow_pickle=False)
        return out.getvalue()

    def decode(self, value: bytes) -> np.ndarray:
        """The records of a batch message; raises BadMessage when it is not a valid batch."""
        if not value.startswith(_NPY_MAGIC) or len(value) < 10:
            raise BadMessage("not_a_batch", "the message does not start with the .npy magic")
        header_end = 10 + int.from_bytes(value[8:10], "little")
        header = value[:header_end]
        known = self._headers.get(header)
        if known is None:
            known = self._read_header(value)
            if len(self._headers) < 64:  # a few payload widths at most; bound it anyway
                self._headers[header] = known
        dtype, count, offset = known
        if len(value) - offset != count * dtype.itemsize:
            raise BadMessage(
                "batch_size_mismatch",
                f"{len(value) - offset} bytes of data for {count} records of {dtype.itemsize}",
            )
        return np.frombuffer(value, dtype=dtype, count=count, offset=offset)

    @staticmethod
    def _read_header(value: bytes) -> tuple[np.dtype, int, int]:
        stream = io.BytesIO(value)
        try:
            version = np.lib.format.read_magic(stream)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(stream)
        except (ValueError, SyntaxError, tokenize.TokenError) as err:
            raise BadMessage("bad_batch_header", str(err)) from err
        if dtype.names is None or tuple(dtype.names) != NAMES or fortran or len(shape) != 1:
            found = "no fields" if dtype.names is None else f"{len(dtype.names)} fields"
            raise BadMessage(
                "schema_mismatch",
                f"batch columns ({found}) differ from schema version {SCHEMA_VERSION}",
            )
        if dtype.hasobject:
            raise BadMessage("bad_batch_header", "object columns are not allowed")
        return dtype, shape[0], stream.tell()


def invalid_rows(batch: np.ndarray) -> list[tuple[int, str, str]]:
    """Rows of a decoded batch that must not be scored: (row, reason, detail)."""
    bad: list[tuple[int, str, str]] = []
    versions = batch["schema_version"]
    for row in np.flatnonzero(versions != SCHEMA_VERSION):
        bad.append((int(row), "schema_version", f"record has schema_version {versions[row]}"))
    for f in FIELDS:
        if f.type == "f32":
            column = batch[f.name]
            for row in np.flatnonzero(~np.isfinite(column)):
                bad.append((int(row), "not_finite", f"{f.name} is {column[row]}"))
    return bad


# JSON ---------------------------------------------------------------------------------------


_MISSING = tuple(f.missing for f in FIELDS)


def record_to_dict(record: Sequence[Any]) -> dict[str, Any]:
    """A record as a dict, missing fields as None."""
    return {
        name: (None if value == missing else value)
        for name, value, missing in zip(NAMES, record, _MISSING, strict=True)
    }


def row_to_dict(row: np.void) -> dict[str, Any]:
    """One row of a decoded batch as a dict, missing fields as None, text as str."""
    out: dict[str, Any] = {}
    for f, value in zip(FIELDS, row.tolist(), strict=True):
        if f.is_text:
            value = value.decode("ascii", "replace")
        elif f.type == "f32":
            value = round(float(value), 4)
        out[f.name] = None if value == f.missing else value
    return out


def record_to_json(record: Sequence[Any]) -> bytes:
    return json.dumps(record_to_dict(record), separators=(",", ":")).encode()


def parse_json_record(value: bytes) -> list[Any]:
    """Check a JSON record against the declaration and return it as a record list."""
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadMessage("bad_json", str(err)) from err
    if not isinstance(obj, dict):
        raise BadMessage("bad_json", f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BadMessage("schema_version", f"record has schema_version {version!r}")
    record: list[Any] = []
    for f in FIELDS:
        if f.name not in obj:
            raise BadMessage("missing_field", f"{f.name} is missing")
        record.append(_checked(f.name, f.type, f.missing, obj[f.name]))
    return record


_INT_LIMITS = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF, "u64": (1 << 63) - 1}
_TEXT_LIMITS = {"mac": 17, "ip": 39, "text": 48, "iface": 32, "hex": 16, "key": 100}


def _checked(name: str, kind: str, missing: Any, value: Any) -> Any:
    if value is None:
        return missing
    if kind in _INT_LIMITS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadMessage("wrong_type", f"{name} must be a whole number, got {value!r:.40}")
        if not 0 <= value <= _INT_LIMITS[kind]:
            raise BadMessage("out_of_range", f"{name}={value} is outside 0..{_INT_LIMITS[kind]}")
        return value
    if kind == "f32":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadMessage("wrong_type", f"{name} must be a number, got {value!r:.40}")
        if not math.isfinite(value) or abs(value) > 3.0e38:
            raise BadMessage("not_finite", f"{name} is {value}")
        return float(value)
    if not isinstance(value, str):
        raise BadMessage("wrong_type", f"{name} must be text, got {value!r:.40}")
    limit = _TEXT_LIMITS.get(kind)
    if (limit and len(value) > limit) or not value.isascii():
        raise BadMessage("bad_text", f"{name} is not ASCII text of at most {limit} characters")
    return value


def records_from_json_lines(lines: Iterable[bytes]) -> list[list[Any]]:
    """Records of a JSON-lines file; raises BadMessage naming the line that is wrong."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_json_record(line))
        except BadMessage as err:
            raise BadMessage(err.reason, f"line {number}: {err.detail}") from err
    return records
