"""Keeping Python's garbage collector out of the latency path of long-running loops.

The processor holds the Keras/TensorFlow import (millions of objects) and the sensor its
libraries and decoder tables. A full collection walks all of them and can stall the loop for
tens of milliseconds. Everything alive when the loop starts lives for the whole run, so it is
moved out of the collector's sight once; collections then only walk what the loop allocates.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import Histogram

GC_PAUSE = Histogram(
    "antinex_gc_pause_seconds",
    "Time the process stood still in Python's garbage collector, per collection",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)

_started: list[float] = []


def _on_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _started.pop())


def freeze_startup_heap() -> None:
    """Collect once, then exclude every object alive now from later collections; measure the
    pauses of those later collections in ``antinex_gc_pause_seconds``."""
    gc.collect()
    gc.freeze()
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)
