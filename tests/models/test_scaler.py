"""Tests of the scaler: plain min-max as before, the signed log step on chosen columns, its JSON
form (old files without the log step included) and the values it refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from models.artifact import Scaler, signed_log1p


def by_hand(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """MinMaxScaler(feature_range=(-1, 1)) written out."""
    return (x - lo) / (hi - lo) * 2.0 - 1.0


class TestPlainMinMax:
    def test_without_log_columns_the_scaler_is_min_max_of_the_raw_values(self) -> None:
        """Fitted without log columns, data_min and data_max are the raw extremes."""
        x = np.array([[0.0, -1.0], [10.0, 3.0], [4.0, 1.0]])

        scaler = Scaler.fit(x)

        assert () == scaler.log_columns
        assert [0.0, -1.0] == scaler.data_min.tolist()
        assert [10.0, 3.0] == scaler.data_max.tolist()
        np.testing.assert_allclose(
            by_hand(x, scaler.data_min, scaler.data_max), scaler.transform(x)
        )
        assert "log_columns" not in scaler.to_json()

    def test_a_scaler_file_without_log_columns_scales_as_it_always_did(self) -> None:
        """A scaler.json written before the log step existed loads with no log column."""
        old = {
            "kind": "MinMaxScaler",
            "feature_range": [-1.0, 1.0],
            "data_min": [0.0, -1.0],
            "data_max": [10.0, 3.0],
        }
        x = np.array([[5.0, 0.0], [2500.0, -1.0]], dtype=np.float32)

        scaler = Scaler.from_json(old)

        assert () == scaler.log_columns
        np.testing.assert_allclose(
            by_hand(x, np.array([0.0, -1.0]), np.array([10.0, 3.0])),
            scaler.transform(x),
            rtol=1e-6,
        )
        assert old == scaler.to_json()


class TestLogColumns:
    def test_the_signed_log_keeps_sign_order_and_zero(self) -> None:
        """sign(x)·ln(1 + |x|): 0 stays 0, the MISSING marker -1 becomes -ln 2."""
        x = np.array([-1.0, 0.0, 1.0, math.e - 1.0, 14_000.0])

        expected = [-math.log(2), 0.0, math.log(2), 1.0, math.log1p(14_000.0)]
        assert pytest.approx(expected) == signed_log1p(x).tolist()

    def test_the_extremes_are_fitted_on_the_logged_training_rows(self) -> None:
        """data_min and data_max of a log column are those of the logged values; other columns
        keep their raw extremes."""
        x = np.array([[-1.0, 5.0], [0.0, 7.0], [14_000.0, 6.0]])

        scaler = Scaler.fit(x, log_columns=(0,))

        assert (0,) == scaler.log_columns
        assert pytest.approx([-math.log(2), 5.0]) == scaler.data_min.tolist()
        assert pytest.approx([math.log1p(14_000.0), 7.0]) == scaler.data_max.tolist()

    def test_transform_logs_the_chosen_columns_then_scales_and_leaves_its_input_alone(
        self,
    ) -> None:
        """A rate in the thousands no longer squeezes the ordinary rates into a sliver at -1."""
        train = np.array([[0.0, 5.0], [10.0, 7.0], [14_000.0, 6.0]], dtype=np.float32)
        scaler = Scaler.fit(train, log_columns=(0,))
        x = np.array([[10.0, 6.0], [-1.0, 5.0]], dtype=np.float32)
        before = x.copy()

        scaled = scaler.transform(x)

        logged = np.column_stack([signed_log1p(x[:, 0].astype(np.float64)), x[:, 1]])
        expected = by_hand(logged, scaler.data_min, scaler.data_max)
        np.testing.assert_allclose(expected, scaled, rtol=1e-5, atol=1e-6)
        assert scaled[0, 0] > -0.5  # plain min-max would give 10 / 14000 of the way: -0.9986
        np.testing.assert_array_equal(before, x)
        assert np.float32 == scaled.dtype

    def test_one_row_scales_as_the_same_row_in_a_matrix(self) -> None:
        """A single row (the explanations' benign mean) goes through the same log columns."""
        scaler = Scaler.fit(np.array([[0.0, 1.0, 2.0], [900.0, 3.0, 80.0]]), log_columns=(0, 2))
        row = np.array([30.0, 2.0, 7.0])

        np.testing.assert_allclose(scaler.transform(row[None, :])[0], scaler.transform(row))

    def test_log_columns_survive_the_json_round_trip(self) -> None:
        """to_json writes log_columns; from_json reads them back to the same transform."""
        x = np.random.default_rng(3).exponential(500.0, size=(40, 4))
        scaler = Scaler.fit(x, log_columns=(3, 1))

        again = Scaler.from_json(json.loads(json.dumps(scaler.to_json())))

        assert [1, 3] == scaler.to_json()["log_columns"]
        assert (1, 3) == again.log_columns
        np.testing.assert_allclose(scaler.transform(x), again.transform(x))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("all", "is not a list of column indices"),
        ([1.0], "is not a list of column indices"),
        ([True], "is not a list of column indices"),
        ([2], "names column 2, but the scaler has columns 0 to 1"),
        ([-1], "names column -1"),
        ([1, 0], "not in increasing order without repeats"),
        ([0, 0], "not in increasing order without repeats"),
    ],
)
def test_a_bad_log_columns_value_is_refused_with_the_reason(value: Any, reason: str) -> None:
    obj = {
        "kind": "MinMaxScaler",
        "feature_range": [-1, 1],
        "data_min": [0, 0],
        "data_max": [1, 1],
        "log_columns": value,
    }
    with pytest.raises(ValueError, match=reason):
        Scaler.from_json(obj)


def test_training_logs_the_columns_that_reach_beyond_minus_one_to_one() -> None:
    """Flags and the MISSING marker stay linear; sizes, ports and negative extremes are logged."""
    from models.train import log_columns

    x = np.array(
        [
            [0.0, -1.0, 0.0, 0.0, 0.5],
            [1.0, 1.0, 443.0, -5.0, -0.5],
            [1.0, 0.0, 65_535.0, 0.0, 0.0],
        ]
    )

    assert (2, 3) == log_columns(x)
