"""Structured logging: events with key=value fields, rendered as text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({})))


class _EventFormatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _RESERVED and v is not None}
        fields.pop("message", None)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        if self.as_json:
            line = {"ts": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname.lower()}
            line.update(logger=record.name, event=record.getMessage(), **fields)
            return json.dumps(line, default=str)
        pairs = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        return f"{stamp}Z {record.levelname.lower():7s} {record.getMessage()} {pairs}".rstrip()


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def setup(level: str = "info", fmt: str = "text") -> None:
    """Send log events to stderr, as ``text`` (key=value) or ``json`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EventFormatter(as_json=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at ERROR; our own events say what matters.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log ``name`` with ``fields`` attached as structured data."""
    logger.log(level, name, extra=fields)
