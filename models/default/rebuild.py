"""Rebuild the shipped default model from nothing and measure it on traffic it never saw.

Steps, each written under OUT:

    runs/      lab runs (``antinex lab run``, as root): full, quick, scans, web and the two
               benign-only busy scenarios of this directory
    data/      one dataset per run (``antinex dataset build``), each its own capture
    audit.txt  ``antinex audit`` of every dataset (audit.json: the same as JSON);
               audit-attack-runs.txt: of the four runs with attacks alone
    model/     the model version (manifest.json, scaler.json, model.keras), its report on the
               held-out runs (report.json, summary.md, plots) and ``training/``, the report of
               ``antinex train`` on the flow-group test rows of the training runs
    loo/       leave-one-attack-type-out: per attack type, a model trained without it
    without-busy-benign.json   the same recipe trained on the full run alone
    flows.json per held-out run and attack type, the packets and flows with a packet flagged
    demo/      the demo capture cut from the quick run, scored with ``antinex evaluate``
    results.json, results.md   every number REPORT.md quotes

Usage::

    python models/default/rebuild.py OUT              # as root: runs the lab first
    python models/default/rebuild.py OUT --runs DIR   # reuse lab runs DIR/<run>/
    python models/default/rebuild.py OUT --ship       # also install the model in models/default

A step whose output exists is not run again, so an interrupted rebuild resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from antinex.logs import event, setup
from models.artifact import CURRENT_POINTER, MANIFEST, load
from models.dataset import Dataset, load_dataset
from models.labels import BENIGN
from models.metrics import Scored, evaluate, predicted_types, threshold_for_fpr
from models.report import write_report
from models.splits import make_split

# The private helpers are `antinex train`'s own fitting and scoring code, reused so that the
# held-out baseline and the leave-one-out models are fitted exactly as `train` fits them.
from models.train import (
    TrainSettings,
    _dnn_scores,
    _fit_dnn,
    _fit_gbm,
    _gbm_scores,
    _targets,
    choose_features,
    fit_scaler,
    train,
)

log = logging.getLogger("antinex.models.default")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ANTINEX = str(Path(sys.executable).with_name("antinex"))

# Lab runs by name, and the scenario each comes from.
SCENARIOS = {
    "full": "full",
    "quick": "quick",
    "scans": "scans",
    "web": "web",
    "benign-busy": str(HERE / "benign-busy.json"),
    "benign-busy-2": str(HERE / "benign-busy-2.json"),
}
# Limitation: a host's context features carry its last minute, so an attack right after another
# from the same host scores differently; `full` holds one such sequence (hydra after the host's
# SYN flood, without which `quick`'s brute force went unflagged) and no other.
TRAIN_RUNS = ("full", "benign-busy")
HELDOUT_RUNS = ("quick", "scans", "web")
BUSY_HELDOUT_RUN = "benign-busy-2"

# Features left out, and why: each would teach the model the lab, not the traffic.
EXCLUDED = {
    "ip_ttl": "one kernel sends every lab packet, so benign TTL is always 64 while nmap and "
    "masscan craft others; on a real network TTL depends on the sender's OS and path",
    "ipv6_hlim": "as ip_ttl, for IPv6",
    "vlan_id": "constant (no VLAN in the lab): a tagged frame would feed the model a value it "
    "has never seen",
    "ipv6_version": "IPv6 is off in the lab; its few IPv6 packets are all benign, so these "
    "columns could only teach that IPv6 is benign",
    "ipv6_tc": "IPv6 is off in the lab (see ipv6_version)",
    "ipv6_plen": "IPv6 is off in the lab (see ipv6_version)",
    "ipv6_nh": "IPv6 is off in the lab (see ipv6_version)",
    "ipv6_ext_count": "IPv6 is off in the lab (see ipv6_version)",
    "icmpv6_type": "IPv6 is off in the lab (see ipv6_version)",
    "icmpv6_code": "IPv6 is off in the lab (see ipv6_version)",
    "ctx_src_new_host_rate": "a clock in the lab: every attacker aims at the one victim among "
    "seven hosts, so the rate only falls with time since the capture began (the audit's "
    "row-order check: |Spearman| 0.95 with the row's position)",
    "flow_dir": "says which endpoint has the lower address; in the lab the victim always does, "
    "so the field means 'towards the victim' there and nothing elsewhere",
}

SETTINGS = TrainSettings(
    split="flow-group",
    test_size=0.15,
    val_size=0.15,
    hidden=(64, 32),
    multiclass=True,
    exclude=tuple(EXCLUDED),
    gbm_iterations=100,
)


# Lab runs and datasets -----------------------------------------------------------------------


def _antinex(*argv: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run([ANTINEX, *argv], check=check, **kwargs)


def lab_runs(out: Path, reuse: Path | None) -> dict[str, Path]:
    """The directory of each lab run: reused from ``reuse``, or recorded now (root)."""
    runs = {}
    for name, scenario in SCENARIOS.items():
        run = (reuse or out / "runs") / name
        if not (run / "records.jsonl").is_file():
            if reuse is not None:
                raise SystemExit(f"{run} holds no lab run; record it with `antinex lab run`")
            if os.geteuid() != 0:
                raise SystemExit("the lab needs root to build namespaces; run as root or --runs")
            event(log, logging.INFO, "lab_run_starting", run=name)
            _antinex("lab", "run", "--scenario", scenario, "--out", str(run))
        runs[name] = run
    return runs


def build_datasets(runs: dict[str, Path], out: Path) -> dict[str, Path]:
    """One dataset per run, its capture named after the run so that captures stay apart."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, run in runs.items():
        dataset = data / f"lab-{name}.csv.gz"
        if not dataset.is_file():
            records = data / f"lab-{name}.jsonl"
            records.unlink(missing_ok=True)
            records.symlink_to((run / "records.jsonl").resolve())
            _antinex(
                "dataset", "build", "--input", str(records), "--labels", str(run / "labels.json"),
                "--scenario", f"lab-{name}", "--out", str(dataset),
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
        paths[name] = dataset
    return paths


def run_audit(datasets: dict[str, Path], out: Path, names: tuple[str, ...], stem: str) -> None:
    """``antinex audit`` of the datasets ``names`` into OUT/<stem>.txt and .json; findings are
    reported, not fatal."""
    if (out / f"{stem}.txt").is_file():
        return
    done = _antinex(
        "audit", *(str(datasets[n]) for n in names), "--top", "20",
        "--json", str(out / f"{stem}.json"), check=False, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode not in (0, 1):
        raise SystemExit(f"antinex audit failed: {done.stderr.strip()[-500:]}")
    (out / f"{stem}.txt").write_text(done.stdout)


def _load(datasets: dict[str, Path], names: tuple[str, ...]) -> Dataset:
    return load_dataset([datasets[n] for n in names], progress=False)


# Scoring -------------------------------------------------------------------------------------


def _scored(
    name: str, ds: Dataset, scores: Any, best: Any, threshold: float, classes: list[str]
) -> Scored:
    return Scored(
        name,
        label=ds["label"],
        scores=np.asarray(scores, dtype=np.float64),
        attack_type=ds["attack_type"],
        threshold=threshold,
        predicted_type=predicted_types(scores, best, threshold, classes),
    )


class Pair:
    """The network and the gradient-boosting baseline of one training, with their thresholds."""

    def __init__(
        self, ds: Dataset, settings: TrainSettings, dnn: Any = None, scaler: Any = None
    ) -> None:
        self.settings = settings
        self.features = choose_features(ds, settings.exclude)
        self.split = make_split(
            ds, settings.split, settings.test_size, settings.val_size, settings.seed
        )
        train_types = sorted(set(ds["attack_type"][self.split.train].astype(str)) - {BENIGN})
        self.classes = [BENIGN, *train_types] if settings.multiclass else [BENIGN, "attack"]
        x_train = ds.matrix(self.features, self.split.train)
        x_val = ds.matrix(self.features, self.split.val)
        y_train = _targets(ds, self.split.train, self.classes)
        y_val = _targets(ds, self.split.val, self.classes)
        benign_val = ds["label"][self.split.val] == 0
        if dnn is None:
            scaler = fit_scaler(x_train, settings)
            dnn = _fit_dnn(
                scaler.transform(x_train),
                y_train,
                scaler.transform(x_val),
                y_val,
                self.classes,
                settings,
            )
        self.dnn, self.scaler = dnn, scaler
        val_scores, _ = _dnn_scores(dnn, scaler.transform(x_val))
        self.dnn_threshold = threshold_for_fpr(val_scores[benign_val], settings.target_fpr)
        self.gbm = _fit_gbm(x_train, y_train, settings)
        gbm_val, _ = _gbm_scores(self.gbm, x_val, settings.gbm_threads)
        self.gbm_threshold = threshold_for_fpr(gbm_val[benign_val], settings.target_fpr)

    def score(self, ds: Dataset) -> list[Scored]:
        x = ds.matrix(self.features)
        dnn, dnn_best = _dnn_scores(self.dnn, self.scaler.transform(x))
        gbm, gbm_best = _gbm_scores(self.gbm, x, self.settings.gbm_threads)
        return [
            _scored("dnn", ds, dnn, dnn_best, self.dnn_threshold, self.classes),
            _scored("gbm_baseline", ds, gbm, gbm_best, self.gbm_threshold, self.classes),
        ]


# The default model ---------------------------------------------------------------------------


def train_default(datasets: dict[str, Path], out: Path, settings: TrainSettings) -> dict[str, Any]:
    """Train on TRAIN_RUNS with ``antinex train``'s code; score the held-out runs."""
    model_root = out / "model"
    if list(model_root.glob("*/" + MANIFEST)) and (out / "heldout.json").is_file():
        return dict(json.loads((out / "heldout.json").read_text()))
    shutil.rmtree(model_root, ignore_errors=True)
    train_ds = _load(datasets, TRAIN_RUNS)
    staging = model_root / "staging"

    started = time.monotonic()
    result = train(train_ds, settings, staging, staging / "training")
    train_seconds = time.monotonic() - started
    version = result["manifest"].model_version
    model_dir = model_root / version
    staging.rename(model_dir)
    (model_dir / "training" / "split.npz").unlink(missing_ok=True)
    training_report = json.loads((model_dir / "training" / "report.json").read_text())
    training_report["model_dir"] = version
    (model_dir / "training" / "report.json").write_text(json.dumps(training_report, indent=1))

    loaded = load(model_dir)
    pair = Pair(train_ds, settings, loaded.keras_model, loaded.scaler)
    split_summary = result["split"].summary(train_ds)
    del train_ds
    held = _load(datasets, HELDOUT_RUNS)
    scored = pair.score(held)
    metrics = [evaluate(s, settings.target_fpr) for s in scored]
    context = {
        "model_version": version,
        "dataset": held.fingerprint(),
        "trained_on": list(TRAIN_RUNS),
        "held_out_runs": list(HELDOUT_RUNS),
        "features": pair.features,
        "excluded_features": EXCLUDED,
        "classes": pair.classes,
        "warnings": [],
    }
    write_report(
        model_dir,
        f"AntiNex default model {version} on lab runs held out from training",
        scored,
        metrics,
        context,
    )
    busy = _load(datasets, (BUSY_HELDOUT_RUN,))
    busy_fpr = {s.name: float(np.mean(s.scores >= s.threshold)) for s in pair.score(busy)}
    summary = {
        "model_version": version,
        "model_dir": str(model_dir),
        "train_seconds": round(train_seconds, 1),
        "model_bytes": sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()),
        "features": pair.features,
        "scaler_log_features": [pair.features[c] for c in loaded.scaler.log_columns],
        "split": split_summary,
        "internal_test": result["metrics"],
        "heldout": metrics,
        "busy_benign_fpr": busy_fpr,
        "busy_benign_rows": busy.n_rows,
    }
    (out / "heldout.json").write_text(json.dumps(summary, indent=1, default=_plain) + "\n")
    return summary


def without_busy_benign(
    datasets: dict[str, Path], out: Path, settings: TrainSettings
) -> dict[str, Any]:
    """The same recipe trained on the full run alone: what the busy benign run changes."""
    path = out / "without-busy-benign.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    pair = Pair(_load(datasets, ("full",)), settings)
    held = _load(datasets, HELDOUT_RUNS)
    metrics = [evaluate(s, settings.target_fpr) for s in pair.score(held)]
    busy = _load(datasets, (BUSY_HELDOUT_RUN,))
    result = {
        "trained_on": ["full"],
        "heldout": metrics,
        "busy_benign_fpr": {
            s.name: float(np.mean(s.scores >= s.threshold)) for s in pair.score(busy)
        },
    }
    path.write_text(json.dumps(result, indent=1, default=_plain) + "\n")
    return result


def flows_flagged(
    datasets: dict[str, Path], out: Path, model_dir: Path
) -> dict[str, dict[str, dict[str, int]]]:
    """Per held-out run, for the three together and for the busy benign run: per attack type,
    the packets and the flows with at least one packet at or above the threshold. The processor
    raises one alert per flow and window, so the flows are what alerts see; the runs apart show
    whether a type is caught everywhere or in one run only."""
    path = out / "flows.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    model = load(model_dir)
    by_run: dict[str, dict[str, dict[str, int]]] = {}
    for run in (*HELDOUT_RUNS, BUSY_HELDOUT_RUN):
        ds = _load(datasets, (run,))
        scores, _ = model.scores(ds.matrix(model.manifest.features))
        flagged = scores >= model.manifest.threshold
        flows = np.char.add(ds["capture"].astype(str), ds["flow_id"].astype(str))
        types = ds["attack_type"].astype(str)
        counts = {}
        for kind in sorted(set(types.tolist())):
            rows = types == kind
            names, index = np.unique(flows[rows], return_inverse=True)
            hit = np.zeros(len(names), dtype=bool)
            np.logical_or.at(hit, index.reshape(-1), flagged[rows])
            counts[kind] = {
                "flows": len(names),
                "flagged": int(hit.sum()),
                "packets": int(rows.sum()),
                "packets_flagged": int(flagged[rows].sum()),
            }
        by_run[run] = counts
    # Each run is one capture, so no flow is in two runs: the held-out runs' counts add up.
    together: dict[str, dict[str, int]] = {}
    for run in HELDOUT_RUNS:
        for kind, c in by_run[run].items():
            total = together.setdefault(kind, dict.fromkeys(c, 0))
            for key, value in c.items():
                total[key] += value
    result = {" + ".join(HELDOUT_RUNS): dict(sorted(together.items())), **by_run}
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


# Leave one attack type out -------------------------------------------------------------------


def leave_one_out(
    datasets: dict[str, Path], out: Path, settings: TrainSettings, kinds: list[str]
) -> list[dict[str, Any]]:
    """Per attack type: train without it, report how much of it (unseen) is detected."""
    loo_dir = out / "loo"
    loo_dir.mkdir(parents=True, exist_ok=True)
    train_ds = _load(datasets, TRAIN_RUNS)
    held = _load(datasets, HELDOUT_RUNS)
    rows = []
    for kind in kinds:
        done = loo_dir / f"{kind}.json"
        if done.is_file():
            rows.append(json.loads(done.read_text()))
            continue
        started = time.monotonic()
        without = train_ds.take(np.flatnonzero(train_ds["attack_type"].astype(str) != kind))
        pair = Pair(without, settings)
        held_types = held["attack_type"].astype(str)
        test = held.take(np.flatnonzero((held_types == kind) | (held_types == BENIGN)))
        own = train_ds.take(np.flatnonzero(train_ds["attack_type"].astype(str) == kind))
        row: dict[str, Any] = {
            "attack_type": kind,
            "heldout_rows": int((test["attack_type"].astype(str) == kind).sum()),
            "training_run_rows": own.n_rows,
            "seconds": 0.0,
        }
        for s, s_own in zip(pair.score(test), pair.score(own), strict=True):
            m = evaluate(s, settings.target_fpr)
            row[s.name] = {
                "recall": m["recall"],
                "fpr": m["fpr"],
                "roc_auc": m["roc_auc"],
                "pr_auc": m["pr_auc"],
                "threshold": m["threshold"],
                "training_run_recall": float(np.mean(s_own.scores >= s_own.threshold))
                if own.n_rows
                else None,
            }
        row["seconds"] = round(time.monotonic() - started, 1)
        done.write_text(json.dumps(row, indent=1) + "\n")
        event(log, logging.INFO, "leave_one_out_done", attack_type=kind, **_brief(row))
        rows.append(row)
    return rows


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{model}_{key}": round(row[model][key], 4)
        for model in ("dnn", "gbm_baseline")
        for key in ("recall", "fpr")
        if row[model][key] is not None
    }


# The demo capture ----------------------------------------------------------------------------


def check_demo(runs: dict[str, Path], model_dir: Path, out: Path) -> dict[str, Any]:
    """Cut the demo capture from the quick run, replay it through the sensor, score it."""
    demo = out / "demo"
    report = demo / "report" / "report.json"
    if not report.is_file():
        demo.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(ROOT / "lab" / "captures" / "make_demo.py"),
             "--run", str(runs["quick"]), "--out-dir", str(demo), "--trim", "syn_flood=0.3"],
            check=True,
        )  # fmt: skip
        records = demo / "demo.jsonl"
        _antinex(
            "sensor", "--pcap", str(demo / "demo.pcap"), "--output", "jsonl",
            "--out", str(records), "--metrics-port", "0",
        )  # fmt: skip
        _antinex(
            "dataset", "build", "--input", str(records), "--labels",
            str(demo / "demo.labels.json"), "--scenario", "demo",
            "--out", str(demo / "demo.csv.gz"), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _antinex(
            "evaluate", "--model", str(model_dir), "--dataset", str(demo / "demo.csv.gz"),
            "--out", str(demo / "report"), stdout=subprocess.DEVNULL,
        )  # fmt: skip
    metrics = json.loads(report.read_text())["models"]["model"]
    return {
        "pcap_bytes": (demo / "demo.pcap").stat().st_size,
        "metrics": metrics,
    }


# Results -------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _f(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _typed_share(metrics: dict[str, Any], kind: str) -> float | None:
    """Of the rows of ``kind`` flagged as attacks, the share given ``kind`` as their type."""
    if "multiclass" not in metrics:
        return None
    classes = metrics["multiclass"]["classes"]
    row = metrics["multiclass"]["confusion"][classes.index(kind)]
    detected = sum(row) - row[classes.index(BENIGN)]
    return row[classes.index(kind)] / detected if detected else None


def results_markdown(results: dict[str, Any]) -> str:
    """The tables REPORT.md quotes, from ``results``."""
    main = results["default"]
    dnn, gbm = main["heldout"]
    logged = main.get("scaler_log_features", [])
    lines = [
        f"# Default model {main['model_version']}: results",
        "",
        f"Trained on {', '.join(TRAIN_RUNS)}; tested on {', '.join(HELDOUT_RUNS)} "
        f"({dnn['rows']} rows, {dnn['attack_rows']} attack). Training took "
        f"{main['train_seconds']:.0f} s; the model directory holds {main['model_bytes']} bytes.",
        "",
        f"The scaler takes {len(logged)} of {len(main['features'])} features through "
        f"sign(x)·ln(1 + |x|) before the min-max step: {', '.join(logged) or 'none'}.",
        "",
        "| metric | dnn | gbm_baseline | no-skill |",
        "|---|---|---|---|",
    ]
    for label, key, no_skill in (
        ("accuracy", "accuracy", dnn["majority_baseline_accuracy"]),
        ("precision", "precision", dnn["prevalence"]),
        ("recall", "recall", None),
        ("F1", "f1", None),
        ("PR-AUC", "pr_auc", dnn["prevalence"]),
        ("ROC-AUC", "roc_auc", 0.5),
        ("FPR on benign", "fpr", None),
        ("threshold", "threshold", None),
    ):
        lines.append(f"| {label} | {_f(dnn[key])} | {_f(gbm[key])} | {_f(no_skill)} |")
    busy = main["busy_benign_fpr"]
    lines.append(
        f"| FPR on {BUSY_HELDOUT_RUN} ({main['busy_benign_rows']} benign rows) | "
        f"{_f(busy['dnn'])} | {_f(busy['gbm_baseline'])} | |"
    )
    if "multiclass" in dnn:
        lines.append(
            f"| attack-type accuracy (benign included) | {_f(dnn['multiclass']['accuracy'])} | "
            f"{_f(gbm['multiclass']['accuracy'])} | "
            f"{_f(dnn['multiclass']['majority_baseline_accuracy'])} |"
        )
    lines += [
        "",
        "| attack type | rows | dnn recall | gbm recall | dnn: right type, of those detected |",
        "|---|---|---|---|---|",
    ]
    for kind, r in dnn["recall_by_attack_type"].items():
        g = gbm["recall_by_attack_type"][kind]
        lines.append(
            f"| {kind} | {r['rows']} | {_f(r['recall'], 3)} | {_f(g['recall'], 3)} | "
            f"{_f(_typed_share(dnn, kind), 3)} |"
        )
    lines += [
        "",
        "By run: packets and flows with at least one packet flagged (the processor alerts per "
        "flow and window):",
        "",
        "| runs | type | packets | flagged | share | flows | flagged | share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group, counts in results["flows_flagged"].items():
        for kind, c in counts.items():
            share = c["flagged"] / c["flows"] if c["flows"] else None
            packets = c.get("packets")
            p_share = c["packets_flagged"] / packets if packets else None
            lines.append(
                f"| {group} | {kind} | {packets if packets is not None else 'n/a'} | "
                f"{c.get('packets_flagged', 'n/a')} | {_f(p_share, 3)} | {c['flows']} | "
                f"{c['flagged']} | {_f(share, 3)} |"
            )
    internal = main["internal_test"][0]
    lines += [
        "",
        f"Flow-group test rows of the training runs (same runs, other flows): precision "
        f"{_f(internal['precision'])}, recall {_f(internal['recall'])}, FPR "
        f"{_f(internal['fpr'])}, PR-AUC {_f(internal['pr_auc'])}.",
        "",
        "## Without the busy benign run in training",
        "",
        "| trained on | model | precision | recall | FPR on benign | ROC-AUC "
        f"| FPR on {BUSY_HELDOUT_RUN} |",
        "|---|---|---|---|---|---|---|",
    ]
    for trained, block in (
        (" + ".join(TRAIN_RUNS), main),
        ("full", results["without_busy_benign"]),
    ):
        for m in block["heldout"]:
            lines.append(
                f"| {trained} | {m['model']} | {_f(m['precision'])} | {_f(m['recall'])} | "
                f"{_f(m['fpr'])} | {_f(m['roc_auc'])} | "
                f"{_f(block['busy_benign_fpr'][m['model']])} |"
            )
    lines += [
        "",
        "## Leave one attack type out",
        "",
        "| unseen attack type | held-out rows | dnn recall | dnn FPR | gbm recall | gbm FPR "
        "| dnn ROC-AUC | gbm ROC-AUC | dnn recall, training run's rows |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["leave_one_out"]:
        d, g = row["dnn"], row["gbm_baseline"]
        lines.append(
            f"| {row['attack_type']} | {row['heldout_rows']} | {_f(d['recall'], 3)} | "
            f"{_f(d['fpr'], 3)} | {_f(g['recall'], 3)} | {_f(g['fpr'], 3)} | "
            f"{_f(d['roc_auc'], 3)} | {_f(g['roc_auc'], 3)} | {_f(d['training_run_recall'], 3)} |"
        )
    demo = results.get("demo")
    if demo:
        m = demo["metrics"]
        c = m["confusion"]
        lines += [
            "",
            "## Demo capture",
            "",
            f"{m['rows']} records ({m['attack_rows']} attack), {demo['pcap_bytes']} bytes: "
            f"{c['tp'] + c['fp']} packets flagged ({c['tp']} attack, {c['fp']} benign); "
            f"precision {_f(m['precision'])}, recall {_f(m['recall'])}, FPR {_f(m['fpr'])}.",
            "",
            "| attack type | rows | detected | recall |",
            "|---|---|---|---|",
        ]
        for kind, r in m["recall_by_attack_type"].items():
            lines.append(f"| {kind} | {r['rows']} | {r['detected']} | {_f(r['recall'], 3)} |")
    return "\n".join(lines) + "\n"


def ship(model_dir: Path, demo: Path | None) -> None:
    """Install the model version in models/default (and the demo capture in lab/captures).

    The versions shipped before are removed once ``current`` names the new one: the repository
    carries one version, and its history keeps the others."""
    target = HERE / model_dir.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_dir, target)
    (HERE / CURRENT_POINTER).write_text(model_dir.name + "\n")
    for old in HERE.glob("*/" + MANIFEST):
        if old.parent != target:
            shutil.rmtree(old.parent)
    if demo is not None:
        captures = ROOT / "lab" / "captures"
        for name in ("demo.pcap", "demo.labels.json"):
            shutil.copy2(demo / name, captures / name)
    event(log, logging.INFO, "model_shipped", version=model_dir.name, target=str(target))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="Working directory for every step's output")
    parser.add_argument("--runs", type=Path, help="Reuse lab runs from DIR/<run>/ (no root)")
    parser.add_argument("--ship", action="store_true", help="Install the result in the repo")
    parser.add_argument("--skip-loo", action="store_true", help="Leave out leave-one-out")
    args = parser.parse_args(argv)
    setup()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    runs = lab_runs(out, args.runs.resolve() if args.runs else None)
    datasets = build_datasets(runs, out)
    run_audit(datasets, out, tuple(SCENARIOS), "audit")
    run_audit(datasets, out, ("full", *HELDOUT_RUNS), "audit-attack-runs")
    default = train_default(datasets, out, SETTINGS)
    model_dir = Path(default["model_dir"])
    kinds = sorted(default["split"]["train"]["by_attack_type"].keys() - {BENIGN})
    loo = [] if args.skip_loo else leave_one_out(datasets, out, SETTINGS, kinds)
    ablation = without_busy_benign(datasets, out, SETTINGS)
    flows = flows_flagged(datasets, out, model_dir)
    demo = check_demo(runs, model_dir, out)

    results = {
        "settings": {**asdict(replace(SETTINGS)), "hidden": list(SETTINGS.hidden)},
        "excluded_features": EXCLUDED,
        "default": default,
        "leave_one_out": loo,
        "without_busy_benign": ablation,
        "flows_flagged": flows,
        "demo": demo,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_plain) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    if args.ship:
        ship(model_dir, out / "demo")
    print(f"model {model_dir.name}; results in {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
