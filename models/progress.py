"""A plain-text progress line on standard error for long offline jobs (no extra packages)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_BAR_WIDTH = 24


class Progress:
    """Shows ``label``, a bar (when the share done is known), the count done and the rate.

    On a terminal the line is redrawn in place a few times a second; elsewhere (a log file, a
    pipe) a new line is written every ``quiet_every_s`` seconds so logs stay short.
    """

    def __init__(
        self,
        label: str,
        unit: str = "rows",
        stream: TextIO | None = None,
        quiet_every_s: float = 10.0,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.count = 0
        self.share: float | None = None
        self._started = time.monotonic()
        self._shown = self._started
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._every = 0.25 if self._tty else quiet_every_s

    def update(self, count: int, share: float | None = None) -> None:
        """Record ``count`` done so far and, when known, the ``share`` (0..1) of the work done."""
        self.count = count
        self.share = share
        now = time.monotonic()
        if now - self._shown >= self._every:
            self._shown = now
            self._draw(now, final=False)

    def finish(self) -> None:
        if self.share is not None:
            self.share = 1.0
        self._draw(time.monotonic(), final=True)

    def _draw(self, now: float, final: bool) -> None:
        elapsed = max(now - self._started, 1e-9)
        bar = ""
        if self.share is not None:
            share = min(max(self.share, 0.0), 1.0)
            filled = int(share * _BAR_WIDTH)
            bar = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {share:6.1%} "
        rate = self.count / elapsed
        text = f"{self.label} {bar}{self.count:,} {self.unit} {rate:,.0f}/s {elapsed:.0f}s"
        if self._tty:
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
