"""Tests of the splits: no flow, host pair or capture on two sides, both classes on each side."""

from __future__ import annotations

import numpy as np
import pytest

from antinex.options import UsageError
from models.dataset import Dataset, empty_columns
from models.splits import METHODS, flow_codes, host_pair_codes, make_split, two_way_split

ATTACKS = {"198.51.100.66": "port_scan", "198.51.100.77": "flood"}


def traffic(scenarios: int = 6, flows_per_scenario: int = 40, seed: int = 1) -> Dataset:
    """Rows of many flows: clients talk to servers, two attackers hit one server per scenario."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, str, str, int, float, str]] = []
    for s in range(scenarios):
        start = 1_700_000_000 + s * 600
        hosts = [f"10.{s}.0.{i}" for i in range(8)] + list(ATTACKS)
        for f in range(flows_per_scenario):
            src = hosts[f % len(hosts)]
            dst = f"10.{s}.1.0" if src in ATTACKS else f"10.{s}.1.{f % 3}"
            t = start + rng.uniform(0, 500)
            for _ in range(int(rng.integers(2, 8))):
                t += rng.uniform(0, 3)
                rows.append((s, src, dst, 40000 + f, t, ATTACKS.get(src, "benign")))
    columns = empty_columns(len(rows))
    for i, (s, src, dst, sport, t, _) in enumerate(rows):
        columns["ip_src"][i], columns["ip_dst"][i] = src, dst
        columns["tcp_sport"][i], columns["tcp_dport"][i] = sport, 80
        columns["ts_ns"][i] = int(t * 1e9)
        columns["flow_id"][i] = f"{s}-{src}-{sport}"
        columns["frame_len"][i] = int(rng.integers(60, 1500))
    kinds = np.array([r[5] for r in rows], dtype=object)
    columns["attack_type"] = kinds
    columns["label"] = (kinds != "benign").astype(np.int8)
    columns["scenario"] = np.array([f"s{r[0]}" for r in rows], dtype=object)
    columns["capture"] = np.array([f"s{r[0]}.pcap" for r in rows], dtype=object)
    return Dataset(columns)


def shared(codes: np.ndarray, a: np.ndarray, b: np.ndarray) -> set[int]:
    return set(codes[a].tolist()) & set(codes[b].tolist())


@pytest.mark.parametrize("method", [m for m in METHODS if m != "leave-one-attack-out"])
def test_no_flow_crosses_sides_and_every_side_has_both_classes(method: str) -> None:
    """Whatever the method, a flow's packets are on one side only, and train and test hold
    benign and attack rows."""
    ds = traffic()
    split = make_split(ds, method, seed=3)
    flows = flow_codes(ds)
    sides = (split.train, split.val, split.test)
    for i, a in enumerate(sides):
        for b in sides[i + 1 :]:
            assert set() == shared(flows, a, b)
            assert set() == set(a.tolist()) & set(b.tolist())
    for rows in (split.train, split.test):
        assert {0, 1} == set(ds["label"][rows].tolist())
    assert 0 < (ds["label"][split.val] == 0).sum()


def test_scenario_split_keeps_each_capture_on_one_side() -> None:
    """With --split scenario no capture (and no scenario) has rows on two sides."""
    ds = traffic()
    split = make_split(ds, "scenario", seed=0)
    captures = np.unique(ds["capture"].astype(str), return_inverse=True)[1]
    assert set() == shared(captures, split.train, split.test)
    assert set() == shared(captures, split.val, split.test)
    assert set() == shared(captures, split.train, split.val)


def test_host_pair_split_keeps_each_pair_on_one_side() -> None:
    """With --split host-pair a pair of hosts talks on one side only, whichever way round."""
    ds = traffic()
    split = make_split(ds, "host-pair", seed=5)
    pairs = host_pair_codes(ds)
    assert set() == shared(pairs, split.train, split.test)
    assert set() == shared(pairs, split.val, split.test)
    assert set() == shared(pairs, split.train, split.val)


def test_time_split_tests_on_flows_that_start_after_every_training_flow() -> None:
    """With --split time every test flow starts after every training flow started."""
    ds = traffic()
    split = make_split(ds, "time", seed=0)
    flows = flow_codes(ds)
    ts = ds["ts_ns"]
    start = {f: ts[flows == f].min() for f in np.unique(flows)}
    train_starts = [start[f] for f in np.unique(flows[split.train])]
    test_starts = [start[f] for f in np.unique(flows[split.test])]
    assert max(train_starts) < min(test_starts)


def test_leave_one_attack_out_tests_on_an_attack_never_trained_on() -> None:
    """The held-out attack type is on the test side only, with held-out benign host pairs."""
    ds = traffic()
    split = make_split(ds, "leave-one-attack-out", seed=0, holdout_attack="flood")
    kinds = ds["attack_type"].astype(str)
    assert "flood" not in set(kinds[split.train]) | set(kinds[split.val])
    assert {"flood", "benign"} <= set(kinds[split.test].tolist())
    assert "port_scan" in set(kinds[split.train].tolist())
    pairs = host_pair_codes(ds)
    assert set() == shared(pairs, split.train, split.test)


def test_leave_one_attack_out_names_the_attack_types_when_none_is_given() -> None:
    """Without --holdout-attack the error lists the attack types to choose from."""
    with pytest.raises(UsageError, match="flood, port_scan"):
        make_split(traffic(), "leave-one-attack-out")


def test_a_split_that_cannot_put_attacks_on_both_sides_is_refused() -> None:
    """When every attack comes from one host pair, --split host-pair says so instead of
    training on a side without attacks."""
    ds = traffic(scenarios=1)
    kinds = ds["attack_type"].astype(str)
    keep = np.flatnonzero((kinds == "benign") | (kinds == "flood"))
    with pytest.raises(UsageError, match="host-pair leaves the"):
        make_split(ds.take(keep), "host-pair")


def test_the_audit_random_split_is_what_the_group_splits_avoid() -> None:
    """A random row split puts packets of one flow on both sides; flow-group does not."""
    ds = traffic()
    flows = flow_codes(ds)
    train, test = two_way_split(ds, "random", seed=0)
    assert shared(flows, train, test)
    train, test = two_way_split(ds, "flow-group", seed=0)
    assert set() == shared(flows, train, test)
