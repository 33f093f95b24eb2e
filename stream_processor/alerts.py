"""Alert documents: JSON in Elastic Common Schema (ECS) names, nested as ECS objects.

ECS fields are used where they fit: ``@timestamp`` (when the alert was raised), ``event.*``
(kind ``alert``, category ``network``, ``start``/``end`` = first and last attack packet seen,
``risk_score`` = score * 100), ``source.*``/``destination.*``, ``network.*`` and ``rule.*``
(``rule.name`` is the attack type, ``rule.version`` the model version). What ECS has no name for
sits under ``antinex.*``: score, threshold, model, attack type, flow, packet counts, the top
features and the Kafka position of the record the evidence comes from. An example::

    {"@timestamp": "2025-01-02T03:04:05.678Z",
     "event": {"kind": "alert", "category": ["network"], "type": ["info"], "module": "antinex",
               "dataset": "antinex.alerts", "start": "...", "end": "...", "risk_score": 97.1},
     "rule": {"name": "attack", "ruleset": "antinex-model", "version": "v3"},
     "source": {"ip": "10.0.0.5", "port": 40000},
     "destination": {"ip": "10.0.0.9", "port": 22},
     "network": {"transport": "tcp", "type": "ipv4", "iana_number": "6"},
     "antinex": {"score": 0.971, "threshold": 0.5, "attack_type": "attack",
                 "model": {"version": "v3", "schema_version": 1},
                 "alert": {"kind": "new", "window_s": 60},
                 "flow": {"id": "9f2c...", "key": "6 10.0.0.5:40000 10.0.0.9:22"},
                 "packets": {"count": 12, "first_seen": "...", "last_seen": "..."},
                 "top_features": [{"name": "tcp_flag_syn", "value": 1, "contribution": 0.41}],
                 "record": {"topic": "antinex.packets", "partition": 0, "offset": 17}}}
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from capture.schema import SCHEMA_VERSION
from stream_processor.windows import Raised

CONTENT_TYPE = b"application/json"
_TRANSPORTS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one record says about an attack: endpoints, score, attack type, top features."""

    source: dict[str, Any]
    destination: dict[str, Any]
    network: dict[str, Any]
    flow_key: str
    score: float
    attack_type: str
    top_features: list[dict[str, Any]]
    record: dict[str, Any]


def evidence_of(
    row: np.void,
    score: float,
    attack_type: str,
    top: list[dict[str, Any]],
    position: tuple[str, int, int],
) -> Evidence:
    """The evidence of one decoded record (a row of a batch array)."""
    proto = int(row["l4_proto"])
    if _text(row["ip_src"]):
        src, dst, kind = _text(row["ip_src"]), _text(row["ip_dst"]), "ipv4"
    elif _text(row["ipv6_src"]):
        src, dst, kind = _text(row["ipv6_src"]), _text(row["ipv6_dst"]), "ipv6"
    else:
        src, dst, kind = _text(row["arp_psrc"]), _text(row["arp_pdst"]), ""
    if int(row["tcp_sport"]) >= 0:
        sport, dport = int(row["tcp_sport"]), int(row["tcp_dport"])
    else:
        sport, dport = int(row["udp_sport"]), int(row["udp_dport"])
    network: dict[str, Any] = {}
    if proto >= 0:
        network["transport"] = _TRANSPORTS.get(proto, str(proto))
        network["iana_number"] = str(proto)
    if kind:
        network["type"] = kind
    topic, partition, offset = position
    return Evidence(
        source=_endpoint(src, sport, _text(row["eth_src"])),
        destination=_endpoint(dst, dport, _text(row["eth_dst"])),
        network=network,
        flow_key=_text(row["flow_key"]),
        score=round(float(score), 6),
        attack_type=attack_type,
        top_features=top,
        record={"topic": topic, "partition": partition, "offset": offset},
    )


def alert_document(
    raised: Raised,
    model_version: str,
    threshold: float,
    window_s: float,
    now_ns: int | None = None,
) -> dict[str, Any]:
    """The ECS document of ``raised``."""
    evidence: Evidence = raised.evidence
    first_seen, last_seen = iso_time(raised.first_ns), iso_time(raised.last_ns)
    return {
        "@timestamp": iso_time(time.time_ns() if now_ns is None else now_ns),
        "ecs": {"version": "8.17.0"},
        "event": {
            "kind": "alert",
            "category": ["network"],
            "type": ["info"],
            "module": "antinex",
            "dataset": "antinex.alerts",
            "start": first_seen,
            "end": last_seen,
            "risk_score": round(evidence.score * 100, 2),
        },
        "rule": {
            "name": evidence.attack_type,
            "ruleset": "antinex-model",
            "version": model_version,
        },
        "source": evidence.source,
        "destination": evidence.destination,
        "network": evidence.network,
        "antinex": {
            "score": evidence.score,
            "threshold": threshold,
            "attack_type": evidence.attack_type,
            "model": {"version": model_version, "schema_version": SCHEMA_VERSION},
            "alert": {"kind": raised.kind, "window_s": window_s},
            "flow": {"id": raised.flow_id, "key": evidence.flow_key},
            "packets": {"count": raised.count, "first_seen": first_seen, "last_seen": last_seen},
            "top_features": evidence.top_features,
            "record": evidence.record,
        },
    }


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def iso_time(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC with milliseconds, e.g. ``...05.678Z``."""
    stamp = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace")


def _endpoint(ip: str, port: int, mac: str) -> dict[str, Any]:
    endpoint: dict[str, Any] = {}
    if ip:
        endpoint["ip"] = ip
    if port >= 0:
        endpoint["port"] = port
    if mac:
        endpoint["mac"] = mac.upper().replace(":", "-")  # ECS spells MACs with dashes
    return endpoint
