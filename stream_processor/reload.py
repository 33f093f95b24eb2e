"""Hot reload: notice a new model version on disk, load and check it, or refuse it and keep going.

Between batches, every ``--reload-check-s`` seconds, the watcher looks at what the model path
names now (its ``current`` pointer, followed) and the modification times of the manifest, scaler
and Keras file there. When that changed, the version is loaded with the same checks as at start,
and scored once on a row of missing values; a version that passes replaces the running one
before the next batch, one that fails is refused (ERROR event, ``result="refused"`` metric) and
the running version keeps scoring. A refused version is not retried until the files change again.

Publish a new version by writing it to its own directory and then switching ``current``
(``ln -sfn v2 current.tmp && mv -T current.tmp current``), so the watcher never sees half a model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from antinex.logs import event
from capture.schema import MISSING, SCHEMA_VERSION
from models import artifact
from stream_processor import metrics

log = logging.getLogger("antinex.processor")

Signature = tuple[str, int, int, int, int]


def model_signature(path: Path) -> Signature | None:
    """What ``path`` resolves to and when its files last changed; None when it cannot be read."""
    try:
        pointer = path / artifact.CURRENT_POINTER
        pointer_mtime = 0
        if pointer.is_symlink():
            pointer_mtime = pointer.lstat().st_mtime_ns
        elif pointer.is_file():
            pointer_mtime = pointer.stat().st_mtime_ns
        directory = artifact.resolve(path)
        files = [directory / name for name in (artifact.MANIFEST, artifact.SCALER)]
        files.append(directory / artifact.KERAS_MODEL)
        mtimes = [f.stat().st_mtime_ns for f in files]
    except OSError:
        return None
    return (str(directory), pointer_mtime, mtimes[0], mtimes[1], mtimes[2])


def load_checked(path: Path) -> artifact.LoadedModel:
    """Load the model at ``path`` and score one row with it; raises ModelRefused."""
    model = artifact.load(path)
    row = np.full((1, len(model.manifest.features)), MISSING, dtype=np.float32)
    try:
        with np.errstate(over="ignore"):
            scores, _classes = model.scores(row)
    except Exception as err:  # a forward pass that breaks on real input is a bad version
        raise artifact.ModelRefused(f"{model.directory} fails to score a record ({err})") from err
    if not (np.isfinite(scores).all() and 0.0 <= float(scores[0]) <= 1.0):
        raise artifact.ModelRefused(f"{model.directory} scores outside 0..1 ({scores[0]})")
    return model


def publish_model_info(model: artifact.LoadedModel) -> None:
    metrics.MODEL_INFO.info({"version": model.version, "schema_version": str(SCHEMA_VERSION)})


class ModelWatcher:
    """Polls the model path for a new version; hands back a checked model when one appears."""

    def __init__(
        self,
        path: Path,
        check_every_s: float,
        clock: Callable[[], float] = time.monotonic,
        loader: Callable[[Path], Any] = load_checked,
    ) -> None:
        self.path = Path(path)
        self.check_every_s = check_every_s
        self._clock = clock
        self._loader = loader
        self._seen = model_signature(self.path)
        self._next_check = clock() + check_every_s

    def poll(self, running_version: str) -> Any | None:
        """A newly loaded model when the files changed and the new version passed, else None."""
        if self.check_every_s <= 0 or self._clock() < self._next_check:
            return None
        self._next_check = self._clock() + self.check_every_s
        signature = model_signature(self.path)
        if signature is None or signature == self._seen:
            return None
        self._seen = signature
        started = time.perf_counter()
        try:
            model = self._loader(self.path)
        except artifact.ModelRefused as err:
            metrics.MODEL_RELOADS.labels(result="refused").inc()
            event(
                log,
                logging.ERROR,
                "model_refused",
                path=signature[0],
                reason=str(err),
                running_version=running_version,
            )
            return None
        metrics.MODEL_RELOADS.labels(result="loaded").inc()
        event(
            log,
            logging.INFO,
            "model_reloaded",
            path=signature[0],
            version=model.version,
            previous_version=running_version,
            load_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return model
