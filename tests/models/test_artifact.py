"""Tests of the model directory: a saved model loads back and scores the same; a damaged or
mismatched one is refused with a sentence naming the file and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from capture.schema import FEATURES, SCHEMA_VERSION
from models.artifact import (
    KERAS_MODEL,
    MANIFEST,
    SCALER,
    Manifest,
    ModelRefused,
    Scaler,
    load,
    save,
)
from models.train import TrainSettings, build_dnn

FEATURE_NAMES = list(FEATURES[:6])


@pytest.fixture(scope="module")
def keras_model() -> Any:
    """A small untrained dense network over six features (weights are random but fixed)."""
    import keras

    keras.utils.set_random_seed(1)
    return build_dnn(len(FEATURE_NAMES), 1, TrainSettings(hidden=(8, 4)))


@pytest.fixture
def saved(tmp_path: Path, keras_model: Any) -> Path:
    rng = np.random.default_rng(0)
    scaler = Scaler.fit(rng.uniform(0, 1500, size=(50, len(FEATURE_NAMES))))
    manifest = Manifest(model_version="test-1", features=FEATURE_NAMES, threshold=0.7)
    return save(tmp_path / "model", keras_model, scaler, manifest)


def edit_json(path: Path, **changes: Any) -> None:
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


def test_a_saved_model_scores_as_keras_does(saved: Path, keras_model: Any) -> None:
    """After a round trip the numpy forward pass matches Keras on the scaled rows."""
    loaded = load(saved)
    x = np.random.default_rng(2).uniform(0, 1500, size=(32, len(FEATURE_NAMES)))
    scores, kinds = loaded.scores(x)
    expected = keras_model.predict(loaded.scaler.transform(x.astype(np.float32)), verbose=0)[:, 0]
    assert kinds is None
    assert np.allclose(expected, scores, atol=1e-5)
    assert "test-1" == loaded.version
    assert SCHEMA_VERSION == loaded.manifest.schema_version
    assert FEATURE_NAMES == loaded.manifest.features


def test_a_corrupt_keras_file_is_refused(saved: Path) -> None:
    """Garbage in model.keras is refused, not loaded and not raised as a traceback."""
    (saved / KERAS_MODEL).write_bytes(b"not a zip archive at all")
    with pytest.raises(ModelRefused, match="cannot be loaded as a Keras model"):
        load(saved)


def test_a_model_of_another_record_schema_is_refused(saved: Path) -> None:
    """A manifest of another schema version is refused with the advice to retrain."""
    edit_json(saved / MANIFEST, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(ModelRefused, match="retrain it"):
        load(saved)


def test_a_scaler_of_the_wrong_length_is_refused(saved: Path) -> None:
    """A scaler with fewer columns than the manifest's features is refused."""
    scaler = json.loads((saved / SCALER).read_text())
    edit_json(saved / SCALER, data_min=scaler["data_min"][:-1], data_max=scaler["data_max"][:-1])
    with pytest.raises(ModelRefused, match="the scaler has 5 columns"):
        load(saved)


def test_a_model_that_reads_an_identifier_is_refused(saved: Path, keras_model: Any) -> None:
    """A feature list naming an identifier (a sequence number) is refused on load and on save."""
    features = [*FEATURE_NAMES[:-1], "tcp_seq"]
    edit_json(saved / MANIFEST, features=features)
    with pytest.raises(ModelRefused, match="identifiers, not features: tcp_seq"):
        load(saved)
    scaler = Scaler(np.zeros(6), np.ones(6))
    with pytest.raises(ModelRefused, match="tcp_seq"):
        save(saved.parent / "other", keras_model, scaler, Manifest("x", features, 0.5))


def test_a_model_with_log_columns_scores_as_keras_on_logged_scaled_rows(
    tmp_path: Path, keras_model: Any
) -> None:
    """The loaded model takes the log step of its scaler's columns before the min-max step and
    the network, as the rows it was fitted on went through them."""
    rng = np.random.default_rng(4)
    train_rows = rng.exponential(300.0, size=(60, len(FEATURE_NAMES)))
    scaler = Scaler.fit(train_rows, log_columns=(0, 2, 5))
    manifest = Manifest(model_version="test-log", features=FEATURE_NAMES, threshold=0.7)
    loaded = load(save(tmp_path / "model", keras_model, scaler, manifest))
    x = rng.exponential(300.0, size=(32, len(FEATURE_NAMES))).astype(np.float32)

    scores, _ = loaded.scores(x)

    logged = x.astype(np.float64)
    logged[:, [0, 2, 5]] = np.log1p(logged[:, [0, 2, 5]])
    lo, hi = scaler.data_min, scaler.data_max
    by_hand = ((logged - lo) / (hi - lo) * 2.0 - 1.0).astype(np.float32)
    expected = keras_model.predict(by_hand, verbose=0)[:, 0]
    assert (0, 2, 5) == loaded.scaler.log_columns
    assert np.allclose(expected, scores, atol=1e-5)


def test_a_model_of_the_format_before_log_columns_still_loads(saved: Path) -> None:
    """A format 1 manifest beside a plain min-max scaler loads and scores as before."""
    before = load(saved).scores(np.full((3, len(FEATURE_NAMES)), 700.0))[0]
    edit_json(saved / MANIFEST, format=1)

    loaded = load(saved)

    assert 1 == loaded.manifest.format
    assert np.array_equal(before, loaded.scores(np.full((3, len(FEATURE_NAMES)), 700.0))[0])


def test_a_model_of_an_unknown_format_is_refused(saved: Path) -> None:
    """A manifest of a later artifact format is refused, not scored with parts missing."""
    edit_json(saved / MANIFEST, format=99)
    with pytest.raises(ModelRefused, match="artifact format 99 is not 1 or 2"):
        load(saved)


def test_a_scaler_with_bad_log_columns_is_refused_naming_the_file(saved: Path) -> None:
    """log_columns naming a column the scaler does not have refuses the whole model."""
    edit_json(saved / SCALER, log_columns=[0, len(FEATURE_NAMES)])
    with pytest.raises(ModelRefused, match=r"scaler\.json is not a valid scaler .*names column 6"):
        load(saved)
