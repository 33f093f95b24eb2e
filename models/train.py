"""Training: a dense Keras network beside a gradient-boosting baseline, on a split that keeps
flows, host pairs or captures whole, with the scaler (and the choice of columns it takes through
its log step) fitted on training rows only and the threshold set on validation rows for a target
false-positive rate."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from antinex.logs import event
from antinex.options import UsageError
from capture.schema import BY_NAME, FEATURES, MISSING
from models.artifact import MANIFEST, Manifest, ModelRefused, Scaler, save
from models.dataset import Dataset
from models.labels import BENIGN
from models.metrics import Scored, evaluate, predicted_types, threshold_for_fpr
from models.report import write_report
from models.splits import Split, make_split

log = logging.getLogger("antinex.models")

SPLIT_FILE = "split.npz"
# Limitation: the manifest names at most this many training captures, so evaluate's warning about
# shared captures can miss captures past the first thousand (sorted by name).
_MAX_LISTED_CAPTURES = 1000


@dataclass
class TrainSettings:
    """Everything ``antinex train`` can be told; stored in the report."""

    split: str = "scenario"
    test_size: float = 0.25
    val_size: float = 0.15
    seed: int = 0
    holdout_attack: str | None = None
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 256
    patience: int = 4
    learning_rate: float = 1e-3
    target_fpr: float = 0.01
    multiclass: bool = False
    exclude: tuple[str, ...] = ()
    gbm_iterations: int = 200
    gbm_threads: int = 1
    log_compress: bool = True


def choose_features(ds: Dataset, exclude: tuple[str, ...] = ()) -> list[str]:
    """The schema's feature fields, minus ``exclude``; identifiers are never among them."""
    unknown = [name for name in exclude if name not in BY_NAME]
    if unknown:
        raise UsageError(f"--exclude names fields the record does not have: {', '.join(unknown)}")
    features = [name for name in FEATURES if name not in exclude and ds.has(name)]
    if not features:
        raise UsageError("--exclude leaves no features to train on")
    return features


def log_columns(x: np.ndarray) -> tuple[int, ...]:
    """The columns of the training rows ``x`` that the scaler takes through its log step: those
    whose values reach beyond the range of a flag and the ``MISSING`` marker, [-1, 1].

    Such columns (sizes, ports, counts, rates, ages) spread over orders of magnitude, and min-max
    scaling alone would press their ordinary values into a sliver next to -1. Inside [-1, 1] the
    log changes next to nothing, so those columns stay linear.
    """
    reach = np.abs(x).max(axis=0) if len(x) else np.zeros(x.shape[1])
    return tuple(int(c) for c in np.flatnonzero(reach > abs(MISSING)))


def fit_scaler(x: np.ndarray, settings: TrainSettings) -> Scaler:
    """The scaler of the training rows ``x``: its log columns and its minimum and maximum, all
    from these rows."""
    return Scaler.fit(x, log_columns=log_columns(x) if settings.log_compress else ())


def _targets(ds: Dataset, rows: np.ndarray, classes: list[str]) -> np.ndarray:
    if len(classes) == 2:
        return ds["label"][rows].astype(np.int64)
    index = {c: i for i, c in enumerate(classes)}
    # Attack types absent from training count as attacks of the first type for the loss;
    # they only occur on the test side, where the score (1 - P(benign)) is what is measured.
    return np.array([index.get(t, 1) for t in ds["attack_type"][rows].astype(str)])


def _class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=n_classes)
    present = max(int((counts > 0).sum()), 1)
    return {
        c: float(len(y) / (present * counts[c])) if counts[c] else 0.0 for c in range(n_classes)
    }


def _import_keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def build_dnn(n_features: int, n_outputs: int, settings: TrainSettings) -> Any:
    """A wide dense network: ``hidden`` ReLU layers with dropout, sigmoid or softmax output."""
    keras = _import_keras()
    layers: list[Any] = [keras.Input(shape=(n_features,), name="features")]
    for width in settings.hidden:
        layers.append(keras.layers.Dense(width, activation="relu"))
        if settings.dropout > 0:
            layers.append(keras.layers.Dropout(settings.dropout))
    layers.append(
        keras.layers.Dense(n_outputs, activation="sigmoid" if n_outputs == 1 else "softmax")
    )
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="binary_crossentropy" if n_outputs == 1 else "sparse_categorical_crossentropy",
    )
    return model


def _fit_dnn(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    classes: list[str],
    settings: TrainSettings,
) -> Any:
    keras = _import_keras()
    keras.utils.set_random_seed(settings.seed)
    n_outputs = 1 if len(classes) == 2 else len(classes)
    model = build_dnn(x.shape[1], n_outputs, settings)

    class EpochEvents(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            event(
                log,
                logging.INFO,
                "epoch_done",
                epoch=epoch + 1,
                epochs=settings.epochs,
                loss=round(float(logs.get("loss", float("nan"))), 5),
                val_loss=round(float(logs.get("val_loss", float("nan"))), 5),
                seconds=round(time.monotonic() - self.started, 2),
            )

    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True
    )
    model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        class_weight=_class_weights(y, len(classes)),
        callbacks=[stop, EpochEvents()],
        shuffle=True,
        verbose=0,
    )
    return model


def _dnn_scores(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    from models.forward import DenseForward

    forward = DenseForward.from_keras(model)
    out = forward(x) if forward is not None else np.asarray(model.predict(x, verbose=0))
    if out.shape[1] == 1:
        return out[:, 0], None
    return 1.0 - out[:, 0], np.argmax(out[:, 1:], axis=1) + 1


def _fit_gbm(x: np.ndarray, y: np.ndarray, settings: TrainSettings) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    # Limitation: the baseline runs a fixed number of iterations; sklearn's own early stopping
    # would draw its validation rows at random, splitting flows across the two sides.
    model = HistGradientBoostingClassifier(
        max_iter=settings.gbm_iterations,
        early_stopping=False,
        class_weight="balanced",
        random_state=settings.seed,
    )
    # OpenMP threads spin while they wait for each other: on a machine whose cores are busy
    # with other work (measured: 2 cores, load 8) two threads ran ten times slower than one.
    with threadpool_limits(settings.gbm_threads, user_api="openmp"):
        return model.fit(x, y)


def _gbm_scores(
    model: Any, x: np.ndarray, threads: int = 1
) -> tuple[np.ndarray, np.ndarray | None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads, user_api="openmp"):
        proba = model.predict_proba(x)
    if proba.shape[1] == 2:
        return proba[:, 1], None
    return 1.0 - proba[:, 0], np.argmax(proba[:, 1:], axis=1) + 1


def train(
    ds: Dataset, settings: TrainSettings, model_dir: Path, report_dir: Path
) -> dict[str, Any]:
    """Split, fit scaler, DNN and baseline, set the threshold, save the model and the report."""
    if (model_dir / MANIFEST).exists():
        raise UsageError(f"{model_dir} already holds a model; give --out a new directory")
    features = choose_features(ds, settings.exclude)
    split = make_split(
        ds,
        settings.split,
        settings.test_size,
        settings.val_size,
        settings.seed,
        settings.holdout_attack,
    )
    event(
        log,
        logging.INFO,
        "split_made",
        method=split.method,
        train=len(split.train),
        val=len(split.val),
        test=len(split.test),
        notes="; ".join(split.notes) or None,
    )
    train_types = sorted(set(ds["attack_type"][split.train].astype(str).tolist()) - {BENIGN})
    classes = [BENIGN, *train_types] if settings.multiclass else [BENIGN, "attack"]
    if settings.multiclass and len(classes) < 3:
        raise UsageError("--multiclass needs at least two attack types in the training rows")

    x_train = ds.matrix(features, split.train)
    scaler = fit_scaler(x_train, settings)
    event(
        log,
        logging.INFO,
        "scaler_fitted",
        rows=len(x_train),
        columns=len(features),
        log_columns=len(scaler.log_columns),
    )
    x_val, x_test = ds.matrix(features, split.val), ds.matrix(features, split.test)
    y_train, y_val = _targets(ds, split.train, classes), _targets(ds, split.val, classes)
    benign_val = ds["label"][split.val] == 0

    started = time.monotonic()
    dnn = _fit_dnn(
        scaler.transform(x_train), y_train, scaler.transform(x_val), y_val, classes, settings
    )
    dnn_val, _ = _dnn_scores(dnn, scaler.transform(x_val))
    dnn_threshold = threshold_for_fpr(dnn_val[benign_val], settings.target_fpr)
    dnn_test, dnn_best = _dnn_scores(dnn, scaler.transform(x_test))
    event(
        log,
        logging.INFO,
        "dnn_trained",
        seconds=round(time.monotonic() - started, 1),
        threshold=round(dnn_threshold, 6),
    )

    started = time.monotonic()
    gbm = _fit_gbm(x_train, y_train, settings)
    gbm_val, _ = _gbm_scores(gbm, x_val, settings.gbm_threads)
    gbm_threshold = threshold_for_fpr(gbm_val[benign_val], settings.target_fpr)
    gbm_test, gbm_best = _gbm_scores(gbm, x_test, settings.gbm_threads)
    event(log, logging.INFO, "baseline_trained", seconds=round(time.monotonic() - started, 1))

    label, kind = ds["label"][split.test], ds["attack_type"][split.test]
    scored = [
        Scored(
            "dnn",
            label=label,
            scores=dnn_test,
            attack_type=kind,
            threshold=dnn_threshold,
            predicted_type=predicted_types(dnn_test, dnn_best, dnn_threshold, classes),
        ),
        Scored(
            "gbm_baseline",
            label=label,
            scores=gbm_test,
            attack_type=kind,
            threshold=gbm_threshold,
            predicted_type=predicted_types(gbm_test, gbm_best, gbm_threshold, classes),
        ),
    ]
    metrics = [evaluate(s, settings.target_fpr) for s in scored]

    manifest = _manifest(ds, split, features, classes, dnn_threshold, metrics, settings)
    try:
        save(model_dir, dnn, scaler, manifest)
    except ModelRefused as err:  # pragma: no cover - the parts above are built to agree
        raise UsageError(f"the trained model failed its own checks: {err}") from err

    report_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(report_dir / SPLIT_FILE, train=split.train, val=split.val, test=split.test)
    context = {
        "model_version": manifest.model_version,
        "model_dir": str(model_dir),
        "dataset": manifest.training_data,
        "split": split.summary(ds),
        "features": features,
        "classes": classes,
        "settings": {**asdict(settings), "hidden": list(settings.hidden)},
        "scaler_fitted_on": "training rows only",
        "scaler_log_features": [features[c] for c in scaler.log_columns],
        "warnings": [note for note in split.notes if "no attacks" in note],
    }
    write_report(report_dir, "AntiNex training report (test rows)", scored, metrics, context)
    event(
        log,
        logging.INFO,
        "model_saved",
        model_dir=str(model_dir),
        version=manifest.model_version,
        report=str(report_dir),
    )
    return {"manifest": manifest, "metrics": metrics, "split": split}


def _manifest(
    ds: Dataset,
    split: Split,
    features: list[str],
    classes: list[str],
    threshold: float,
    metrics: list[dict[str, Any]],
    settings: TrainSettings,
) -> Manifest:
    """The manifest: version (time and data fingerprint), features, threshold, test results."""
    fingerprint = ds.fingerprint()
    captures = sorted(set(ds["capture"][split.train].astype(str).tolist()))
    now = time.gmtime()
    return Manifest(
        model_version=time.strftime("%Y%m%dT%H%M%SZ", now) + "-" + fingerprint["sha256"][:10],
        features=features,
        threshold=threshold,
        classes=classes,
        metrics={
            "test": _headline(metrics[0]),
            "gbm_baseline_test": _headline(metrics[1]),
            "split": split.method,
            "target_fpr": settings.target_fpr,
        },
        training_data={
            **fingerprint,
            "split": split.method,
            "train_captures": captures[:_MAX_LISTED_CAPTURES],
        },
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
    )


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "precision",
        "recall",
        "f1",
        "pr_auc",
        "roc_auc",
        "fpr",
        "accuracy",
        "majority_baseline_accuracy",
        "rows",
        "attack_rows",
    )
    return {k: m[k] for k in keys}
