"""The feature matrix a model scores: decoded record arrays → float32 columns in manifest order.

Records arrive as numpy structured arrays (one per Kafka message) whose missing numbers already
hold ``MISSING`` (-1), so building the matrix is a typed column copy per feature and message,
with no Python work per record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from capture.schema import BY_NAME


class FeatureColumns:
    """Copies the columns of ``features`` (in that order) out of record arrays."""

    def __init__(self, features: Sequence[str]) -> None:
        unknown = [name for name in features if name not in BY_NAME]
        if unknown:
            raise ValueError(f"features not in the record schema: {', '.join(unknown)}")
        self.features = tuple(features)
        self._checked: dict[np.dtype, str | None] = {}
        self._buffer = np.empty((0, len(self.features)), dtype=np.float32)

    def wrong_column(self, dtype: np.dtype) -> str | None:
        """The first feature column of ``dtype`` that is not numeric, or None when all are."""
        if dtype not in self._checked:
            found = None
            fields: Mapping[str, Any] = dtype.fields or {}
            for name in self.features:
                if name not in fields:
                    found = f"{name} is absent"
                    break
                if fields[name][0].kind not in "biuf":
                    found = f"{name} has type {fields[name][0]}, not a number"
                    break
            if len(self._checked) < 64:  # a handful of payload widths in practice
                self._checked[dtype] = found
            return found
        return self._checked[dtype]

    def build(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """One float32 row per record of ``arrays`` (in order), one column per feature.

        The matrix is a view of a buffer reused by the next call: copy it to keep it.
        """
        total = sum(len(a) for a in arrays)
        if self._buffer.shape[0] < total:
            rows = max(total, 2 * self._buffer.shape[0])
            self._buffer = np.empty((rows, len(self.features)), dtype=np.float32)
        matrix = self._buffer[:total]
        start = 0
        for array in arrays:
            end = start + len(array)
            block = matrix[start:end]
            for column, name in enumerate(self.features):
                block[:, column] = array[name]
            start = end
        return matrix
