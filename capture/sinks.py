"""Offline outputs of the sensor: JSON lines or CSV, to a file or standard output."""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Sequence
from typing import IO, Any

from antinex.options import UsageError
from capture.encoding import record_to_json
from capture.schema import FIELDS, NAMES


class FileSink:
    """Writes records as ``jsonl`` or ``csv`` to ``path`` (``-`` is standard output)."""

    due = math.inf  # lines are flushed on the sensor's regular ticks; no batch lingers here

    def __init__(self, path: str, fmt: str) -> None:
        self.fmt = fmt
        self.written = 0
        try:
            self._stream: IO[str] = (
                sys.stdout if path == "-" else open(path, "w", newline="", encoding="ascii")  # noqa: SIM115 - closed in close()
            )
        except OSError as err:
            raise UsageError(f"cannot write {path}: {err.strerror}; choose another --out") from err
        self._csv = csv.writer(self._stream) if fmt == "csv" else None
        if self._csv:
            self._csv.writerow(NAMES)

    def add(self, record: Sequence[Any]) -> None:
        if self._csv is not None:
            self._csv.writerow(
                "" if value == f.missing else value for f, value in zip(FIELDS, record, strict=True)
            )
        else:
            self._stream.write(record_to_json(record).decode())
            self._stream.write("\n")
        self.written += 1

    def tick(self) -> None:
        self._stream.flush()

    def close(self, timeout: float = 0.0) -> None:
        self._stream.flush()
        if self._stream is not sys.stdout:
            self._stream.close()
