"""A model version on disk: the Keras model, the scaler as JSON, the feature list, the threshold
and the manifest that ties them to one record schema, with the checks that refuse a mismatch.

Layout of a model directory::

    manifest.json   format, schema_version, model_version, features, threshold, classes, metrics,
                    training data fingerprint
    scaler.json     MinMaxScaler(feature_range=(-1, 1)) parameters: data_min, data_max, and
                    optionally log_columns, the column indices taken through sign(x)·ln(1 + |x|)
                    before the min-max step (data_min and data_max are then of those values)
    model.keras     the Keras model (loaded with safe_mode=True)

Format 2 added log_columns. A format 1 directory (no log_columns) loads and scores as before;
a release that reads only format 1 refuses a format 2 directory instead of scoring it without
the log step.

No file is unpickled: the model loads in Keras' safe mode, everything else is JSON.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capture.schema import BY_NAME, SCHEMA_VERSION

ARTIFACT_FORMAT = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
SCALER = "scaler.json"
KERAS_MODEL = "model.keras"
CURRENT_POINTER = "current"


class ModelRefused(Exception):
    """A model directory that must not be used; the message says which file and why."""


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x)·ln(1 + |x|): heavy tails pulled in, order and sign kept, 0 stays 0."""
    return np.copysign(np.log1p(np.abs(x)), x)


@dataclass
class Scaler:
    """MinMaxScaler(feature_range=(lo, hi)) parameters, applied by hand (no sklearn call cost),
    after ``signed_log1p`` of the columns ``log_columns``.

    Min-max scaling of a heavy-tailed column (packet rates from 0 to thousands a second) puts
    nearly every value in a sliver next to ``lo``; the log first spreads them out again.
    """

    data_min: np.ndarray
    data_max: np.ndarray
    feature_range: tuple[float, float] = (-1.0, 1.0)
    log_columns: tuple[int, ...] = ()
    scale: np.ndarray = field(init=False)
    offset: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        lo, hi = self.feature_range
        span = self.data_max - self.data_min
        span = np.where(span == 0, 1.0, span)  # constant columns: as sklearn does
        self.scale = ((hi - lo) / span).astype(np.float32)
        self.offset = (lo - self.data_min * self.scale).astype(np.float32)
        self.log_columns = _distinct(self.log_columns)
        self._log_index = np.asarray(self.log_columns, dtype=np.intp)

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        feature_range: tuple[float, float] = (-1.0, 1.0),
        log_columns: tuple[int, ...] = (),
    ) -> Scaler:
        """Fit on ``x`` (the training rows): the minimum and maximum of each column after the
        log step of ``log_columns``."""
        x = _compress(x, np.asarray(_distinct(log_columns), dtype=np.intp))
        return cls(
            x.min(axis=0).astype(np.float64),
            x.max(axis=0).astype(np.float64),
            feature_range,
            log_columns,
        )

    def compress(self, x: np.ndarray) -> np.ndarray:
        """``x`` (rows, or one row) with ``signed_log1p`` applied to ``log_columns``; ``x``
        itself when there are none. Never changes ``x``."""
        return _compress(x, self._log_index)

    def minmax(self, x: np.ndarray) -> np.ndarray:
        """The min-max step alone, for values already through ``compress``."""
        return x * self.scale + self.offset

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw feature values → the model's input."""
        return self.minmax(self.compress(x))

    def to_json(self) -> dict[str, Any]:
        obj = {
            "kind": "MinMaxScaler",
            "feature_range": list(self.feature_range),
            "data_min": self.data_min.tolist(),
            "data_max": self.data_max.tolist(),
        }
        if self.log_columns:
            obj["log_columns"] = list(self.log_columns)
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Scaler:
        if obj.get("kind") != "MinMaxScaler":
            raise ValueError(f"scaler kind {obj.get('kind')!r} is not MinMaxScaler")
        lo, hi = (float(v) for v in obj["feature_range"])
        data_min = np.asarray(obj["data_min"], dtype=np.float64)
        data_max = np.asarray(obj["data_max"], dtype=np.float64)
        if data_min.shape != data_max.shape or data_min.ndim != 1:
            raise ValueError("data_min and data_max differ in length")
        if not (np.isfinite(data_min).all() and np.isfinite(data_max).all()):
            raise ValueError("scaler parameters are not finite")
        log_columns = _log_columns(obj.get("log_columns", []), len(data_min))
        return cls(data_min, data_max, (lo, hi), log_columns)


def _distinct(columns: Any) -> tuple[int, ...]:
    return tuple(sorted({int(c) for c in columns}))


def _compress(x: np.ndarray, columns: np.ndarray) -> np.ndarray:
    if columns.size == 0:
        return x
    if columns.size == x.shape[-1]:  # distinct indices, so every column: no copy needed
        return signed_log1p(x)
    out = x.copy()
    out[..., columns] = signed_log1p(out[..., columns])
    return out


def _log_columns(value: Any, n_columns: int) -> tuple[int, ...]:
    """``log_columns`` as read from scaler.json: distinct column indices in increasing order."""
    if not isinstance(value, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in value
    ):
        raise ValueError(f"log_columns {value!r} is not a list of column indices")
    outside = [c for c in value if not 0 <= c < n_columns]
    if outside:
        raise ValueError(
            f"log_columns names column {outside[0]}, but the scaler has columns 0 to "
            f"{n_columns - 1}"
        )
    if any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"log_columns {value!r} is not in increasing order without repeats")
    return tuple(value)


@dataclass
class Manifest:
    model_version: str
    features: list[str]
    threshold: float
    classes: list[str] = field(default_factory=lambda: ["benign", "attack"])
    schema_version: int = SCHEMA_VERSION
    format: int = ARTIFACT_FORMAT
    metrics: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def save(directory: Path, keras_model: Any, scaler: Scaler, manifest: Manifest) -> Path:
    """Write a model directory; refuses to write one that would not load back."""
    _check_consistent(manifest, scaler, _keras_io(keras_model), directory)
    directory.mkdir(parents=True, exist_ok=True)
    keras_model.save(directory / KERAS_MODEL)
    (directory / SCALER).write_text(json.dumps(scaler.to_json(), indent=1) + "\n")
    (directory / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
    return directory


def resolve(path: Path) -> Path:
    """The model directory ``path`` names: itself, or what its ``current`` pointer names.

    ``current`` is a symlink or a one-line text file naming a subdirectory.
    """
    pointer = path / CURRENT_POINTER
    if (path / MANIFEST).is_file() or not pointer.exists():
        return path
    if pointer.is_symlink() or pointer.is_dir():
        return pointer.resolve()
    return (path / pointer.read_text().strip()).resolve()


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        obj = json.loads(path.read_text())
        manifest = Manifest(**obj)
    except FileNotFoundError as err:
        raise ModelRefused(f"{directory} has no {MANIFEST}; it is not a model directory") from err
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as err:
        raise ModelRefused(f"{path} is not a valid model manifest ({err})") from err
    return manifest


def load_scaler(directory: Path) -> Scaler:
    path = directory / SCALER
    try:
        return Scaler.from_json(json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise ModelRefused(f"{directory} has no {SCALER}") from err
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise ModelRefused(f"{path} is not a valid scaler ({err})") from err


def load_keras(directory: Path) -> Any:
    path = directory / KERAS_MODEL
    if not path.is_file():
        raise ModelRefused(f"{directory} has no {KERAS_MODEL}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many kinds for a damaged or foreign file
        raise ModelRefused(f"{path} cannot be loaded as a Keras model ({err})") from err


def _keras_io(keras_model: Any) -> tuple[int, int]:
    return int(keras_model.inputs[0].shape[-1]), int(keras_model.outputs[0].shape[-1])


def _check_consistent(
    manifest: Manifest, scaler: Scaler, model_io: tuple[int, int], directory: Path
) -> None:
    """Refuse a model whose parts disagree with each other or with the running schema."""
    where = str(directory)
    if manifest.format not in READABLE_FORMATS:
        readable = " or ".join(str(f) for f in READABLE_FORMATS)
        raise ModelRefused(
            f"{where}: artifact format {manifest.format} is not {readable}; "
            "load it with the release that wrote it"
        )
    if manifest.schema_version != SCHEMA_VERSION:
        raise ModelRefused(
            f"{where} was trained on record schema {manifest.schema_version}, but this sensor "
            f"writes schema {SCHEMA_VERSION}; retrain it or run a matching release"
        )
    unknown = [name for name in manifest.features if name not in BY_NAME]
    if unknown:
        raise ModelRefused(f"{where}: features not in the record schema: {', '.join(unknown)}")
    not_features = [name for name in manifest.features if not BY_NAME[name].feature]
    if not_features:
        raise ModelRefused(
            f"{where}: fields declared as identifiers, not features: {', '.join(not_features)}"
        )
    n_features = len(manifest.features)
    if len(scaler.data_min) != n_features:
        raise ModelRefused(
            f"{where}: the scaler has {len(scaler.data_min)} columns, the manifest lists "
            f"{n_features} features"
        )
    n_in, n_out = model_io
    if n_in != n_features:
        raise ModelRefused(f"{where}: the model takes {n_in} inputs, not {n_features} features")
    expected_out = 1 if len(manifest.classes) == 2 else len(manifest.classes)
    if n_out != expected_out:
        raise ModelRefused(
            f"{where}: the model has {n_out} outputs for {len(manifest.classes)} classes"
        )
    if not (isinstance(manifest.threshold, float | int) and 0 < manifest.threshold < 1) or (
        isinstance(manifest.threshold, float) and math.isnan(manifest.threshold)
    ):
        raise ModelRefused(f"{where}: threshold {manifest.threshold!r} is not between 0 and 1")
    if manifest.classes[0] != "benign":
        raise ModelRefused(f"{where}: the first class must be 'benign', not {manifest.classes[0]}")


@dataclass
class LoadedModel:
    """A checked model version, ready to score feature matrices."""

    directory: Path
    manifest: Manifest
    scaler: Scaler
    keras_model: Any
    forward: Any  # DenseForward or None when the model has layers numpy does not run

    @property
    def version(self) -> str:
        return self.manifest.model_version

    def scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Attack score per row (probability of not benign) and, with several classes, the
        index of the most likely attack class per row."""
        scaled = self.scaler.transform(x.astype(np.float32, copy=False))
        if self.forward is not None:
            out = self.forward(scaled)
        else:
            out = np.asarray(self.keras_model.predict_on_batch(scaled))
        if out.shape[1] == 1:
            return out[:, 0], None
        return 1.0 - out[:, 0], np.argmax(out[:, 1:], axis=1) + 1


def load(path: Path) -> LoadedModel:
    """Load and check the model version at ``path`` (or its ``current`` pointer)."""
    from models.forward import DenseForward

    directory = resolve(Path(path))
    if not directory.is_dir():
        raise ModelRefused(f"model directory {directory} does not exist")
    manifest = read_manifest(directory)
    scaler = load_scaler(directory)
    keras_model = load_keras(directory)
    _check_consistent(manifest, scaler, _keras_io(keras_model), directory)
    return LoadedModel(
        directory, manifest, scaler, keras_model, DenseForward.from_keras(keras_model)
    )
