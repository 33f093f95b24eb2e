"""The numpy forward pass the processor scores with gives the saved Keras model's own scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import tiny_model

from capture.schema import FEATURES
from models.artifact import load, signed_log1p
from stream_processor.features import FeatureColumns
from stream_processor.verdicts import score_rows

# Sizes, window and port: the synthetic records' widest columns.
LOGGED = ("frame_len", "ip_len", "tcp_window", "payload_len", "tcp_dport")


@pytest.fixture(scope="module")
def logged_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary tiny model whose scaler takes LOGGED through the log step."""
    columns = [FEATURES.index(name) for name in LOGGED]
    return tiny_model.train(tmp_path_factory.mktemp("logged") / "model", log_columns=columns)


@pytest.mark.parametrize("name", ["v1", "multi"])
def test_numpy_scores_match_keras_predict_within_1e_5(
    trained_models: dict[str, Path], name: str
) -> None:
    """Sigmoid (binary) and softmax (several attack classes) models agree with Keras."""
    model = load(trained_models[name])
    assert model.forward is not None
    records = tiny_model.synthetic_records(
        600, [tiny_model.BENIGN, tiny_model.PORTSCAN, tiny_model.FINSCAN], seed=11
    )
    matrix = FeatureColumns(model.manifest.features).build([records]).copy()

    scores, classes = score_rows(model, matrix)
    keras_out = model.keras_model.predict(model.scaler.transform(matrix), verbose=0)

    if keras_out.shape[1] == 1:
        expected, expected_classes = keras_out[:, 0], None
    else:
        expected = 1.0 - keras_out[:, 0]
        expected_classes = np.argmax(keras_out[:, 1:], axis=1) + 1
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)
    if expected_classes is not None:
        confident = keras_out.max(axis=1) > 0.6  # ties may break either way
        assert expected_classes[confident].tolist() == classes[confident].tolist()


def test_the_tiny_model_tells_a_syn_scan_from_established_traffic(
    trained_models: dict[str, Path],
) -> None:
    """The test model is good enough for the end-to-end tests to rely on its verdicts."""
    model = load(trained_models["v1"])
    records = tiny_model.synthetic_records(
        400, [tiny_model.BENIGN, tiny_model.PORTSCAN], seed=12, first_host=5000
    )
    scores, _ = score_rows(model, FeatureColumns(model.manifest.features).build([records]))

    threshold = model.manifest.threshold
    assert (scores[0::2] < threshold).all()
    assert (scores[1::2] >= threshold).all()


def test_with_log_columns_the_processor_scores_as_keras_on_logged_scaled_rows(
    logged_model: Path,
) -> None:
    """The processor's scores equal Keras' on rows logged and min-max scaled by hand."""
    model = load(logged_model)
    records = tiny_model.synthetic_records(400, [tiny_model.BENIGN, tiny_model.PORTSCAN], seed=13)
    matrix = FeatureColumns(model.manifest.features).build([records]).copy()

    scores, _ = score_rows(model, matrix)

    columns = [model.manifest.features.index(name) for name in LOGGED]
    assert tuple(sorted(columns)) == model.scaler.log_columns
    logged = matrix.astype(np.float64)
    logged[:, columns] = signed_log1p(logged[:, columns])
    span = model.scaler.data_max - model.scaler.data_min
    span = np.where(span == 0, 1.0, span)  # constant columns, as MinMaxScaler treats them
    by_hand = ((logged - model.scaler.data_min) / span * 2.0 - 1.0).astype(np.float32)
    expected = model.keras_model.predict(by_hand, verbose=0)[:, 0]
    np.testing.assert_allclose(expected, scores, rtol=0, atol=1e-5)
    threshold = model.manifest.threshold
    assert (scores[0::2] < threshold).all()
    assert (scores[1::2] >= threshold).all()
