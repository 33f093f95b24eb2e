"""Tests of ``antinex audit``: it fires on data built to leak, stays quiet on data that does not,
and finds the known defects of the AntiNex v1 data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_traffic import RunAntinex, synthetic_columns

from models.dataset import write_columns


def flagged(report: Path) -> set[tuple[str, str]]:
    findings = json.loads(report.read_text())["findings"]
    return {(f["check"], f["column"]) for f in findings if f["flagged"]}


@pytest.fixture
def leaky(tmp_path: Path) -> Path:
    path = tmp_path / "leaky.csv"
    write_columns(path, synthetic_columns(2000, leak=True))
    return path


@pytest.fixture
def honest(tmp_path: Path) -> Path:
    path = tmp_path / "honest.csv"
    write_columns(path, synthetic_columns(2000, leak=False))
    return path


def test_a_dataset_built_to_leak_is_flagged_with_exit_1(
    antinex: RunAntinex, leaky: Path, tmp_path: Path
) -> None:
    """Class per capture, a feature telling them apart and twin rows are each a finding."""
    report = tmp_path / "audit.json"
    code, out, _ = antinex("audit", leaky, "--json", report)
    assert 1 == code
    assert {
        ("label_separation", "ip_ttl"),
        ("capture_fingerprint", "ip_ttl"),
        ("duplicate_rows", "(all packet columns)"),
        ("class_from_one_capture", "class benign"),
        ("class_from_one_capture", "class port_scan"),
    } == flagged(report)
    assert "5 finding(s)" in out


def test_a_dataset_without_leaks_passes_with_exit_0(antinex: RunAntinex, honest: Path) -> None:
    """Overlapping classes in shared captures and no twins: no finding, exit code 0."""
    code, out, _ = antinex("audit", honest)
    assert 0 == code
    assert "no findings" in out
    assert "label_separation" in out  # the closest calls are still shown, under their limit


def test_twins_cross_a_random_split_but_not_a_flow_split(
    antinex: RunAntinex, leaky: Path, tmp_path: Path
) -> None:
    """--split random puts twin rows on both sides; --split flow-group keeps them together."""
    report = tmp_path / "random.json"
    antinex("audit", leaky, "--split", "random", "--json", report)
    assert ("duplicates_across_split", "(--split random)") in flagged(report)
    report = tmp_path / "flows.json"
    antinex("audit", leaky, "--split", "flow-group", "--json", report)
    assert ("duplicates_across_split", "(--split flow-group)") not in flagged(report)


def test_the_threshold_decides_what_is_a_finding(antinex: RunAntinex, honest: Path) -> None:
    """With a limit below the best single-feature separation, that feature becomes a finding."""
    code, out, _ = antinex("audit", honest, "--threshold", "0.6")
    assert 1 == code
    assert "YES" in out


@pytest.mark.shared
def test_the_v1_data_shows_its_known_defects(
    antinex: RunAntinex, shared_v1: Path, tmp_path: Path
) -> None:
    """On the v1 attack files: the TCP timestamp option fingerprints captures, idx counts
    rows, half the rows are twins, and the label marks whole captures."""
    files = sorted(shared_v1.glob("antinex-datasets/v1/webapps/*/inputs/attack/*cleaned*.csv"))
    assert 5 == len(files)
    report = tmp_path / "v1.json"
    code, out, _ = antinex("audit", *files, "--split", "random", "--json", report)
    assert 1 == code
    assert "tcp_fields_options.Timestamp" in out
    found = flagged(report)
    assert ("capture_fingerprint", "tcp_fields_options.Timestamp") in found
    assert ("row_order", "idx") in found
    assert ("duplicate_rows", "(all packet columns)") in found
    assert ("duplicates_across_split", "(--split random)") in found
    assert ("class_from_one_capture", "class attack") in found
    body = json.loads(report.read_text())
    twins = next(f for f in body["findings"] if f["check"] == "duplicate_rows")
    assert 0.4 < twins["score"] < 0.6
    assert "antinex-v1" == body["kind"]
