"""Train/validation/test splits that keep each flow, host pair or capture on one side only.

A random row split of packet data is not an evaluation: packets of one connection are near
copies of each other, so a test row's siblings sit in the training rows. Every split here
assigns whole groups:

    scenario              whole scenarios (and so whole captures) go to one side
    time                  the test side starts at a moment in time; a flow goes to the side of
                          its first packet, so no flow is cut in two
    flow-group            whole flows (flow_id)
    host-pair             whole host pairs (either direction)
    leave-one-attack-out  train without one attack type; test on it plus held-out benign host
                          pairs (the attack's host pairs go to the test side whole)

After the split, training rows that share a flow with the other side are dropped (a flow id
can recur across captures when a 5-tuple is reused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from antinex.options import UsageError
from models.dataset import Dataset
from models.labels import BENIGN

METHODS = ("scenario", "time", "flow-group", "host-pair", "leave-one-attack-out")
# Only the audit offers a random split: to show what it lets through, never to train with.
AUDIT_METHODS = (*METHODS[:-1], "random")


@dataclass
class Split:
    """Row indices of each side and what was done to keep groups whole."""

    method: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    notes: list[str] = field(default_factory=list)

    def summary(self, ds: Dataset) -> dict[str, Any]:
        sides = {"train": self.train, "val": self.val, "test": self.test}
        out: dict[str, Any] = {"method": self.method, "notes": self.notes}
        for side, rows in sides.items():
            types, counts = np.unique(ds["attack_type"][rows].astype(str), return_counts=True)
            out[side] = {
                "rows": len(rows),
                "attack_rows": int((ds["label"][rows] == 1).sum()),
                "by_attack_type": dict(zip(types.tolist(), counts.tolist(), strict=True)),
                "captures": len(np.unique(ds["capture"][rows].astype(str))),
            }
        return out


def codes_of(*arrays: np.ndarray) -> np.ndarray:
    """One integer per row naming the combination of values in ``arrays``."""
    parts = [np.unique(a.astype(str), return_inverse=True)[1].reshape(-1) for a in arrays]
    if len(parts) == 1:
        return parts[0]
    return np.unique(np.column_stack(parts), axis=0, return_inverse=True)[1].reshape(-1)


def _hosts(ds: Dataset, side: str) -> np.ndarray:
    out = np.full(ds.n_rows, "", dtype=object)
    for name in (f"ip_{side}", f"ipv6_{side}", f"arp_p{side}", f"eth_{side}"):
        if ds.has(name):
            empty = out == ""
            out[empty] = ds[name][empty]
    return out


def flow_codes(ds: Dataset) -> np.ndarray:
    """Flow group per row; a row without a flow id is a group of its own capture."""
    flow = ds["flow_id"].astype(str) if ds.has("flow_id") else np.full(ds.n_rows, "", dtype=str)
    capture = ds["capture"].astype(str)
    keyed = np.where(flow == "", np.char.add("no-flow:", capture), flow)
    return codes_of(keyed)


def host_pair_codes(ds: Dataset) -> np.ndarray:
    src, dst = _hosts(ds, "src").astype(str), _hosts(ds, "dst").astype(str)
    lo, hi = np.where(src <= dst, src, dst), np.where(src <= dst, dst, src)
    return codes_of(lo, hi)


def group_codes(ds: Dataset, method: str) -> np.ndarray:
    if method == "scenario":
        return codes_of(ds["scenario"])
    if method == "flow-group":
        return flow_codes(ds)
    if method in ("host-pair", "leave-one-attack-out"):
        return host_pair_codes(ds)
    raise ValueError(f"no groups for split method {method!r}")


def assign_groups(
    codes: np.ndarray, classes: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """A boolean mask of rows for the smaller side: whole groups, about ``fraction`` of each
    class's rows, rarest class first, never taking a class's last group from the larger side."""
    groups, group_of = np.unique(codes, return_inverse=True)
    group_of = group_of.reshape(-1)
    class_ids, class_of = np.unique(classes.astype(str), return_inverse=True)
    counts = np.zeros((len(groups), len(class_ids)), dtype=np.int64)
    np.add.at(counts, (group_of, class_of.reshape(-1)), 1)
    totals = counts.sum(axis=0)
    target = fraction * totals
    taken = np.zeros(len(groups), dtype=bool)
    taken_counts = np.zeros(len(class_ids), dtype=np.int64)
    order = rng.permutation(len(groups))
    for c in np.argsort(totals, kind="stable"):
        for g in order:
            if taken_counts[c] >= target[c]:
                break
            if taken[g] or counts[g, c] == 0 or totals[c] - taken_counts[c] - counts[g, c] <= 0:
                continue
            taken[g] = True
            taken_counts += counts[g]
    return taken[group_of]


def _time_mask(ds: Dataset, rows: np.ndarray, fraction: float) -> np.ndarray:
    """Rows (of ``rows``) whose flow starts at or after the cut that leaves ``fraction`` later."""
    ts = ds["ts_ns"][rows]
    if (ts < 0).any():
        raise UsageError("--split time needs capture timestamps (ts_ns), and some rows lack them")
    flows = flow_codes(ds)[rows]
    _, first_of, inverse = np.unique(flows, return_index=True, return_inverse=True)
    order = np.argsort(ts, kind="stable")
    starts = np.full(len(first_of), np.iinfo(np.int64).max)
    np.minimum.at(starts, inverse.reshape(-1), ts)
    at = min(int(len(ts) * (1 - fraction)), len(ts) - 1)
    cut = ts[order[at]] if len(ts) else 0
    return starts[inverse.reshape(-1)] >= cut


def _side_mask(
    ds: Dataset, rows: np.ndarray, method: str, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    if method == "time":
        return _time_mask(ds, rows, fraction)
    if method == "random":
        return rng.random(len(rows)) < fraction
    return assign_groups(group_codes(ds, method)[rows], ds["attack_type"][rows], fraction, rng)


def _purge(ds: Dataset, keep: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, int]:
    """``keep`` without rows whose flow also has rows in ``other``; and how many went."""
    flows = flow_codes(ds)
    shared = np.isin(flows[keep], np.unique(flows[other]))
    return keep[~shared], int(shared.sum())


def _require_both_classes(ds: Dataset, rows: np.ndarray, side: str, method: str) -> None:
    labels = ds["label"][rows]
    if len(rows) == 0 or labels.min() == labels.max():
        have = "no rows" if len(rows) == 0 else f"only {'attack' if labels[0] else 'benign'} rows"
        raise UsageError(
            f"--split {method} leaves the {side} side with {have}: the data has too few "
            f"separate groups of each class; label more captures or hosts, or pick another split"
        )


def make_split(
    ds: Dataset,
    method: str,
    test_size: float = 0.25,
    val_size: float = 0.15,
    seed: int = 0,
    holdout_attack: str | None = None,
) -> Split:
    """Split ``ds`` by ``method``; see the module docstring for what each keeps whole."""
    rng = np.random.default_rng(seed)
    every = np.arange(ds.n_rows)
    notes: list[str] = []
    val_method = method
    if method == "leave-one-attack-out":
        test_mask = _holdout_mask(ds, holdout_attack, test_size, rng)
        val_method = "host-pair"
    else:
        test_mask = _side_mask(ds, every, method, test_size, rng)
    test, pool = every[test_mask], every[~test_mask]
    _require_both_classes(ds, test, "test", method)

    if val_method == "scenario" and len(np.unique(ds["scenario"][pool].astype(str))) < 2:
        val_method = "flow-group"
        notes.append("one scenario left for training: validation rows split by flow instead")
    val_share = min(val_size / max(1.0 - test_size, 1e-9), 0.9)
    val_mask = _side_mask(ds, pool, val_method, val_share, rng)
    val, train = pool[val_mask], pool[~val_mask]

    train, dropped = _purge(ds, train, np.concatenate([val, test]))
    if dropped:
        notes.append(f"{dropped} training rows dropped: their flows also have rows held out")
    val, dropped = _purge(ds, val, test)
    if dropped:
        notes.append(f"{dropped} validation rows dropped: their flows also have test rows")
    _require_both_classes(ds, train, "training", method)
    if len(val) == 0 or (ds["label"][val] == 0).sum() == 0:
        raise UsageError(
            f"--split {method} leaves no benign validation rows to set the threshold with; "
            "add benign traffic from more hosts or captures"
        )
    if (ds["label"][val] == 1).sum() == 0:
        notes.append("the validation rows hold no attacks: early stopping watches benign loss")
    if method == "leave-one-attack-out":
        notes.append(f"attack type {holdout_attack!r} is absent from training and validation")
    return Split(method, np.sort(train), np.sort(val), np.sort(test), notes)


def _holdout_mask(
    ds: Dataset, holdout: str | None, test_size: float, rng: np.random.Generator
) -> np.ndarray:
    types = ds["attack_type"].astype(str)
    known = sorted(set(np.unique(types).tolist()) - {BENIGN})
    if not holdout or holdout not in known:
        raise UsageError(
            f"--split leave-one-attack-out needs --holdout-attack, one of: {', '.join(known)}"
        )
    pairs = host_pair_codes(ds)
    attack_pairs = np.unique(pairs[types == holdout])
    test = np.isin(pairs, attack_pairs)
    benign_pool = ~test & (types == BENIGN)
    only_benign = ~np.isin(pairs, np.unique(pairs[~benign_pool & ~test]))
    candidates = np.flatnonzero(benign_pool & only_benign)
    if len(candidates):
        chosen = assign_groups(pairs[candidates], types[candidates], test_size, rng)
        test[candidates[chosen]] = True
    return test


def two_way_split(
    ds: Dataset, method: str, test_size: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test rows only (no validation side), for the audit; ``random`` is allowed."""
    every = np.arange(ds.n_rows)
    mask = _side_mask(ds, every, method, test_size, np.random.default_rng(seed))
    train, test = every[~mask], every[mask]
    if method != "random":
        train, _ = _purge(ds, train, test)
    return train, test
