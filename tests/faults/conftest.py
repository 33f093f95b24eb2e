"""Fixtures of the fault tests; the rigs they hand out live in ``rigs.py``."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from rigs import QUIET_TF, OwnBroker, ProcessorRun, SensorLauncher, Topics


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small binary model, trained once per session."""
    os.environ.update(QUIET_TF)
    from support import tiny_model

    return tiny_model.train(tmp_path_factory.mktemp("fault-model") / "v1", version="v1", seed=0)


@pytest.fixture
def shared_topics(kafka_bootstrap: str) -> Iterator[Topics]:
    """Uniquely named topics on the shared broker, deleted after the test."""
    made = Topics(kafka_bootstrap)
    yield made
    made.cleanup()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    """A broker of this test's own, not started yet; stopped after the test."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("a broker of the test's own needs java and mvn")
    made = OwnBroker(tmp_path / "kafka")
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def sensors(tmp_path: Path) -> Iterator[SensorLauncher]:
    """Sensors a test starts; killed at its end if still running."""
    launcher = SensorLauncher(tmp_path)
    yield launcher
    launcher.cleanup()


@pytest.fixture
def processor_runs() -> Iterator[list[ProcessorRun]]:
    """Processors a test starts; killed at its end if still running."""
    runs: list[ProcessorRun] = []
    yield runs
    for run in runs:
        with contextlib.suppress(Exception):
            run.kill()
