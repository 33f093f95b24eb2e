"""Per-flow alert windows: at most one alert per flow per window, in bounded memory.

The first attack records of a flow raise an alert at once and open a window of
``--alert-window-s`` seconds for that flow. Attack records of the flow that arrive while the
window is open raise nothing; they are counted (packets, first and last seen, the highest-scoring
record). When the window closes with records counted, one summary alert reports them and a new
window opens, so a flow that keeps attacking raises one alert per window; a window that closes
with nothing counted ends silently. Windows run on the processor's clock (monotonic), not on
capture timestamps, so a replayed capture is throttled like live traffic.

At most ``max_flows`` windows are open; opening one more closes the oldest first (its summary,
if it counted anything, is raised then, so no count is lost).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

NEW = "new"
SUMMARY = "window_summary"
EVIDENCE_MARGIN = 1e-3


@dataclass(frozen=True, slots=True)
class Sighting:
    """The attack records of one flow in one batch."""

    flow_id: str
    partition: int
    count: int
    first_ns: int
    last_ns: int
    score: float


@dataclass(frozen=True, slots=True)
class Raised:
    """An alert to publish: which flow, what it covers, and the evidence of its best record."""

    kind: str
    flow_id: str
    partition: int
    count: int
    first_ns: int
    last_ns: int
    evidence: Any


@dataclass(slots=True)
class _Window:
    partition: int
    opened: float
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    best_score: float = -1.0
    evidence: Any = None


class AlertWindows:
    """Decides which attack sightings become alerts."""

    def __init__(
        self, window_s: float, max_flows: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_flows < 1:
            raise ValueError(f"max_flows {max_flows} must be at least 1")
        self.window_s = window_s
        self.max_flows = max_flows
        self.evicted = 0
        self._clock = clock
        self._open: OrderedDict[str, _Window] = OrderedDict()  # oldest window first

    def __len__(self) -> int:
        return len(self._open)

    def wants_evidence(self, flow_id: str, score: float) -> bool:
        """Whether a sighting with this best score would be reported (so needs its evidence).

        Within an open window, only a score higher by more than EVIDENCE_MARGIN replaces the
        evidence: confident scores differ in the fifth decimal from batch to batch, and building
        evidence (endpoints, top features) for each would cost more than it tells."""
        window = self._open.get(flow_id)
        return window is None or score > window.best_score + EVIDENCE_MARGIN

    def observe(self, sighting: Sighting, evidence: Any) -> list[Raised]:
        """Alerts due because of ``sighting``: a new one, and a summary if one was evicted."""
        window = self._open.get(sighting.flow_id)
        if window is not None:
            if window.count == 0:
                window.first_ns = sighting.first_ns
            window.count += sighting.count
            window.first_ns = min(window.first_ns, sighting.first_ns)
            window.last_ns = max(window.last_ns, sighting.last_ns)
            if evidence is not None and sighting.score > window.best_score:
                window.best_score = sighting.score
                window.evidence = evidence
            return []
        raised: list[Raised] = []
        if len(self._open) >= self.max_flows:
            evicted = self._evict_oldest()
            if evicted is not None:
                raised.append(evicted)
        self._open[sighting.flow_id] = _Window(sighting.partition, self._clock())
        raised.append(
            Raised(
                NEW,
                sighting.flow_id,
                sighting.partition,
                sighting.count,
                sighting.first_ns,
                sighting.last_ns,
                evidence,
            )
        )
        return raised

    def expire(self) -> list[Raised]:
        """Summaries of the windows that have closed; windows that counted something reopen."""
        now = self._clock()
        raised = []
        while self._open:
            flow_id, window = next(iter(self._open.items()))
            if window.opened + self.window_s > now:
                break
            del self._open[flow_id]
            if window.count:
                raised.append(_summary(flow_id, window))
                self._open[flow_id] = _Window(window.partition, now)
        return raised

    def drain(self, partitions: Iterable[int] | None = None) -> list[Raised]:
        """Close the windows of ``partitions`` (all when None), raising their summaries."""
        wanted = None if partitions is None else set(partitions)
        raised = []
        for flow_id in list(self._open):
            window = self._open[flow_id]
            if wanted is None or window.partition in wanted:
                del self._open[flow_id]
                if window.count:
                    raised.append(_summary(flow_id, window))
        return raised

    def _evict_oldest(self) -> Raised | None:
        flow_id, window = self._open.popitem(last=False)
        self.evicted += 1
        return _summary(flow_id, window) if window.count else None


def _summary(flow_id: str, window: _Window) -> Raised:
    return Raised(
        SUMMARY,
        flow_id,
        window.partition,
        window.count,
        window.first_ns,
        window.last_ns,
        window.evidence,
    )
