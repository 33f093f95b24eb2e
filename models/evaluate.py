"""``antinex evaluate``: a saved model version scored on a labelled dataset, with a warning when
the dataset holds rows or captures the model was trained on."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from antinex.logs import event
from antinex.options import UsageError
from models.artifact import Manifest, ModelRefused, load
from models.dataset import Dataset
from models.metrics import Scored, evaluate, predicted_types
from models.report import write_report

log = logging.getLogger("antinex.models")


def evaluate_model(
    model_path: Path, ds: Dataset, report_dir: Path, target_fpr: float = 0.01
) -> dict[str, Any]:
    """Score ``ds`` with a saved model and write the report; warns when rows were trained on."""
    try:
        loaded = load(model_path)
    except ModelRefused as err:
        raise UsageError(f"{err}; train a new model with `antinex train`") from err
    manifest = loaded.manifest
    absent = [name for name in manifest.features if not ds.has(name)]
    if absent:
        raise UsageError(f"the dataset lacks the model's features {', '.join(absent[:5])}")
    scores, best = loaded.scores(ds.matrix(manifest.features))
    scores = np.asarray(scores, dtype=np.float64)
    threshold = float(manifest.threshold)
    scored = Scored(
        "model",
        label=ds["label"],
        scores=scores,
        attack_type=ds["attack_type"],
        threshold=threshold,
        predicted_type=predicted_types(scores, best, threshold, manifest.classes),
    )
    metrics = evaluate(scored, target_fpr)
    warnings = _overlap_warnings(manifest, ds)
    for warning in warnings:
        event(log, logging.WARNING, "evaluation_overlaps_training", detail=warning)
    context = {
        "model_version": manifest.model_version,
        "model_dir": str(loaded.directory),
        "dataset": ds.fingerprint(),
        "features": manifest.features,
        "classes": manifest.classes,
        "warnings": warnings,
    }
    write_report(
        report_dir, f"AntiNex evaluation of {manifest.model_version}", [scored], [metrics], context
    )
    return metrics


def _overlap_warnings(manifest: Manifest, ds: Dataset) -> list[str]:
    trained = manifest.training_data or {}
    trained_files = {f.get("sha256") for f in trained.get("files", [])}
    warnings = []
    same = [s.path for s in ds.sources if s.sha256 in trained_files]
    if same:
        warnings.append(
            f"{', '.join(os.path.basename(p) for p in same)} is the model's training data: "
            "its rows were trained on, so this result does not count"
        )
    seen = set(trained.get("train_captures", []))
    shared = sorted(seen & set(ds["capture"].astype(str).tolist()))
    if shared and not same:
        warnings.append(
            f"captures {', '.join(shared[:5])} were trained on: their sessions are known to "
            "the model, so this result overstates what it does on new traffic"
        )
    return warnings
