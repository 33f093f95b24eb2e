"""Label files of lab runs, in the format of ``models/labels.py``, and counts of what they label.

Each attack that ran becomes one rule: its recorded time window (from just before the tool
started to a short tail after it ended, for answers still in flight), the attacker's address as
``src``, the victim's as ``dst``, both directions, and the attack type. Packets no rule matches
are benign, which is what the clients' traffic is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.labels import BENIGN, LabelRule, apply_rules, parse_rules

# Limitation: labels go by attacker address and time window, not by packet: everything between
# the attacker and the victim inside a window is the attack, everything else benign.
LEAD_S = 0.1  # before the tool's start: `ip netns exec` itself sends nothing
TAIL_S = 2.0  # after the tool's end: the victim's last answers, the attacker's kernel RSTs
_CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class AttackWindow:
    """When one attack ran, between which hosts, and what became of its tool."""

    tool: str
    attack_type: str
    host: str
    src_ip: str
    dst_ip: str
    start_ns: int
    end_ns: int
    exit_code: int | None
    stopped_by_lab: bool

    @property
    def label_start_ns(self) -> int:
        return self.start_ns - int(LEAD_S * 1e9)

    @property
    def label_end_ns(self) -> int:
        return self.end_ns + int(TAIL_S * 1e9)


def label_rules(windows: Sequence[AttackWindow]) -> list[dict[str, Any]]:
    """The label file's rules, one per attack window, in the order the attacks started."""
    return [
        {
            "attack_type": window.attack_type,
            "start": round(window.label_start_ns / 1e9, 6),
            "end": round(window.label_end_ns / 1e9, 6),
            "src": [window.src_ip],
            "dst": [window.dst_ip],
            "both_directions": True,
            "note": f"{window.tool} from {window.host}, exit code {window.exit_code}"
            + (", stopped by the lab at its time bound" if window.stopped_by_lab else ""),
        }
        for window in sorted(windows, key=lambda w: w.start_ns)
    ]


def write_label_file(path: Path, windows: Sequence[AttackWindow], scenario: str) -> None:
    """Write the rules as ``{"scenario": ..., "rules": [...]}``, checked by the models' parser.

    A run in which no attack ran has no rules; its file holds an empty list, which
    ``antinex dataset build`` refuses, as it should: that capture is unlabelled benign traffic.
    """
    rules = label_rules(windows)
    if rules:
        parse_rules({"rules": rules}, str(path))  # refuse to write what the reader would reject
    path.write_text(json.dumps({"scenario": scenario, "rules": rules}, indent=2) + "\n")


# The record fields label rules look at (see models/labels.py), and their missing value.
_RULE_FIELDS = {
    "ts_ns": 0,
    "ip_src": "",
    "ipv6_src": "",
    "arp_psrc": "",
    "ip_dst": "",
    "ipv6_dst": "",
    "arp_pdst": "",
    "tcp_sport": -1,
    "udp_sport": -1,
    "tcp_dport": -1,
    "udp_dport": -1,
    "l4_proto": -1,
    "eth_type": -1,
}


def _rule_columns(records_path: Path) -> Iterator[dict[str, np.ndarray]]:
    """Chunks of the sensor's JSON lines as the columns the rules read (null → missing)."""
    rows: list[dict[str, Any]] = []

    def columns() -> dict[str, np.ndarray]:
        out = {}
        for name, missing in _RULE_FIELDS.items():
            values = [missing if row.get(name) is None else row[name] for row in rows]
            out[name] = np.array(values, dtype=object if isinstance(missing, str) else np.int64)
        return out

    with records_path.open("rb") as stream:
        for line in stream:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= _CHUNK_ROWS:
                yield columns()
                rows = []
    if rows:
        yield columns()


@dataclass
class LabelCounts:
    """Records per attack type, and per rule the records it labelled and those from ``src``."""

    by_type: Counter[str]
    by_rule: list[int]
    from_attacker_by_rule: list[int]
    records: int


def count_labels(records_path: Path, rules: list[LabelRule]) -> LabelCounts:
    """Apply ``rules`` to the sensor's JSON lines the way ``antinex dataset build`` does."""
    by_type: Counter[str] = Counter()
    by_rule = [0] * len(rules)
    from_attacker = [0] * len(rules)
    records = 0
    for columns in _rule_columns(records_path):
        rows = len(columns["ts_ns"])
        records += rows
        if not rules:
            by_type[BENIGN] += rows
            continue
        _label, attack_type, matched = apply_rules(rules, columns)
        by_type.update(attack_type.tolist())
        by_rule = [a + b for a, b in zip(by_rule, matched, strict=True)]
        for n, rule in enumerate(rules):
            sources = {str(net.network_address) for net in rule.src or ()}
            hit = attack_type == rule.attack_type
            from_src = np.isin(columns["ip_src"].astype(str), list(sources))
            in_window = (columns["ts_ns"] >= rule.start_ns) & (columns["ts_ns"] <= rule.end_ns)
            from_attacker[n] += int((hit & in_window & from_src).sum())
    return LabelCounts(by_type, by_rule, from_attacker, records)
