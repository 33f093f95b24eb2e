"""Tests of ``antinex dataset build`` and the dataset files: labels, meta columns, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_traffic import RunAntinex, synthetic_columns

from antinex.options import UsageError
from capture.schema import NAMES
from models.dataset import COLUMNS, load_dataset, read_header, write_columns


def test_build_labels_each_attack_and_keeps_the_rest_benign(
    built_dataset: Path, captures: tuple[list[Path], Path]
) -> None:
    """Every capture's scan and password guessing get their type; other packets are benign."""
    ds = load_dataset([built_dataset], progress=False)
    kinds = ds["attack_type"].astype(str)
    assert {"benign", "port_scan", "ssh_guessing"} == set(kinds.tolist())
    assert (ds["label"] == (kinds != "benign")).all()
    assert ["scenario1.pcap", "scenario2.pcap", "scenario3.pcap"] == sorted(
        set(ds["capture"].astype(str).tolist())
    )
    assert ["scenario1", "scenario2", "scenario3"] == sorted(
        set(ds["scenario"].astype(str).tolist())
    )
    scans = kinds == "port_scan"
    # The victim's RST answers belong to the scan as much as the SYN probes.
    assert {2, 20} == set(ds["tcp_flags"][scans].tolist())


def test_dataset_columns_are_the_record_then_the_labels(built_dataset: Path) -> None:
    """A dataset file's header is the record schema followed by the four label columns."""
    assert list(COLUMNS) == read_header(built_dataset)
    assert list(NAMES) == read_header(built_dataset)[: len(NAMES)]


def test_building_from_sensor_json_lines_equals_building_from_the_pcap(
    antinex: RunAntinex, captures: tuple[list[Path], Path], tmp_path: Path
) -> None:
    """The sensor's JSON lines of a capture make the same dataset rows as the capture itself."""
    pcap, labels = captures[0][0], captures[1]
    jsonl = tmp_path / "scenario1.jsonl"
    code, _, err = antinex(
        "sensor", "--pcap", pcap, "--output", "jsonl", "--out", jsonl, "--metrics-port", "0"
    )
    assert 0 == code, err
    outs = []
    for source in (pcap, jsonl):
        out = tmp_path / f"{source.suffix[1:]}.csv"
        code, stdout, err = antinex(
            "dataset", "build", "--input", source, "--labels", labels, "--out", out
        )
        assert 0 == code, err
        assert "port_scan" in stdout
        outs.append(load_dataset([out], progress=False))
    from_pcap, from_json = outs
    assert from_pcap.n_rows == from_json.n_rows
    for name in from_pcap.columns:
        if name != "capture":
            assert from_pcap[name].tolist() == from_json[name].tolist(), name


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_written_dataset_reads_back_the_same(tmp_path: Path, suffix: str) -> None:
    """Numbers, missing values (-1) and text survive a write and a read, gzip or not."""
    columns = synthetic_columns(300, leak=False)
    path = tmp_path / f"data{suffix}"
    assert 300 == write_columns(path, columns)
    ds = load_dataset([path], progress=False)
    for name in ("ts_ns", "frame_len", "ip_ttl", "label", "tcp_sport", "ip_src", "capture"):
        assert columns[name].tolist() == ds[name].tolist(), name
    assert np.allclose(columns["payload_entropy"], ds["payload_entropy"])
    assert 1 == len(ds.fingerprint()["files"])
    assert 300 == ds.fingerprint()["rows"]


def test_a_file_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    """A CSV without the label columns is refused with a hint at `dataset build`."""
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="dataset build"):
        load_dataset([path], progress=False)


def test_build_refuses_an_input_that_is_not_a_capture(
    antinex: RunAntinex, captures: tuple[list[Path], Path], tmp_path: Path
) -> None:
    """An input that is neither a pcap nor JSON lines ends with exit code 2 and one sentence."""
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\n")
    code, _, err = antinex(
        "dataset", "build", "--input", bogus, "--labels", captures[1], "--out", tmp_path / "x.csv"
    )
    assert 2 == code
    assert "not a readable pcap" in err


def test_a_failed_write_leaves_no_dataset_behind(tmp_path: Path) -> None:
    """When writing stops with an error, neither the dataset nor its partial file remains."""
    from models.dataset import DatasetWriter

    path = tmp_path / "data.csv.gz"
    with pytest.raises(RuntimeError), DatasetWriter(path) as writer:
        writer.write(synthetic_columns(10, leak=False))
        raise RuntimeError("the capture could not be read")
    assert [] == list(tmp_path.iterdir())
