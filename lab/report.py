"""The summary of a lab run: DIR/summary.json, and the few lines printed at the end."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from antinex.logs import event
from lab.labels import AttackWindow, count_labels
from models.labels import load_rules

if TYPE_CHECKING:
    from lab.network import LabNetwork
    from lab.runner import RunState
    from lab.scenario import Scenario

log = logging.getLogger("antinex.lab")


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def build_summary(
    scenario: Scenario,
    network: LabNetwork,
    state: RunState,
    windows: list[AttackWindow],
    capture_report: dict[str, Any],
    notes: list[str],
    interrupted: bool,
    out: Path,
) -> dict[str, Any]:
    """Everything a reader of the run needs: hosts, windows, exit codes, counts per label."""
    records_path, labels_path = out / "records.jsonl", out / "labels.json"
    counts = None
    if records_path.is_file():
        rules = load_rules(labels_path) if windows else []
        counts = count_labels(records_path, rules)
    window_rows = []
    for n, window in enumerate(sorted(windows, key=lambda w: w.start_ns)):
        window_rows.append(
            {
                "tool": window.tool,
                "attack_type": window.attack_type,
                "host": window.host,
                "src": window.src_ip,
                "dst": window.dst_ip,
                "start": _iso(window.label_start_ns),
                "end": _iso(window.label_end_ns),
                "tool_seconds": round((window.end_ns - window.start_ns) / 1e9, 2),
                "exit_code": window.exit_code,
                "stopped_by_lab": window.stopped_by_lab,
                "labelled_records": counts.by_rule[n] if counts else None,
                "records_from_attacker": counts.from_attacker_by_rule[n] if counts else None,
            }
        )
    return {
        "scenario": scenario.name,
        "scenario_file": scenario.source,
        "started": _iso(state.started_ns) if state.started_ns else None,
        "seconds": round((state.ended_ns - state.started_ns) / 1e9, 1) if state.started_ns else 0,
        "interrupted": interrupted,
        "hosts": {host.name: host.ip for host in network.hosts.values()},
        "files": {
            "pcap": str(out / "capture.pcap"),
            "records": str(records_path),
            "labels": str(labels_path),
            "logs": str(out / "logs"),
        },
        "pcap_packets": capture_report.get("tcpdump", {}).get("captured"),
        "pcap_dropped_by_kernel": capture_report.get("tcpdump", {}).get("dropped_by_kernel"),
        "sensor": capture_report.get("sensor", {}),
        **({"stream": capture_report["stream"]} if "stream" in capture_report else {}),
        "records": counts.records if counts else 0,
        "records_by_attack_type": dict(sorted(counts.by_type.items())) if counts else {},
        "windows": window_rows,
        "skipped_attacks": [f"{step.tool} at {step.at_s:g} s" for step in state.skipped],
        "benign": [
            {"activity": activity, "host": host, "exit_code": process.returncode}
            for activity, host, process in state.benign
        ],
        "notes": notes,
    }


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")
    silent = [w["tool"] for w in summary["windows"] if not w["records_from_attacker"]]
    if silent:
        event(
            log,
            logging.WARNING,
            "lab_attack_without_packets",
            tools=",".join(silent),
            hint="the tool sent nothing the sensor saw; read its log in the logs folder",
        )
    event(
        log,
        logging.INFO,
        "lab_run_finished",
        scenario=summary["scenario"],
        records=summary["records"],
        windows=len(summary["windows"]),
        interrupted=summary["interrupted"],
    )


def format_summary(summary: dict[str, Any]) -> str:
    """A short text: packets, records, windows with exit codes, records per attack type."""
    state = "interrupted" if summary["interrupted"] else "done"
    lines = [
        f"lab run {summary['scenario']}: {state} after {summary['seconds']} s; "
        f"pcap {summary['pcap_packets']} packets, {summary['records']} records, "
        f"{len(summary['windows'])} attack windows",
        f"{'tool':18s} {'host':10s} {'type':18s} {'secs':>6s} {'exit':>5s} {'labelled':>9s} "
        f"{'from attacker':>13s}",
    ]
    for w in summary["windows"]:
        code = "killed" if w["stopped_by_lab"] else str(w["exit_code"])
        lines.append(
            f"{w['tool']:18s} {w['host']:10s} {w['attack_type']:18s} {w['tool_seconds']:6.1f} "
            f"{code:>5s} {w['labelled_records'] or 0:9d} {w['records_from_attacker'] or 0:13d}"
        )
    by_type = ", ".join(f"{k} {v}" for k, v in summary["records_by_attack_type"].items())
    lines.append(f"records by attack type: {by_type or 'none'}")
    for note in summary["notes"]:
        lines.append(f"note: {note}")
    if summary["skipped_attacks"]:
        lines.append(f"skipped (past --duration): {', '.join(summary['skipped_attacks'])}")
    lines.append(f"files: {Path(summary['files']['records']).parent}")
    return "\n".join(lines)
