"""AntiNex v1 CSV files: read as they are (for the audit) or imported into this project's dataset
columns, with a table of what maps, what is derived and what cannot be used.

v1 filled every missing value with -1 (written ``-1.0``, or an empty cell in the raw captures).
Its extractor wrote some fields into the wrong columns (``ip_len`` holds the IPv4 checksum,
``tcp_seq`` the TCP checksum), left every ``*_id`` column empty and filled ``dns_default_*``
with scapy's class defaults, so those columns are dropped on import and said so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antinex.options import UsageError
from capture.schema import MISSING
from models.dataset import (
    Dataset,
    DatasetWriter,
    SourceFile,
    empty_columns,
    iter_csv_chunks,
    parse_column,
    read_header,
    sha256_of,
)
from models.labels import BENIGN

KIND = "antinex-v1"
# v1 columns that hold text; every other v1 column is a number.
_TEXT = {
    "eth_dst",
    "eth_src",
    "ip_src",
    "ip_dst",
    "ipv6_src",
    "ipv6_dst",
    "arp_hwsrc",
    "arp_psrc",
    "arp_hwdst",
    "arp_pdst",
    "raw_load",
    "raw_hex_load",
    "raw_hex_field_load",
    "pad_load",
    "src_file",
    "label_name",
}
_LABELS = ("label_value", "label_name", "src_file")
_SAME_NAME = [
    "eth_dst",
    "eth_src",
    "eth_type",
    "ip_version",
    "ip_ihl",
    "ip_tos",
    "ip_src",
    "ip_dst",
    "ipv6_src",
    "ipv6_dst",
    "ipv6_version",
    "ipv6_tc",
    "ipv6_fl",
    "ipv6_plen",
    "ipv6_nh",
    "ipv6_hlim",
    "tcp_sport",
    "tcp_dport",
    "udp_sport",
    "udp_dport",
    "udp_len",
    "icmp_type",
    "icmp_code",
    "icmp_seq",
    "arp_hwtype",
    "arp_ptype",
    "arp_hwlen",
    "arp_plen",
    "arp_op",
    "arp_hwsrc",
    "arp_psrc",
    "arp_hwdst",
    "arp_pdst",
]
MAPPED = {
    **{name: name for name in _SAME_NAME},
    "tcp_fields_options.MSS": "tcp_opt_mss",
    "tcp_fields_options.WScale": "tcp_opt_wscale",
}
_PAYLOAD = ("raw_load", "raw_hex_load", "raw_hex_field_load")
_NO_COUNTERPART = ("icmp_gw", "icmp_ptr", "icmp_addr_mask", "icmp_ts_ori", "icmp_ts_rx")
DROPPED = {
    "ip_len": "holds the IPv4 header checksum, not the length (v1 extractor defect)",
    "tcp_seq": "holds the TCP checksum, not the sequence number (v1 extractor defect)",
    "idx": "row position in the file, not a packet property (used to find capture ends)",
    "pad_load": "Ethernet padding; the record has no field for it",
    "tcp_fields_options.NOP": "v1 kept no NOP count (empty even on SYNs that carry NOPs)",
    "tcp_fields_options.SAckOK": "v1 lost SACK-permitted (empty even on Linux SYNs)",
    **{name: "the record has no field for it" for name in (*_NO_COUNTERPART, "icmp_ts_tx")},
    "icmp_unused": "the record has no field for it",
}
_ID_NOTE = "v1 wrote no value into *_id columns"
_DNS_NOTE = "scapy's DNS class defaults, not read from packets"
_PRINTABLE = np.zeros(256, dtype=bool)
_PRINTABLE[[9, 10, 13, *range(32, 127)]] = True


def is_v1_header(header: Sequence[str]) -> bool:
    """Whether a CSV header is an AntiNex v1 one (and not this project's dataset)."""
    names = set(header)
    if "schema_version" in names:
        return False
    return bool(names & {"idx", "ipvsix_id"}) or any(
        n.startswith("tcp_fields_options.") for n in names
    )


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.isin(values.astype(str), ("", "-1", "-1.0", "nan"))
    return values == MISSING


def _read_file(path: str | Path) -> dict[str, np.ndarray]:
    chunks: list[dict[str, np.ndarray]] = []
    for header, cells in iter_csv_chunks(path):
        chunk = {}
        for i, name in enumerate(header):
            kind = "text" if name in _TEXT else "float"
            chunk[name] = parse_column(kind, cells[i])
        chunks.append(chunk)
    if not chunks:
        raise UsageError(f"{path} holds no rows")
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _captures(path: str | Path, raw: dict[str, np.ndarray]) -> np.ndarray:
    """Capture name per row: v1's src_file when set, else the file's name; a new capture starts
    wherever ``idx`` goes back (files that concatenate captures restart it)."""
    n = len(next(iter(raw.values())))
    stem = Path(path).name.split(".")[0]
    names = np.full(n, stem, dtype=object)
    if "src_file" in raw:
        given = raw["src_file"]
        known = ~_missing(given)
        names[known] = [os.path.basename(str(v)).split(".")[0] for v in given[known]]
    if "idx" in raw:
        segment = np.concatenate([[0], np.cumsum(np.diff(raw["idx"]) < 0)])
        if segment[-1] > 0:
            names = np.array(
                [f"{a}#{b}" for a, b in zip(names, segment, strict=True)], dtype=object
            )
    return names


def _labels(raw: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    label = np.full(n, -1, dtype=np.int64)
    if "label_value" in raw:
        label = raw["label_value"].astype(np.int64)
    elif "label_name" in raw:
        names = raw["label_name"].astype(str)
        label = np.where(names == "attack", 1, np.where(names == "not_attack", 0, -1))
    kind = np.where(label == 1, "attack", np.where(label == 0, BENIGN, "unlabelled"))
    return label, kind.astype(object)


def _flows(raw: dict[str, np.ndarray], captures: np.ndarray) -> np.ndarray:
    """A flow id per row from addresses and ports where v1 kept them, else ports per capture."""
    n = len(captures)
    parts = []
    for name in ("ip_src", "ip_dst", "tcp_sport", "tcp_dport", "udp_sport", "udp_dport"):
        parts.append(raw[name].astype(str) if name in raw else np.full(n, "", dtype=object))
    src, dst, sport, dport = parts[0], parts[1], parts[2], parts[3]
    sport = np.where(_missing(raw.get("tcp_sport", np.full(n, -1.0))), parts[4], sport)
    dport = np.where(_missing(raw.get("tcp_dport", np.full(n, -1.0))), parts[5], dport)
    a = np.char.add(np.char.add(src.astype(str), ":"), sport.astype(str))
    b = np.char.add(np.char.add(dst.astype(str), ":"), dport.astype(str))
    lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
    return np.char.add(
        np.char.add(np.char.add(captures.astype(str), " "), lo), np.char.add(" ", hi)
    )


def read_v1(paths: Sequence[str | Path]) -> Dataset:
    """v1 CSV files as they are: v1's number columns (idx included: v1 trained on it) are the
    audit's candidates; label, attack_type, capture, scenario and flow_id are added."""
    parts, sources = [], []
    for path in paths:
        if not is_v1_header(read_header(path)):
            raise UsageError(f"{path} is not an AntiNex v1 CSV (no idx or tcp_fields_options.*)")
        raw = _read_file(path)
        n = len(next(iter(raw.values())))
        captures = _captures(path, raw)
        label, attack_type = _labels(raw, n)
        raw.update(
            label=label,
            attack_type=attack_type,
            capture=captures,
            scenario=np.full(n, Path(path).name.split(".")[0], dtype=object),
            flow_id=_flows(raw, captures).astype(object),
        )
        parts.append(raw)
        sources.append(SourceFile(str(path), sha256_of(path), n))
    numeric = set.intersection(*({k for k, v in p.items() if v.dtype != object} for p in parts))
    text = set().union(*({k for k, v in p.items() if v.dtype == object} for p in parts))
    columns = {name: np.concatenate([p[name] for p in parts]) for name in sorted(numeric)}
    for name in sorted(text):
        columns[name] = np.concatenate(
            [p[name] if name in p else np.full(len(p["label"]), "", dtype=object) for p in parts]
        )
    meta = {*_LABELS, "label", "attack_type", "capture", "scenario", "flow_id"}
    candidates = tuple(sorted(n for n in numeric if n not in meta))
    return Dataset(columns, sources, KIND, candidates)


# Import -------------------------------------------------------------------------------------


@dataclass
class ColumnFate:
    """What import did with one v1 column."""

    v1_column: str
    field: str
    status: str  # mapped, derived, label, dropped, unknown
    filled: float  # share of rows with a value in the v1 file
    note: str = ""


def _payload_stats(hex_cells: np.ndarray, present: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """payload_len, payload_entropy, payload_printable and payload_hex from payload hex text,
    with the decoder's definitions (Shannon bits per byte; share of printable ASCII)."""
    length = np.full(n, MISSING, dtype=np.int64)
    entropy = np.full(n, float(MISSING))
    printable = np.full(n, float(MISSING))
    head = np.full(n, "", dtype=object)
    length[~present] = 0
    entropy[~present] = 0.0
    printable[~present] = 0.0
    for row in np.flatnonzero(present):
        try:
            data = bytes.fromhex(str(hex_cells[row]))
        except ValueError:
            continue
        size = len(data)
        length[row] = size
        if size:
            counts = np.bincount(np.frombuffer(data, dtype=np.uint8))
            counts = counts[counts > 0]
            entropy[row] = round(float(np.log2(size) - (counts * np.log2(counts)).sum() / size), 4)
            printable[row] = round(float(_PRINTABLE[np.frombuffer(data, np.uint8)].mean()), 4)
            head[row] = data[:16].hex()
        else:
            entropy[row] = printable[row] = 0.0
    return {
        "payload_len": length,
        "payload_entropy": entropy,
        "payload_printable": printable,
        "payload_hex": head,
    }


def _flow_fields(columns: dict[str, np.ndarray], proto: np.ndarray) -> None:
    """flow_key, flow_id and flow_dir as the decoder makes them, where addresses and ports exist."""
    # Limitation: only IPv4 flows are derived; the v1 files at hand hold no IPv6 rows to check
    # the IPv6 key form against.
    sport = np.where(columns["tcp_sport"] >= 0, columns["tcp_sport"], columns["udp_sport"])
    dport = np.where(columns["tcp_dport"] >= 0, columns["tcp_dport"], columns["udp_dport"])
    for row in range(len(proto)):
        src, dst = str(columns["ip_src"][row]), str(columns["ip_dst"][row])
        if not src or not dst or proto[row] < 0 or sport[row] < 0:
            continue
        try:
            a, b = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
        except ValueError:
            continue
        forward = (a, sport[row]) <= (b, dport[row])
        (lo, lo_port), (hi, hi_port) = (
            ((src, sport[row]), (dst, dport[row]))
            if forward
            else ((dst, dport[row]), (src, sport[row]))
        )
        key = f"{proto[row]} {lo}:{lo_port} {hi}:{hi_port}"
        columns["flow_key"][row] = key
        columns["flow_id"][row] = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        columns["flow_dir"][row] = 0 if forward else 1


def import_v1(path: str | Path, writer: DatasetWriter) -> list[ColumnFate]:
    """Append the rows of one v1 CSV to ``writer`` in this project's columns; say what became
    of each v1 column."""
    raw = _read_file(path)
    n = len(next(iter(raw.values())))
    columns = empty_columns(n)
    fates: list[ColumnFate] = []
    filled = {name: float(1 - _missing(values).mean()) for name, values in raw.items()}

    for v1_name, field in MAPPED.items():
        if v1_name in raw:
            values = raw[v1_name]
            target = columns[field]
            columns[field] = values.astype(target.dtype) if target.dtype != object else values
            note = "" if filled[v1_name] else "empty in this file"
            fates.append(ColumnFate(v1_name, field, "mapped", filled[v1_name], note))

    is_tcp = columns["tcp_sport"] >= 0
    is_udp = columns["udp_sport"] >= 0
    is_icmp = columns["icmp_type"] >= 0
    proto = np.where(is_tcp, 6, np.where(is_udp, 17, np.where(is_icmp, 1, MISSING)))
    columns["l4_proto"] = proto
    columns["ip_proto"] = np.where(columns["ip_version"] == 4, proto, MISSING)
    if "tcp_fields_options.Timestamp" in raw:
        has_ts = ~_missing(raw["tcp_fields_options.Timestamp"])
        columns["tcp_opt_timestamp"] = np.where(is_tcp, has_ts.astype(np.int64), MISSING)
        fates.append(
            ColumnFate(
                "tcp_fields_options.Timestamp",
                "tcp_opt_timestamp",
                "derived",
                filled["tcp_fields_options.Timestamp"],
                "presence only; the value is a clock that fingerprints the session",
            )
        )
    payload = next((name for name in _PAYLOAD if name in raw), None)
    if payload:
        cells = raw[payload].copy()
        for other in _PAYLOAD:  # raw_load is empty where v1 put the payload in a hex field
            if other in raw and other != payload:
                use = _missing(cells) & ~_missing(raw[other])
                cells[use] = raw[other][use]
        columns.update(_payload_stats(cells, ~_missing(cells), n))
        fates.append(
            ColumnFate(payload, "payload_*", "derived", filled[payload], "length, entropy, hex")
        )
    _flow_fields(columns, proto)
    layers = [name for name in ("tcp_sport", "udp_sport", "icmp_type") if name in raw]
    if layers:
        fates.append(
            ColumnFate(
                f"({', '.join(layers)})",
                "l4_proto, ip_proto",
                "derived",
                float((proto >= 0).mean()),
                "from which transport columns hold values (v1 lost the protocol field)",
            )
        )
    if "ip_src" in raw and "tcp_sport" in raw:
        fates.append(
            ColumnFate(
                "(ip_src, ip_dst, ports)",
                "flow_key, flow_id, flow_dir",
                "derived",
                float((columns["flow_id"] != "").mean()),
                "as the decoder forms them",
            )
        )

    for name in raw:
        if name in MAPPED or name in ("tcp_fields_options.Timestamp", payload):
            continue
        fates.append(_fate_of(name, filled[name]))

    label, attack_type = _labels(raw, n)
    captures = _captures(path, raw)
    columns.update(
        label=label,
        attack_type=attack_type,
        scenario=np.full(n, "antinex-v1-" + Path(path).name.split(".")[0], dtype=object),
        capture=captures,
    )
    writer.write(columns)
    return fates


def _fate_of(name: str, filled: float) -> ColumnFate:
    if name in DROPPED:
        return ColumnFate(name, "-", "dropped", filled, DROPPED[name])
    if name.endswith("_id"):
        return ColumnFate(name, "-", "dropped", filled, _ID_NOTE)
    if name.startswith("dns_default_"):
        return ColumnFate(name, "-", "dropped", filled, _DNS_NOTE)
    if name in ("label_value", "label_name"):
        return ColumnFate(name, "label/attack_type", "label", filled, "attack or not_attack")
    if name == "src_file":
        return ColumnFate(name, "capture", "label", filled, "capture name when set")
    if name in _PAYLOAD:
        return ColumnFate(name, "payload_*", "derived", filled, "fills rows raw_load lacks")
    return ColumnFate(name, "-", "unknown", filled, "not a v1 column this import knows")


def format_fates(fates: list[ColumnFate]) -> str:
    """The import report as a text table, dropped and unusable columns last."""
    order = {"mapped": 0, "derived": 1, "label": 2, "dropped": 3, "unknown": 4}
    rows = sorted(fates, key=lambda f: (order[f.status], f.v1_column))
    header = ("v1 column", "field", "status", "filled", "note")
    table = [header] + [(f.v1_column, f.field, f.status, f"{f.filled:.0%}", f.note) for f in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(line.rstrip() for line in lines)
