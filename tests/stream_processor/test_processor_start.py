"""Start-up failures of ``antinex process``: a model that fails its checks and an unreachable
broker each end with one sentence and their exit code, not a traceback."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from antinex import cli


def broken_copy(source: Path, target: Path, how: str) -> Path:
    shutil.copytree(source, target)
    if how == "corrupt_keras_file":
        (target / "model.keras").write_bytes(b"PK\x03\x04 not really a zip archive")
    elif how == "scaler_mismatch":
        scaler = json.loads((target / "scaler.json").read_text())
        scaler["data_min"], scaler["data_max"] = scaler["data_min"][:-2], scaler["data_max"][:-2]
        (target / "scaler.json").write_text(json.dumps(scaler))
    elif how == "other_schema_version":
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["schema_version"] += 1
        (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("corrupt_keras_file", "cannot be loaded as a Keras model"),
        ("scaler_mismatch", "the scaler has"),
        ("other_schema_version", "was trained on record schema"),
    ],
)
def test_a_model_that_fails_its_checks_exits_2_with_one_sentence(
    trained_models: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
    words: str,
) -> None:
    """Corrupt file, scaler/manifest disagreement and another schema version are refused."""
    model = broken_copy(trained_models["v1"], tmp_path / "model", how)

    code = cli.main(["process", "--model", str(model), "--metrics-port", "0"])

    err = capsys.readouterr().err.strip()
    assert 2 == code
    assert 1 == len(err.splitlines()), err
    assert err.startswith("antinex: model refused: ")
    assert words in err
    assert "Traceback" not in err


def test_a_missing_model_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["process", "--model", str(tmp_path / "nowhere"), "--metrics-port", "0"])

    assert 2 == code
    assert "does not exist" in capsys.readouterr().err


def test_an_unreachable_broker_is_retried_then_given_up_with_exit_1(
    trained_models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing listening, the processor retries with backoff and exits 1 after
    --connect-timeout-s with a sentence that names the address and what to do."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"

    flags = ["--bootstrap-servers", address, "--connect-timeout-s", "4", "--metrics-port", "0"]
    code = cli.main(
        ["--log-format", "json", "process", "--model", str(trained_models["v1"]), *flags]
    )

    err = capsys.readouterr().err.strip().splitlines()
    retries = [json.loads(line) for line in err if line.startswith("{")]
    assert 1 == code
    assert err[-1].startswith(f"antinex: cannot reach the Kafka broker at {address} after ")
    assert "antinex kafka start" in err[-1]
    assert ["broker_unreachable"] == sorted({r["event"] for r in retries} - {"model_loaded"})
    assert all("retry_in_s" in r for r in retries if r["event"] == "broker_unreachable")
