"""Tests of the detection metrics: the threshold for a target false-positive rate, and the
numbers a report shows beside each other."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import Scored, evaluate, threshold_for_fpr


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.5])
def test_the_threshold_flags_at_most_the_target_share_of_benign_rows(target: float) -> None:
    """At the chosen threshold no more than ``target`` of the benign scores are flagged, and
    the threshold is as low as that allows."""
    benign = np.random.default_rng(0).random(1000)
    threshold = threshold_for_fpr(benign, target)
    assert 0 < threshold < 1
    assert (benign >= threshold).mean() <= target
    assert (benign >= threshold - 1e-3).mean() > target or target == 0.0


def test_metrics_count_what_the_threshold_flags() -> None:
    """Confusion counts, precision, recall, FPR and the majority baseline follow from the rows."""
    label = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 0.6, 0.7, 0.8, 0.2])
    kinds = np.array(["benign"] * 6 + ["scan", "scan", "flood", "flood"], dtype=object)
    m = evaluate(Scored("m", label, scores, kinds, threshold=0.55), target_fpr=0.2)
    assert {"tn": 5, "fp": 1, "fn": 1, "tp": 3} == m["confusion"]
    assert 0.75 == m["precision"] and 0.75 == m["recall"]
    assert pytest.approx(1 / 6) == m["fpr"]
    assert 0.6 == m["majority_baseline_accuracy"]
    assert 0.8 == m["accuracy"]
    assert {"scan": 1.0, "flood": 0.5} == {
        k: v["recall"] for k, v in m["recall_by_attack_type"].items()
    }
    assert m["threshold_for_target_fpr"]["fpr"] <= 0.2


def test_multiclass_confusion_lists_each_class_once() -> None:
    """The multiclass matrix has one row per class, benign first."""
    label = np.array([0, 1, 1])
    kinds = np.array(["benign", "scan", "flood"], dtype=object)
    guess = np.array(["benign", "scan", "scan"], dtype=object)
    m = evaluate(Scored("m", label, np.array([0.1, 0.9, 0.8]), kinds, 0.5, guess), 0.01)
    assert ["benign", "flood", "scan"] == m["multiclass"]["classes"]
    assert [[1, 0, 0], [0, 0, 1], [0, 0, 1]] == m["multiclass"]["confusion"]
