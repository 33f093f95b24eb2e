"""Tests of ``antinex train`` and ``antinex evaluate`` on a dataset built from scapy captures:
the report files, sane metrics, a scaler fitted on training rows only, honest warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_traffic import RunAntinex

from models.artifact import load
from models.dataset import load_dataset
from models.report import PLOTS, REPORT_JSON, SUMMARY_MD
from models.train import SPLIT_FILE, log_columns

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(built_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once for this module: small network, few epochs, scenario split."""
    from antinex import cli

    out = tmp_path_factory.mktemp("trained") / "model"
    code = cli.main(
        [
            "train",
            "--dataset",
            str(built_dataset),
            "--out",
            str(out),
            "--split",
            "scenario",
            "--hidden",
            "32,16",
            "--epochs",
            "12",
            "--learning-rate",
            "0.005",
            "--gbm-iterations",
            "30",
        ]
    )
    assert 0 == code
    return out


def test_training_writes_the_model_and_the_report(trained: Path) -> None:
    """The model directory loads; the report has its JSON, summary, plots and the split."""
    loaded = load(trained)
    assert ["benign", "attack"] == loaded.manifest.classes
    assert 0 < loaded.manifest.threshold < 1
    for name in (REPORT_JSON, SUMMARY_MD, SPLIT_FILE, *PLOTS):
        assert (trained / "report" / name).stat().st_size > 0, name
    summary = (trained / "report" / SUMMARY_MD).read_text()
    assert "no-skill" in summary and "gbm_baseline" in summary


def test_reported_metrics_are_sane_and_beside_their_baselines(trained: Path) -> None:
    """Every rate is within 0..1, both models beat random scores, accuracy has its baseline."""
    report = json.loads((trained / "report" / REPORT_JSON).read_text())
    assert {"dnn", "gbm_baseline"} == set(report["models"])
    for m in report["models"].values():
        for key in ("precision", "recall", "f1", "pr_auc", "roc_auc", "fpr", "accuracy"):
            assert 0.0 <= m[key] <= 1.0, key
        assert m["roc_auc"] > 0.6
        assert m["pr_auc"] > m["prevalence"]
        assert m["majority_baseline_accuracy"] >= 0.5
        assert {"port_scan", "ssh_guessing"} == set(m["recall_by_attack_type"])
        c = m["confusion"]
        assert m["rows"] == c["tn"] + c["fp"] + c["fn"] + c["tp"]
    assert "training rows only" == report["scaler_fitted_on"]


def test_the_split_keeps_captures_apart(trained: Path, built_dataset: Path) -> None:
    """No capture has rows in both the training and the test side of the saved split."""
    ds = load_dataset([built_dataset], progress=False)
    split = np.load(trained / "report" / SPLIT_FILE)
    captures = ds["capture"].astype(str)
    assert set() == set(captures[split["train"]]) & set(captures[split["test"]])
    assert set() == set(captures[split["val"]]) & set(captures[split["test"]])


def test_the_scaler_is_fitted_on_the_training_rows_only(trained: Path, built_dataset: Path) -> None:
    """The saved scaler's log columns, minimum and maximum are those of the training rows (after
    the log step), not of all rows."""
    loaded = load(trained)
    ds = load_dataset([built_dataset], progress=False)
    split = np.load(trained / "report" / SPLIT_FILE)
    train_rows = ds.matrix(loaded.manifest.features, split["train"]).astype(np.float64)
    every_row = ds.matrix(loaded.manifest.features).astype(np.float64)
    assert log_columns(train_rows) == loaded.scaler.log_columns
    assert loaded.scaler.log_columns  # the built dataset has heavy-tailed columns
    logged_train, logged_all = (loaded.scaler.compress(x) for x in (train_rows, every_row))
    assert np.allclose(logged_train.min(axis=0), loaded.scaler.data_min)
    assert np.allclose(logged_train.max(axis=0), loaded.scaler.data_max)
    assert not np.allclose(logged_all.max(axis=0), loaded.scaler.data_max)
    report = json.loads((trained / "report" / REPORT_JSON).read_text())
    expected = [loaded.manifest.features[c] for c in loaded.scaler.log_columns]
    assert expected == report["scaler_log_features"]


def test_evaluating_on_the_training_data_says_it_does_not_count(
    antinex: RunAntinex, trained: Path, built_dataset: Path, tmp_path: Path
) -> None:
    """evaluate writes the report and warns that the rows were trained on."""
    out = tmp_path / "evaluation"
    code, stdout, err = antinex(
        "evaluate", "--model", trained, "--dataset", built_dataset, "--out", out
    )
    assert 0 == code, err
    assert "no-skill" in stdout
    assert "does not count" in (out / SUMMARY_MD).read_text()
    assert "evaluation_overlaps_training" in err
    assert all((out / name).is_file() for name in PLOTS)


def test_training_refuses_to_overwrite_a_model(
    antinex: RunAntinex, trained: Path, built_dataset: Path
) -> None:
    """--out naming an existing model directory ends in exit code 2 before any training."""
    code, _, err = antinex("train", "--dataset", built_dataset, "--out", trained)
    assert 2 == code
    assert "already holds a model" in err


def test_an_unknown_excluded_field_is_a_usage_error(
    antinex: RunAntinex, built_dataset: Path, tmp_path: Path
) -> None:
    """--exclude with a name the record does not have is refused."""
    code, _, err = antinex(
        "train", "--dataset", built_dataset, "--out", tmp_path / "m", "--exclude", "tcp_bogus"
    )
    assert 2 == code
    assert "tcp_bogus" in err


def test_without_log_compress_the_scaler_is_min_max_of_the_raw_training_rows(
    built_dataset: Path, tmp_path: Path
) -> None:
    """--no-log-compress trains on min-max scaling alone: no log column, raw extremes."""
    from antinex import cli

    out = tmp_path / "linear"
    args = ["train", "--dataset", str(built_dataset), "--out", str(out), "--split", "scenario"]
    args += ["--hidden", "8", "--epochs", "1", "--gbm-iterations", "5", "--no-log-compress"]
    assert 0 == cli.main(args)

    loaded = load(out)
    ds = load_dataset([built_dataset], progress=False)
    split = np.load(out / "report" / SPLIT_FILE)
    train_rows = ds.matrix(loaded.manifest.features, split["train"]).astype(np.float64)
    assert () == loaded.scaler.log_columns
    assert np.allclose(train_rows.max(axis=0), loaded.scaler.data_max)
    report = json.loads((out / "report" / REPORT_JSON).read_text())
    assert [] == report["scaler_log_features"]


def test_the_default_model_rebuild_counts_flagged_packets_and_flows_per_run(
    trained: Path, built_dataset: Path, tmp_path: Path
) -> None:
    """rebuild.py's per-run table: each run's counts are the model's own verdicts on that run,
    and the three held-out runs together add up their packets."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "models" / "default" / "rebuild.py"
    spec = importlib.util.spec_from_file_location("rebuild", path)
    assert spec is not None and spec.loader is not None
    rebuild = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rebuild)

    runs = (*rebuild.HELDOUT_RUNS, rebuild.BUSY_HELDOUT_RUN)
    counts = rebuild.flows_flagged(dict.fromkeys(runs, built_dataset), tmp_path, trained)

    model = load(trained)
    ds = load_dataset([built_dataset], progress=False)
    scores, _ = model.scores(ds.matrix(model.manifest.features))
    flagged = scores >= model.manifest.threshold
    kinds = ds["attack_type"].astype(str)
    one_run = counts[rebuild.HELDOUT_RUNS[0]]
    assert sorted(set(kinds.tolist())) == sorted(one_run)
    for kind, c in one_run.items():
        rows = kinds == kind
        assert int(rows.sum()) == c["packets"]
        assert int(flagged[rows].sum()) == c["packets_flagged"]
        assert 0 < c["flows"] <= c["packets"] and c["flagged"] <= c["flows"]
    together = counts[" + ".join(rebuild.HELDOUT_RUNS)]
    for kind, c in together.items():
        assert len(rebuild.HELDOUT_RUNS) * one_run[kind]["packets"] == c["packets"]
    assert (tmp_path / "flows.json").is_file()
