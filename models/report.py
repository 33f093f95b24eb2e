"""An evaluation report on disk: report.json, summary.md and PNG plots (PR and ROC curves, the
confusion matrix, score histograms per class)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.labels import BENIGN
from models.metrics import Scored

REPORT_JSON = "report.json"
SUMMARY_MD = "summary.md"
PLOTS = ("pr_curve.png", "roc_curve.png", "confusion_matrix.png", "score_histograms.png")


def write_report(
    directory: Path,
    title: str,
    scored: list[Scored],
    metrics: list[dict[str, Any]],
    context: dict[str, Any],
) -> Path:
    """Write the report of ``scored`` (first entry: the model under test) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {
        "title": title,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **context,
        "models": {m["model"]: m for m in metrics},
    }
    (directory / REPORT_JSON).write_text(json.dumps(body, indent=1, default=_plain) + "\n")
    _plot(directory, scored, metrics)
    (directory / SUMMARY_MD).write_text(_summary(title, metrics, context))
    return directory


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _summary(title: str, metrics: list[dict[str, Any]], context: dict[str, Any]) -> str:
    first = metrics[0]
    lines = [f"# {title}", ""]
    data = context.get("dataset", {})
    if data:
        names = ", ".join(f"{f['name']} ({f['sha256'][:12]})" for f in data.get("files", []))
        lines.append(f"- Data: {names}; {data.get('rows', '?')} rows")
    split = context.get("split")
    if split:
        sides = ", ".join(
            f"{side} {split[side]['rows']} rows ({split[side]['attack_rows']} attack)"
            for side in ("train", "val", "test")
            if side in split
        )
        lines.append(f"- Split: `{split['method']}`: {sides}")
        lines.extend(f"  - {note}" for note in split.get("notes", []))
    if context.get("features"):
        lines.append(f"- Features: {len(context['features'])} (`features` in report.json)")
    lines.append(
        f"- Rows evaluated: {first['rows']} ({first['attack_rows']} attack, "
        f"{first['benign_rows']} benign)"
    )
    for warning in context.get("warnings", []):
        lines.append(f"- **Warning:** {warning}")
    lines += ["", "| metric | " + " | ".join(m["model"] for m in metrics) + " | no-skill |"]
    lines.append("|---" * (len(metrics) + 2) + "|")
    rows = [
        ("accuracy", "accuracy", first["majority_baseline_accuracy"]),
        ("precision", "precision", first["prevalence"]),
        ("recall", "recall", None),
        ("F1", "f1", None),
        ("PR-AUC", "pr_auc", first["prevalence"]),
        ("ROC-AUC", "roc_auc", 0.5),
        ("FPR on benign", "fpr", None),
        ("threshold", "threshold", None),
    ]
    for label, key, baseline in rows:
        cells = " | ".join(_fmt(m[key]) for m in metrics)
        lines.append(f"| {label} | {cells} | {_fmt(baseline)} |")
    lines += [
        "",
        "No-skill column: accuracy of always answering the majority class; precision and "
        "PR-AUC of random scores (the attack share); ROC-AUC of random scores.",
        "",
    ]
    target = first["threshold_for_target_fpr"]
    lines.append(
        f"Threshold for FPR {target['target_fpr']} on these rows: {_fmt(target['threshold'], 6)} "
        f"(recall there {_fmt(target['recall'])}; chosen on the rows it is measured on, so "
        "it is a bound, not a result)."
    )
    by_type = first["recall_by_attack_type"]
    if by_type:
        lines += ["", "| attack type | rows | detected | recall |", "|---|---|---|---|"]
        for kind, r in by_type.items():
            lines.append(f"| {kind} | {r['rows']} | {r['detected']} | {_fmt(r['recall'])} |")
    lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in PLOTS), ""]
    return "\n".join(lines)


def _plot(directory: Path, scored: list[Scored], metrics: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    both = 0 < int(scored[0].label.sum()) < len(scored[0].label)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for s, m in zip(scored, metrics, strict=True):
        if both:
            precision, recall, _ = precision_recall_curve(s.label, s.scores)
            ax.plot(recall, precision, label=f"{s.name} (AP {_fmt(m['pr_auc'], 3)})")
            if m["recall"] is not None and m["precision"] is not None:
                ax.plot([m["recall"]], [m["precision"]], "o", color=ax.lines[-1].get_color())
    ax.axhline(metrics[0]["prevalence"] or 0, ls="--", color="grey", label="no skill")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1.01))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(directory / "pr_curve.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for s, m in zip(scored, metrics, strict=True):
        if both:
            fpr, tpr, _ = roc_curve(s.label, s.scores)
            ax.plot(fpr, tpr, label=f"{s.name} (AUC {_fmt(m['roc_auc'], 3)})")
            if m["fpr"] is not None and m["recall"] is not None:
                ax.plot([m["fpr"]], [m["recall"]], "o", color=ax.lines[-1].get_color())
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="no skill")
    ax.set(xlabel="false-positive rate", ylabel="recall", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(directory / "roc_curve.png", dpi=100)
    plt.close(fig)

    _plot_confusion(plt, directory, metrics[0])
    _plot_histograms(plt, directory, scored[0])


def _plot_confusion(plt: Any, directory: Path, m: dict[str, Any]) -> None:
    if "multiclass" in m:
        classes = m["multiclass"]["classes"]
        matrix = np.asarray(m["multiclass"]["confusion"])
    else:
        classes = ["benign", "attack"]
        c = m["confusion"]
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    size = 2.5 + 0.6 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if shown[i, j] > 0.5 else "black"
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center", color=color)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"{m['model']} at threshold")
    fig.tight_layout()
    fig.savefig(directory / "confusion_matrix.png", dpi=100)
    plt.close(fig)


def _plot_histograms(plt: Any, directory: Path, s: Scored) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    types = s.attack_type.astype(str)
    bins = np.linspace(0, 1, 51)
    for kind in [BENIGN, *sorted(set(types.tolist()) - {BENIGN})]:
        rows = types == kind
        if rows.any():
            ax.hist(s.scores[rows], bins=bins, histtype="step", label=f"{kind} ({rows.sum()})")
    ax.axvline(s.threshold, color="black", ls="--", label="threshold")
    ax.set_yscale("log")
    ax.set(xlabel="attack score", ylabel="rows", title=f"{s.name} scores per class")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(directory / "score_histograms.png", dpi=100)
    plt.close(fig)
