"""The dataset audit: what would make a result dishonest, found and ranked before any training.

Checks, each a score from 0 to 1 held against a limit:

    label_separation         one column alone separates benign from attack: the larger of its
                             ROC-AUC (either direction) and a depth-2 tree's balanced accuracy
    capture_fingerprint      one column alone tells captures apart: a depth-2 tree's balanced
                             accuracy, averaged over pairs of captures
    row_order                a column follows the row's position in its capture (|Spearman|):
                             an index or a clock, not a property of the packet
    duplicate_rows           share of rows identical to another row in every packet column
    duplicates_across_split  share of test rows with an identical twin among training rows
    class_from_one_capture   share of a class's rows in captures that hold no other class: then
                             the label marks the capture, and any session fingerprint predicts it
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.dataset import META, Dataset
from models.splits import two_way_split

# Label columns are never candidates; a duplicate packet may differ in its capture time and row
# counter (a loopback packet recorded twice), so those are not compared either.
_LABELS = {*META, "label_value", "label_name", "src_file", "schema_version"}
_NOT_PACKET = {*_LABELS, "ts_ns", "iface", "idx", "flow_id"}
# Limitation: with many captures the fingerprint check samples: at most 5,000 rows of each
# capture and 60 capture pairs, so a column that tells apart only a few rare pairs can be missed.
_PAIR_ROWS = 5000
_MAX_PAIRS = 60


@dataclass
class Finding:
    """One check on one column (or on the whole dataset)."""

    check: str
    column: str
    score: float
    limit: float
    detail: str

    @property
    def flagged(self) -> bool:
        return self.score >= self.limit


@dataclass
class AuditResult:
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    kind: str = ""

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "kind": self.kind,
            "notes": self.notes,
            "findings": [{**asdict(f), "flagged": f.flagged} for f in self.ranked()],
        }

    def ranked(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (not f.flagged, -f.score / f.limit))


def _tree_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=2, class_weight="balanced", random_state=0)
    tree.fit(x.reshape(-1, 1), y)
    return float(balanced_accuracy_score(y, tree.predict(x.reshape(-1, 1))))


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, x))
    return max(auc, 1.0 - auc)


def _varying(ds: Dataset, names: list[str]) -> tuple[list[str], list[str]]:
    varying: list[str] = []
    constant: list[str] = []
    for name in names:
        column = ds[name]
        (varying if len(column) and column.min() != column.max() else constant).append(name)
    return varying, constant


def _label_separation(
    ds: Dataset, columns: list[str], limit: float, rows: np.ndarray
) -> list[Finding]:
    y = ds["label"][rows]
    out = []
    for name in columns:
        x = ds[name][rows].astype(np.float64)
        auc, tree = _auc(x, y), _tree_accuracy(x, y)
        out.append(
            Finding(
                "label_separation",
                name,
                max(auc, tree),
                limit,
                f"ROC-AUC {auc:.4f}; depth-2 tree balanced accuracy {tree:.4f}",
            )
        )
    return out


def _capture_fingerprint(
    ds: Dataset, columns: list[str], limit: float, rng: np.random.Generator
) -> list[Finding]:
    captures = ds["capture"].astype(str)
    names = np.unique(captures)
    members = {c: np.flatnonzero(captures == c) for c in names}
    members = {
        c: rng.choice(r, _PAIR_ROWS, replace=False) if len(r) > _PAIR_ROWS else r
        for c, r in members.items()
    }
    pairs = list(itertools.combinations(names, 2))
    if len(pairs) > _MAX_PAIRS:
        pairs = [pairs[i] for i in rng.choice(len(pairs), _MAX_PAIRS, replace=False)]
    out = []
    for name in columns:
        column = ds[name].astype(np.float64)
        scores = []
        for a, b in pairs:
            rows = np.concatenate([members[a], members[b]])
            y = np.concatenate([np.zeros(len(members[a])), np.ones(len(members[b]))])
            scores.append(_tree_accuracy(column[rows], y))
        out.append(
            Finding(
                "capture_fingerprint",
                name,
                float(np.mean(scores)),
                limit,
                f"depth-2 tree balanced accuracy, mean of {len(pairs)} capture pairs "
                f"(worst pair {min(scores):.4f})",
            )
        )
    return out


def _spearman(x: np.ndarray) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(x, np.arange(len(x))).statistic
    return 0.0 if np.isnan(rho) else abs(float(rho))


def _row_order(ds: Dataset, columns: list[str], limit: float) -> list[Finding]:
    captures = ds["capture"].astype(str)
    groups = [np.flatnonzero(captures == c) for c in np.unique(captures)]
    groups = [g for g in groups if len(g) >= 20]
    out = []
    for name in columns:
        column = ds[name]
        total = weight = 0.0
        for rows in groups:
            x = column[rows]
            if x.min() != x.max():
                total += _spearman(x) * len(rows)
                weight += len(rows)
        if weight:
            out.append(
                Finding(
                    "row_order",
                    name,
                    total / weight,
                    limit,
                    f"|Spearman| with row position, mean of {len(groups)} captures",
                )
            )
    return out


def row_hashes(ds: Dataset, columns: list[str]) -> np.ndarray:
    """A 64-bit hash per row of the values in ``columns`` (equal rows, equal hashes)."""
    hashes = np.zeros(ds.n_rows, dtype=np.uint64)
    prime = np.uint64(1_099_511_628_211)
    for name in columns:
        column = ds[name]
        values = column.astype(str) if column.dtype == object else column
        codes = np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.uint64)
        with np.errstate(over="ignore"):
            hashes = hashes * prime + codes + np.uint64(1)
    return hashes


def _duplicates(
    ds: Dataset, limit: float, split: str | None, test_size: float, seed: int
) -> tuple[list[Finding], str]:
    columns = [c for c in ds.columns if c not in _NOT_PACKET]
    hashes = row_hashes(ds, columns)
    _, first, _counts = np.unique(hashes, return_index=True, return_counts=True)
    twins = ds.n_rows - len(first)
    previous = int((hashes[1:] == hashes[:-1]).sum())
    out = [
        Finding(
            "duplicate_rows",
            "(all packet columns)",
            twins / max(ds.n_rows, 1),
            limit,
            f"{twins} rows repeat another ({previous} the row right before them)",
        )
    ]
    if split:
        train, test = two_way_split(ds, split, test_size, seed)
        shared = np.isin(hashes[test], hashes[train])
        out.append(
            Finding(
                "duplicates_across_split",
                f"(--split {split})",
                float(shared.mean()) if len(test) else 0.0,
                limit,
                f"{int(shared.sum())} of {len(test)} test rows have a twin in training rows",
            )
        )
    note = f"duplicate check over {len(columns)} columns: all but {', '.join(sorted(_NOT_PACKET))}"
    return out, note


def _classes_from_one_capture(ds: Dataset, limit: float) -> list[Finding]:
    kinds = ds["attack_type"].astype(str)
    captures = ds["capture"].astype(str)
    out = []
    for kind in sorted(set(kinds.tolist()) - {"unlabelled"}):
        rows = kinds == kind
        held = np.unique(captures[rows])
        pure = [c for c in held if (kinds[captures == c] == kind).all()]
        in_pure = np.isin(captures[rows], pure).mean()
        out.append(
            Finding(
                "class_from_one_capture",
                f"class {kind}",
                float(in_pure),
                limit,
                f"{len(pure)} of its {len(held)} captures hold no other class",
            )
        )
    return out


def audit(
    ds: Dataset,
    limit: float = 0.99,
    max_duplicate_share: float = 0.01,
    split: str | None = None,
    test_size: float = 0.25,
    seed: int = 0,
    sample: int = 200_000,
    all_columns: bool = False,
) -> AuditResult:
    """Run every check that the data supports; say in ``notes`` which could not run and why."""
    rng = np.random.default_rng(seed)
    result = AuditResult([], rows=ds.n_rows, kind=ds.kind)
    if all_columns:
        names = [c for c, v in ds.columns.items() if v.dtype != object and c not in _LABELS]
    else:
        names = [c for c in ds.candidates if ds.has(c)]
    columns, constant = _varying(ds, names)
    result.notes.append(f"{len(columns)} columns checked; {len(constant)} constant ones skipped")

    labels = ds["label"]
    labelled = np.flatnonzero(labels >= 0)
    classes = np.unique(labels[labelled])
    if len(classes) == 2:
        rows = labelled
        if len(rows) > sample:
            rows = np.sort(rng.choice(rows, sample, replace=False))
            result.notes.append(f"label separation measured on {sample} sampled rows")
        result.findings += _label_separation(ds, columns, limit, rows)
    else:
        only = "no labelled rows" if len(classes) == 0 else f"only label {int(classes[0])}"
        result.notes.append(f"{only}: label separation skipped; capture checks still run")

    n_captures = len(np.unique(ds["capture"].astype(str)))
    if n_captures >= 2:
        result.findings += _capture_fingerprint(ds, columns, limit, rng)
    else:
        result.notes.append("one capture: capture fingerprint check skipped")
    result.findings += _row_order(ds, columns, limit)
    duplicates, note = _duplicates(ds, max_duplicate_share, split, test_size, seed)
    result.findings += duplicates
    result.notes.append(note)
    result.findings += _classes_from_one_capture(ds, limit)
    return result


MEANING = {
    "label_separation": "one column alone separates benign from attack",
    "capture_fingerprint": "one column alone tells one capture from another (a session id)",
    "row_order": "a column counts rows or time within a capture (an index or a clock)",
    "duplicate_rows": "rows identical in every packet column (a packet recorded twice)",
    "duplicates_across_split": "test rows whose identical twin is in the training rows",
    "class_from_one_capture": "a class only in captures of its own: the label marks the capture",
}


def format_table(result: AuditResult, top: int = 10) -> str:
    """Findings first, then the ``top`` highest-scoring checks that stayed under their limit."""
    ranked = result.ranked()
    shown = [f for f in ranked if f.flagged] + [f for f in ranked if not f.flagged][:top]
    header = ("rank", "check", "column", "score", "limit", "finding")
    rows = [
        (str(i), f.check, f.column, f"{f.score:.4f}", f"{f.limit:g}", "YES" if f.flagged else "no")
        for i, f in enumerate(shown, 1)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + "  measure"]
    lines.append("  ".join("-" * w for w in widths) + "  ---")
    for row, f in zip(rows, shown, strict=True):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "  " + f.detail
        )
    lines.append("")
    for check in dict.fromkeys(f.check for f in shown):
        lines.append(f"{check}: {MEANING[check]}")
    return "\n".join(lines)


def write_json(result: AuditResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=1) + "\n")
