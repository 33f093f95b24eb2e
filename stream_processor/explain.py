"""Which features weighed most in an alert's score: gradient * distance from the benign mean.

For an alerted record, the gradient of the log-odds of its attack score with respect to the
scaled features is back-propagated through the model's Dense layers (the weights the numpy
forward pass runs). A feature's contribution is ``(scaled value - benign mean) * gradient``:
the first-order share, in log-odds, of the record's departure from a typical benign record that
this feature accounts for. Positive contributions pushed the score towards attack. The benign
mean is a running mean of the records the model scored benign (a sample of each batch), so it
follows the traffic it sees; until one benign record was scored, the middle of the scaler's
range (0) stands in for it. It is a mean of the values the min-max step receives, so for the
columns the scaler takes through its log step it is a mean of logs: the typical benign value,
not one pulled up by a few huge ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# Limitation: the attribution is first-order (a gradient at one point), so features acting
# through saturated units or interactions are under-weighted; models with layers the numpy pass
# cannot run fall back to |scaled value - benign mean| alone.

_SAMPLE_ROWS = 1024


class BenignBaseline:
    """Running mean of records scored benign, in the units the scaler's min-max step receives:
    raw feature values, or their log where ``compress`` (the scaler's ``compress``) takes it."""

    def __init__(
        self,
        features: tuple[str, ...],
        compress: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.features = features
        self.compress = compress
        self._sum = np.zeros(len(features), dtype=np.float64)
        self._count = 0

    def add(self, matrix: np.ndarray, benign: np.ndarray) -> None:
        """Fold a sample (at most 1024 rows) of the benign rows of ``matrix`` (raw feature
        values) into the mean."""
        rows = np.flatnonzero(benign)
        if rows.size > _SAMPLE_ROWS:
            rows = rows[:: -(-rows.size // _SAMPLE_ROWS)]
        if rows.size:
            sample = matrix[rows]
            if self.compress is not None:
                sample = self.compress(sample)
            self._sum += sample.sum(axis=0, dtype=np.float64)
            self._count += int(rows.size)

    def mean(self) -> np.ndarray | None:
        return self._sum / self._count if self._count else None


def log_odds_gradients(
    layers: list[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray
) -> np.ndarray:
    """d(log-odds of attack)/d(input) per row of ``x`` for a Dense stack (kernel, bias,
    activation).

    The attack probability is the single sigmoid output, or 1 - P(benign) of a softmax output.
    Log-odds rather than the probability: a confident score saturates the sigmoid and would
    shrink every gradient towards zero, while the log-odds gradient keeps its scale (and, being
    a positive multiple of the probability gradient per row, ranks features the same way).
    """
    outputs = []
    out = x.astype(np.float64)
    for kernel, bias, activation in layers:
        out = _activate(activation, out @ kernel + bias)
        outputs.append(out)
    kernel, _bias, activation = layers[-1]
    if activation == "softmax":
        grad = out / np.maximum(1.0 - out[:, :1], 1e-12)
        grad[:, 0] = -1.0
    else:
        grad = np.ones_like(out)
        if activation != "sigmoid":  # a linear or other output: take it as the score itself
            grad = _activation_grad(activation, out, grad)
    grad = grad @ kernel.T
    for (kernel, _bias, activation), activated in zip(
        reversed(layers[:-1]), reversed(outputs[:-1]), strict=True
    ):
        grad = _activation_grad(activation, activated, grad) @ kernel.T
    return grad


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "softmax":
        shifted = np.exp(z - z.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return z


def _activation_grad(name: str, activated: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Gradient before the activation, from its output ``activated`` and the gradient after."""
    if name == "relu":
        return grad * (activated > 0)
    if name == "tanh":
        return grad * (1.0 - activated**2)
    if name == "sigmoid":
        return grad * activated * (1.0 - activated)
    if name == "softmax":
        return activated * (grad - (grad * activated).sum(axis=1, keepdims=True))
    return grad


def top_features(
    model: Any, rows: np.ndarray, baseline: BenignBaseline, count: int = 5
) -> list[list[dict[str, Any]]]:
    """The ``count`` features with the largest |contribution| for each row of ``rows`` (raw
    feature values), as ``{"name", "value", "contribution"}`` dicts, largest first."""
    if rows.shape[0] == 0:
        return []
    scaled = model.scaler.transform(rows).astype(np.float64)
    mean = baseline.mean()
    centre = (
        np.zeros(rows.shape[1])
        if mean is None
        else model.scaler.minmax(mean.astype(np.float32)).astype(np.float64)
    )
    distance = scaled - centre
    forward = getattr(model, "forward", None)
    if forward is not None:
        contribution = distance * log_odds_gradients(forward.layers, scaled)
    else:
        contribution = np.abs(distance)
    names = baseline.features
    ranked = np.argsort(-np.abs(contribution), axis=1)[:, :count]
    result = []
    for row, order in enumerate(ranked):
        result.append(
            [
                {
                    "name": names[j],
                    "value": _plain(rows[row, j]),
                    "contribution": round(float(contribution[row, j]), 4),
                }
                for j in order
            ]
        )
    return result


def _plain(value: float) -> float | int | None:
    number = float(value)
    if number == -1:
        return None  # MISSING: the packet does not carry the field
    return int(number) if number.is_integer() else round(number, 4)
