"""Detection metrics of attack scores against labels: never accuracy alone, always beside the
majority-class baseline, with the threshold for a target false-positive rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.labels import BENIGN


@dataclass
class Scored:
    """One model's attack scores for a set of rows, with the truth and the threshold used.

    ``predicted_type`` is set by multiclass models: the attack type each row was given (or
    ``benign`` below the threshold).
    """

    name: str
    label: np.ndarray
    scores: np.ndarray
    attack_type: np.ndarray
    threshold: float
    predicted_type: np.ndarray | None = None


def threshold_for_fpr(benign_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of ``benign_scores`` are flagged.

    A row is flagged when its score is at or above the threshold. The result lies strictly
    between 0 and 1, as the model manifest requires.
    """
    if len(benign_scores) == 0:
        return 0.5
    ranked = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(target_fpr * len(ranked)))
    if allowed >= len(ranked):
        threshold = float(ranked[-1])
    else:
        threshold = float(np.nextafter(ranked[allowed], np.inf))
    return float(np.clip(threshold, 1e-7, 1 - 1e-7))


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def evaluate(scored: Scored, target_fpr: float) -> dict[str, Any]:
    """Metrics of ``scored`` at its threshold, plus the threshold ``target_fpr`` would need."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = scored.label.astype(np.int8)
    flagged = scored.scores >= scored.threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    n = len(y)
    attacks, benign = int(y.sum()), n - int(y.sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    both = 0 < attacks < n
    at_target = threshold_for_fpr(scored.scores[y == 0], target_fpr)
    hit_at_target = scored.scores >= at_target
    out: dict[str, Any] = {
        "model": scored.name,
        "rows": n,
        "benign_rows": benign,
        "attack_rows": attacks,
        "prevalence": _ratio(attacks, n),
        "majority_baseline_accuracy": _ratio(max(attacks, benign), n),
        "accuracy": _ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": _ratio(fp, benign),
        "pr_auc": float(average_precision_score(y, scored.scores)) if both else None,
        "roc_auc": float(roc_auc_score(y, scored.scores)) if both else None,
        "threshold": float(scored.threshold),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "recall_by_attack_type": _recall_by_type(scored, flagged),
        "threshold_for_target_fpr": {
            "target_fpr": target_fpr,
            "threshold": at_target,
            "fpr": _ratio(int((hit_at_target & (y == 0)).sum()), benign),
            "recall": _ratio(int((hit_at_target & (y == 1)).sum()), attacks),
        },
    }
    if scored.predicted_type is not None:
        out["multiclass"] = _multiclass(scored)
    return out


def _recall_by_type(scored: Scored, flagged: np.ndarray) -> dict[str, dict[str, Any]]:
    types = scored.attack_type.astype(str)
    out = {}
    for kind in sorted(set(types.tolist()) - {BENIGN}):
        rows = types == kind
        detected = int(flagged[rows].sum())
        out[kind] = {"rows": int(rows.sum()), "detected": detected, "recall": detected / rows.sum()}
    return out


def _multiclass(scored: Scored) -> dict[str, Any]:
    assert scored.predicted_type is not None
    truth = scored.attack_type.astype(str)
    guess = scored.predicted_type.astype(str)
    classes = [BENIGN, *sorted((set(truth.tolist()) | set(guess.tolist())) - {BENIGN})]
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, ([index[t] for t in truth], [index[g] for g in guess]), 1)
    return {
        "classes": classes,
        "confusion": matrix.tolist(),
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "majority_baseline_accuracy": float(matrix.sum(axis=1).max() / max(matrix.sum(), 1)),
    }


def predicted_types(
    scores: np.ndarray, best: np.ndarray | None, threshold: float, classes: list[str]
) -> np.ndarray | None:
    """Per row, the attack type a multiclass model gave (``benign`` below the threshold)."""
    if best is None:
        return None
    names = np.array(classes, dtype=object)[best]
    return np.where(scores >= threshold, names, BENIGN)
