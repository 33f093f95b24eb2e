"""``antinex demo`` end to end on the local broker: the shipped capture replayed, and with
--live the lab's quick scenario captured live (root, namespaces). Every record the sensor
published is scored, and the alerts name the attack types the capture holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from support import netns

from lab import scenario
from lab.runner import missing_requirements

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def run_demo(*flags: str, timeout: float) -> dict[str, int | dict[str, int]]:
    """Run the demo; return the counts of its closing summary."""
    done = subprocess.run(
        [sys.executable, "-m", "antinex.cli", "demo", *flags],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert 0 == done.returncode, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    summary = done.stdout.split("\nsummary\n", 1)[1]
    counts: dict[str, int | dict[str, int]] = {}
    by_type: dict[str, int] = {}
    for line in summary.splitlines():
        found = re.match(r"  (\S[\w ]*?)\s{2,}([\d,]+)", line)
        nested = re.match(r"    (\w+)\s+([\d,]+)$", line)
        if nested:
            by_type[nested.group(1)] = int(nested.group(2).replace(",", ""))
        elif found:
            counts[found.group(1)] = int(found.group(2).replace(",", ""))
    counts["by_type"] = by_type
    return counts


def test_the_shipped_capture_is_scored_whole_and_raises_alerts(kafka_bootstrap: str):
    counts = run_demo("--bootstrap-servers", kafka_bootstrap, "--speed", "max", timeout=600)

    assert counts["packets captured"] > 20_000
    assert counts["packets captured"] == counts["records published"] == counts["records scored"]
    by_type = counts["by_type"]
    assert isinstance(by_type, dict)
    assert counts["alerts"] == sum(by_type.values()) > 0
    assert {"syn_flood", "syn_scan"} <= set(by_type)


@pytest.mark.netns
def test_live_streams_the_lab_victims_interface_and_scores_it(kafka_bootstrap: str):
    if os.geteuid() != 0:
        pytest.skip("demo --live builds network namespaces and needs root")
    reason = netns.netns_unavailable() or missing_requirements(scenario.load("quick"))
    if reason:
        pytest.skip(reason)

    counts = run_demo("--live", "--bootstrap-servers", kafka_bootstrap, timeout=900)

    # The quick scenario runs benign clients and several attack tools for about a minute.
    assert counts["packets captured"] > 5_000
    assert counts["packets captured"] == counts["records published"] == counts["records scored"]
    by_type = counts["by_type"]
    assert isinstance(by_type, dict)
    assert counts["alerts"] == sum(by_type.values()) > 0
    assert "syn_flood" in by_type
