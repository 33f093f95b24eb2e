"""Ground truth from a label file: rules of time window, hosts, ports and protocol → attack type.

A label file is JSON, a list of rules or ``{"rules": [...]}``. Each rule::

    {
      "attack_type": "port_scan",             # required; "benign" marks known-good traffic
      "start": "2024-05-01T10:00:00Z",        # required: ISO-8601 (no zone = UTC) or epoch s
      "end": 1714557900,                      # required, inclusive
      "src": ["198.51.100.7", "198.51.100.0/28"],   # optional: IPs or CIDRs
      "dst": ["203.0.113.5"],                 # optional
      "src_ports": [4444], "dst_ports": [22, 80],   # optional: TCP or UDP ports
      "protocol": "tcp",                      # optional: tcp, udp, icmp, icmpv6, arp or a number
      "both_directions": true,                # optional, default true: replies match too
      "note": "free text"                     # optional
    }

A packet takes the attack type of the first rule that matches it; a packet that no rule matches
is ``benign``. An empty list of rules says that no attack ran: every packet is benign. With
``both_directions`` a packet from a ``dst`` host to a ``src`` host (ports swapped as well)
matches too, so a victim's answers to an attack carry the attack's label.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from antinex.options import UsageError

BENIGN = "benign"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
_ETH_ARP = 0x0806
_KEYS = {
    "attack_type",
    "start",
    "end",
    "src",
    "dst",
    "src_ports",
    "dst_ports",
    "protocol",
    "both_directions",
    "note",
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class LabelRule:
    """One rule of a label file, parsed and checked."""

    attack_type: str
    start_ns: int
    end_ns: int
    src: tuple[Network, ...] | None = None
    dst: tuple[Network, ...] | None = None
    src_ports: frozenset[int] | None = None
    dst_ports: frozenset[int] | None = None
    protocol: str | None = None
    both_directions: bool = True


def load_rules(path: str | Path) -> list[LabelRule]:
    """The rules of the label file at ``path``; raises UsageError naming what is wrong."""
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise UsageError(f"label file {path} does not exist; give a JSON file of rules") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"label file {path} is not readable JSON ({err})") from err
    return parse_rules(obj, str(path))


def parse_rules(obj: Any, where: str = "labels") -> list[LabelRule]:
    """Rules from the decoded JSON of a label file."""
    items = obj.get("rules") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        raise UsageError(f"{where} holds no rules; give a list of rules or {{'rules': [...]}}")
    # An empty list is a statement, not an omission: no attack ran, every packet is benign.
    return [_parse_rule(item, f"{where} rule {n}") for n, item in enumerate(items, 1)]


def _parse_rule(item: Any, where: str) -> LabelRule:
    if not isinstance(item, dict):
        raise UsageError(f"{where} is not a JSON object")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise UsageError(f"{where} has unknown keys {unknown}; known keys: {sorted(_KEYS)}")
    attack_type = item.get("attack_type")
    if not isinstance(attack_type, str) or not attack_type.strip() or "," in attack_type:
        raise UsageError(f"{where} needs an attack_type: a name without commas")
    for key in ("start", "end"):
        if key not in item:
            raise UsageError(f"{where} needs '{key}': labels hold for a time window, not a capture")
    start_ns, end_ns = _time_ns(item["start"], where, "start"), _time_ns(item["end"], where, "end")
    if end_ns < start_ns:
        raise UsageError(f"{where} ends before it starts")
    protocol = item.get("protocol")
    if protocol is not None:
        protocol = str(protocol).lower()
        if protocol not in _PROTOCOLS and protocol != "arp" and not protocol.isdigit():
            raise UsageError(f"{where}: protocol {protocol!r} is not tcp, udp, icmp, icmpv6, arp")
    both = item.get("both_directions", True)
    if not isinstance(both, bool):
        raise UsageError(f"{where}: both_directions must be true or false")
    return LabelRule(
        attack_type=attack_type.strip(),
        start_ns=start_ns,
        end_ns=end_ns,
        src=_networks(item.get("src"), where, "src"),
        dst=_networks(item.get("dst"), where, "dst"),
        src_ports=_ports(item.get("src_ports"), where, "src_ports"),
        dst_ports=_ports(item.get("dst_ports"), where, "dst_ports"),
        protocol=protocol,
        both_directions=both,
    )


def _time_ns(value: Any, where: str, key: str) -> int:
    """Nanoseconds since the epoch of an ISO-8601 text or a number of epoch seconds."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int | float):
        return round(value * 1e9)
    if isinstance(value, str):
        try:
            return round(float(value) * 1e9)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
    raise UsageError(f"{where}: '{key}' {value!r} is neither ISO-8601 time nor epoch seconds")


def _networks(value: Any, where: str, key: str) -> tuple[Network, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise UsageError(f"{where}: '{key}' must be a list of IP addresses or CIDR blocks")
    try:
        return tuple(ipaddress.ip_network(str(v).strip(), strict=False) for v in items)
    except ValueError as err:
        raise UsageError(f"{where}: '{key}' holds a bad address ({err})") from err


def _ports(value: Any, where: str, key: str) -> frozenset[int] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, int) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 65535 for p in items
        )
    ):
        raise UsageError(f"{where}: '{key}' must be a list of port numbers 0..65535")
    return frozenset(items)


# Applying rules to columns ------------------------------------------------------------------


def _first_present(columns: Mapping[str, np.ndarray], names: Iterable[str], n: int) -> np.ndarray:
    """Per row, the first non-empty text among the named columns (absent columns skipped)."""
    out = np.full(n, "", dtype=object)
    for name in names:
        column = columns.get(name)
        if column is None:
            continue
        empty = out == ""
        out[empty] = column[empty]
    return out


def _first_port(columns: Mapping[str, np.ndarray], names: Iterable[str], n: int) -> np.ndarray:
    out = np.full(n, -1, dtype=np.int64)
    for name in names:
        column = columns.get(name)
        if column is not None:
            out = np.where(out >= 0, out, column)
    return out


def _in_networks(values: np.ndarray, networks: tuple[Network, ...]) -> np.ndarray:
    """Whether each address text lies in one of ``networks``; computed once per distinct value."""
    distinct, inverse = np.unique(values.astype(str), return_inverse=True)
    hits = np.zeros(len(distinct), dtype=bool)
    for i, text in enumerate(distinct):
        if not text:
            continue
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        hits[i] = any(address.version == net.version and address in net for net in networks)
    return hits[inverse.reshape(-1)]


class _Packets:
    """The columns rules look at, gathered once per batch of rows."""

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        n = len(columns["ts_ns"])
        self.n = n
        self.ts = columns["ts_ns"]
        self.src = _first_present(columns, ("ip_src", "ipv6_src", "arp_psrc"), n)
        self.dst = _first_present(columns, ("ip_dst", "ipv6_dst", "arp_pdst"), n)
        self.sport = _first_port(columns, ("tcp_sport", "udp_sport"), n)
        self.dport = _first_port(columns, ("tcp_dport", "udp_dport"), n)
        self.l4 = columns.get("l4_proto", np.full(n, -1))
        self.eth_type = columns.get("eth_type", np.full(n, -1))
        self._host_cache: dict[tuple[str, tuple[Network, ...]], np.ndarray] = {}

    def hosts_in(self, side: str, networks: tuple[Network, ...]) -> np.ndarray:
        key = (side, networks)
        if key not in self._host_cache:
            self._host_cache[key] = _in_networks(getattr(self, side), networks)
        return self._host_cache[key]


def _direction_mask(rule: LabelRule, packets: _Packets, reverse: bool) -> np.ndarray:
    src_side, dst_side = ("dst", "src") if reverse else ("src", "dst")
    sport, dport = (packets.dport, packets.sport) if reverse else (packets.sport, packets.dport)
    mask = np.ones(packets.n, dtype=bool)
    if rule.src is not None:
        mask &= packets.hosts_in(src_side, rule.src)
    if rule.dst is not None:
        mask &= packets.hosts_in(dst_side, rule.dst)
    if rule.src_ports is not None:
        mask &= np.isin(sport, list(rule.src_ports))
    if rule.dst_ports is not None:
        mask &= np.isin(dport, list(rule.dst_ports))
    return mask


def rule_mask(rule: LabelRule, packets: _Packets) -> np.ndarray:
    """Rows that ``rule`` matches."""
    # Limitation: a rule sees addresses, ports, protocol and time, not what a packet does: inside
    # its window, unrelated packets between the same hosts (the attacker's own DNS lookups, say)
    # take the attack's label unless ports or protocol narrow the rule.
    mask = (packets.ts >= rule.start_ns) & (packets.ts <= rule.end_ns)
    if rule.protocol == "arp":
        mask &= packets.eth_type == _ETH_ARP
    elif rule.protocol is not None:
        number = _PROTOCOLS[rule.protocol] if rule.protocol in _PROTOCOLS else int(rule.protocol)
        mask &= packets.l4 == number
    if not mask.any():
        return mask
    directed = _direction_mask(rule, packets, reverse=False)
    if rule.both_directions:
        directed |= _direction_mask(rule, packets, reverse=True)
    return mask & directed


def apply_rules(
    rules: list[LabelRule], columns: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Label rows: (label 0/1, attack type text, rows each rule labelled), first match wins."""
    packets = _Packets(columns)
    attack_type = np.full(packets.n, BENIGN, dtype=object)
    unassigned = np.ones(packets.n, dtype=bool)
    matched: list[int] = []
    for rule in rules:
        hit = rule_mask(rule, packets) & unassigned
        attack_type[hit] = rule.attack_type
        unassigned &= ~hit
        matched.append(int(hit.sum()))
    label = (attack_type != BENIGN).astype(np.int8)
    return label, attack_type, matched
