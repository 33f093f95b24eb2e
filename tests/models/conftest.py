"""Fixtures of the model tests: labelled captures and their dataset, the AntiNex v1 reference
data beside the project, and ``antinex`` run in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_traffic import RunAntinex, label_rules, write_capture

from antinex import cli

SHARED_V1 = Path(__file__).resolve().parents[2].parent / "shared" / "antinex-v1"


@pytest.fixture
def antinex(capsys: pytest.CaptureFixture[str]) -> RunAntinex:
    """Run ``antinex ARGS...`` in this process; return its exit code, stdout and stderr."""

    def run(*argv: object) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def shared_v1() -> Path:
    """The AntiNex v1 reference data in ``../shared``; skips when the folder is absent."""
    if not SHARED_V1.is_dir():
        pytest.skip(
            f"AntiNex v1 reference data not found at {SHARED_V1} (../shared beside the repo)"
        )
    return SHARED_V1


@pytest.fixture(scope="session")
def captures(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Three small captures (three scenarios) and their label file."""
    folder = tmp_path_factory.mktemp("captures")
    paths, hosts = [], []
    for scenario in (1, 2, 3):
        path = folder / f"scenario{scenario}.pcap"
        hosts.append(write_capture(path, scenario))
        paths.append(path)
    labels = folder / "labels.json"
    labels.write_text(json.dumps(label_rules(hosts)))
    return paths, labels


@pytest.fixture(scope="session")
def built_dataset(
    captures: tuple[list[Path], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The three captures as one labelled dataset file."""
    from models.build import build
    from models.labels import load_rules

    paths, labels = captures
    out = tmp_path_factory.mktemp("dataset") / "dataset.csv.gz"
    build([str(p) for p in paths], load_rules(labels), out)
    return out
