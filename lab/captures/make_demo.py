"""Cut the shipped demo capture out of a lab run: its pcap with one attack trimmed, and the run's
label rules restricted to what is left.

A lab run's capture holds every packet of every attack; a SYN flood alone is megabytes. This
keeps the whole run (benign traffic from first to last second, every attack's start) and drops
the packets between an attacker and its target that come later than ``--trim`` seconds into
that attack's window, so the file stays small and the trimmed attack reads as a shorter one.

    python lab/captures/make_demo.py --run RUN_DIR --out-dir lab/captures --trim syn_flood=0.3

``RUN_DIR`` is the output of ``antinex lab run`` (capture.pcap and labels.json).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scapy.utils import RawPcapReader, RawPcapWriter

_ETH_HEADER = 14
_ETH_IPV4 = b"\x08\x00"
_DLT_EN10MB = 1


@dataclass(frozen=True)
class Trim:
    """Packets of one attack window, between its hosts, later than ``keep_s`` into it."""

    attack_type: str
    start: float
    end: float
    cut_at: float
    hosts: frozenset[str]

    def drops(self, ts: float, src: str, dst: str) -> bool:
        return self.cut_at < ts <= self.end and src in self.hosts and dst in self.hosts


def _ipv4_pair(frame: bytes) -> tuple[str, str] | None:
    """Source and destination of an Ethernet frame carrying IPv4 (untagged), else None."""
    if frame[12:14] != _ETH_IPV4 or len(frame) < _ETH_HEADER + 20:
        return None
    ip = frame[_ETH_HEADER:]
    return str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))


def _trims(rules: list[dict[str, Any]], keep: dict[str, float]) -> list[Trim]:
    out = []
    for rule in rules:
        kind = rule["attack_type"]
        if kind in keep:
            hosts = frozenset([*rule.get("src", []), *rule.get("dst", [])])
            start, end = float(rule["start"]), float(rule["end"])
            out.append(Trim(kind, start, end, start + keep[kind], hosts))
    return out


def cut(pcap: Path, rules: list[dict[str, Any]], keep: dict[str, float], out: Path) -> dict:
    """Write ``pcap`` without the trimmed packets to ``out``; returns counts and time span."""
    trims = _trims(rules, keep)
    reader = RawPcapReader(str(pcap))
    if reader.linktype != _DLT_EN10MB:
        raise SystemExit(f"{pcap} is not an Ethernet capture (link type {reader.linktype})")
    kept = dropped = 0
    first = last = None
    snaplen = getattr(reader, "snaplen", 262144)
    with RawPcapWriter(str(out), linktype=_DLT_EN10MB, snaplen=snaplen) as writer:
        writer.write_header(None)  # written before the first packet even if none is kept
        for frame, meta in reader:
            ts = meta.sec + meta.usec / 1e6
            pair = _ipv4_pair(frame)
            if pair and any(t.drops(ts, *pair) for t in trims):
                dropped += 1
                continue
            writer.write_packet(frame, sec=meta.sec, usec=meta.usec, wirelen=meta.wirelen)
            kept += 1
            first = ts if first is None else first
            last = ts
    reader.close()
    return {"kept": kept, "dropped": dropped, "first": first, "last": last, "trims": trims}


def restricted_rules(
    rules: list[dict[str, Any]], first: float, last: float, trims: list[Trim]
) -> list[dict[str, Any]]:
    """The rules whose window meets [first, last], clipped to it; trimmed ones say so."""
    out = []
    for rule in rules:
        start, end = max(float(rule["start"]), first), min(float(rule["end"]), last)
        if start > end:
            continue
        clipped = {**rule, "start": start, "end": end}
        for t in trims:
            if t.attack_type == rule["attack_type"] and t.start == float(rule["start"]):
                clipped["note"] = (
                    f"{rule.get('note', '')}; this file keeps its first {t.cut_at - t.start:g} s"
                ).lstrip("; ")
        out.append(clipped)
    return out


def _keep_arg(text: str) -> tuple[str, float]:
    kind, _, seconds = text.partition("=")
    try:
        return kind, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ATTACK_TYPE=SECONDS") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="A lab run's output directory")
    parser.add_argument("--out-dir", required=True, type=Path, help="Where demo.* go")
    parser.add_argument(
        "--trim",
        action="append",
        type=_keep_arg,
        default=[],
        help="ATTACK_TYPE=SECONDS: keep only this much of each window of that attack",
    )
    parser.add_argument("--name", default="demo", help="File name stem (default: demo)")
    args = parser.parse_args(argv)

    labels = json.loads((args.run / "labels.json").read_text())
    rules = labels["rules"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pcap_out = args.out_dir / f"{args.name}.pcap"
    result = cut(args.run / "capture.pcap", rules, dict(args.trim), pcap_out)
    if result["first"] is None:
        raise SystemExit(f"{args.run / 'capture.pcap'} holds no packets")
    kept_rules = restricted_rules(rules, result["first"], result["last"], result["trims"])
    (args.out_dir / f"{args.name}.labels.json").write_text(
        json.dumps({"scenario": labels.get("scenario", args.name), "rules": kept_rules}, indent=2)
        + "\n"
    )
    print(
        f"wrote {pcap_out}: {result['kept']} packets kept, {result['dropped']} trimmed, "
        f"{pcap_out.stat().st_size} bytes, {len(kept_rules)} label rules"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
