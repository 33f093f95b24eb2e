"""Tests of ``antinex dataset import-antinex``: AntiNex v1 CSVs into this project's columns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from model_traffic import RunAntinex

from models.dataset import load_dataset
from models.v1 import is_v1_header

DJANGO = "antinex-datasets/v1/webapps/django/inputs/attack/v1_django_full_attack.csv"


def test_v1_headers_are_told_from_dataset_headers() -> None:
    """idx or tcp_fields_options.* mark a v1 file; schema_version marks this project's."""
    assert is_v1_header(["idx", "eth_type", "tcp_fields_options.MSS", "label_value"])
    assert is_v1_header(["eth_type", "ipvsix_id"])
    assert not is_v1_header(["schema_version", "ts_ns", "label", "idx"])
    assert not is_v1_header(["a", "b"])


def test_a_missing_v1_file_is_a_usage_error(antinex: RunAntinex, tmp_path: Path) -> None:
    """A v1 file that does not exist ends in exit code 2 and one sentence."""
    code, _, err = antinex(
        "dataset", "import-antinex", "--input", tmp_path / "nope.csv", "--out", tmp_path / "o.csv"
    )
    assert 2 == code
    assert "does not exist" in err


@pytest.mark.shared
def test_import_maps_what_maps_and_reports_what_is_unusable(
    antinex: RunAntinex, shared_v1: Path, tmp_path: Path
) -> None:
    """The django attack file imports with its checksum columns dropped and said why."""
    out = tmp_path / "django.csv.gz"
    code, table, err = antinex(
        "dataset", "import-antinex", "--input", shared_v1 / DJANGO, "--out", out
    )
    assert 0 == code, err
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert re.search(r"dropped .*IPv4 header checksum", lines["ip_len"])
    assert re.search(r"dropped .*TCP checksum", lines["tcp_seq"])
    assert re.search(r"dropped .*\*_id", lines["ip_id"])
    assert re.search(r"tcp_opt_mss\s+mapped", lines["tcp_fields_options.MSS"])
    assert re.search(r"tcp_opt_timestamp\s+derived", lines["tcp_fields_options.Timestamp"])

    ds = load_dataset([out], progress=False)
    assert 9000 == ds.n_rows
    assert (ds["label"] == 1).all()
    assert (ds["ip_len"] == -1).all() and (ds["tcp_seq"] == -1).all()
    assert {0, 1} == set(ds["tcp_opt_timestamp"].tolist())
    assert {6} == set(ds["l4_proto"].tolist())
    # The file joins two captures (idx starts again at 0): they stay apart for the splits.
    captures, counts = np.unique(ds["capture"].astype(str), return_counts=True)
    assert [7900, 1100] == counts.tolist()
    assert all(c.startswith("v1_django_full_attack#") for c in captures)
    key = str(ds["flow_key"][0]) if ds.has("flow_key") else ""
    flows = ds["flow_id"].astype(str)
    assert (flows != "").all()
    assert "" == key or re.fullmatch(r"6 [\d.]+:\d+ [\d.]+:\d+", key)
    assert 1000 < (ds["payload_len"] > 0).sum() < 9000
