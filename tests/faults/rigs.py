"""Rigs of the fault tests: a broker of the test's own that can be stopped and started again,
the sensor as a subprocess that can be scraped and measured, and the processor helpers of
``tests/stream_processor/conftest.py``, loaded from there rather than copied."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from antinex import broker

_HERE = Path(__file__).resolve().parent


def _load_processor_helpers() -> Any:
    """The stream processor's conftest as a module of its own name; pytest loads conftests under
    the bare name ``conftest``, so it cannot be imported by name from here."""
    path = _HERE.parent / "stream_processor" / "conftest.py"
    spec = importlib.util.spec_from_file_location("stream_processor_test_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


processor_helpers = _load_processor_helpers()
ANTINEX = processor_helpers.ANTINEX
QUIET_TF = processor_helpers.QUIET_TF
ProcessorRun = processor_helpers.ProcessorRun
Topics = processor_helpers.Topics
free_port = processor_helpers.free_port
read_topic = processor_helpers.read_topic
wait_until = processor_helpers.wait_until


# A broker of the test's own ----------------------------------------------------------------


class OwnBroker:
    """A single-node broker on free ports with its state under the test's temporary directory.

    Stopping and starting it again keeps its data, ports and cluster id, as a restart of a
    production broker would.
    """

    def __init__(self, state_dir: Path) -> None:
        from test_broker import free_port_pair

        self.state_dir = state_dir
        self.port = free_port_pair()
        self.bootstrap = broker.bootstrap_address(self.port)
        shared = broker.BrokerPaths(Path(broker.DEFAULT_STATE_DIR).expanduser())
        cached = broker.cached_jars(shared, broker.DEFAULT_VERSION)
        if cached is not None:  # reuse the jars the shared broker fetched
            (state_dir / "jars").mkdir(parents=True)
            (state_dir / "jars" / broker.DEFAULT_VERSION).symlink_to(cached)

    def start(self) -> None:
        broker.start_broker(self.state_dir, self.port, timeout=120)

    def stop(self) -> None:
        broker.stop_broker(self.state_dir)


# The sensor as a subprocess ------------------------------------------------------------------


class SensorRun:
    """``antinex sensor`` in a subprocess, JSON logs in a file, metrics on a free port."""

    def __init__(self, workdir: Path, *flags: str, metrics: bool = True) -> None:
        self.port = free_port() if metrics else 0
        self.log_path = workdir / f"sensor-{os.getpid()}-{self.port or id(self)}.log"
        command = [ANTINEX, "--log-format", "json", "sensor", *flags]
        command += ["--metrics-port", str(self.port)]
        self._log = self.log_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                logged = json.loads(line)
                if isinstance(logged, dict) and (name is None or logged.get("event") == name):
                    found.append(logged)
        return found

    def value(self, sample_name: str, **labels: str) -> float:
        """The value of one sample of the sensor's metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            families = list(text_string_to_metric_families(reply.read().decode()))
        for family in families:
            for sample in family.samples:
                if sample.name == sample_name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def scrape_or_zero(self, sample_name: str, **labels: str) -> float:
        """Like ``value``, but 0 while the endpoint is not up yet."""
        try:
            return self.value(sample_name, **labels)
        except OSError:
            return 0.0

    def status(self, field: str) -> str:
        """A line of /proc/PID/status, e.g. ``VmRSS`` or ``Uid``, without its name."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == field:
                return rest.strip()
        raise KeyError(field)

    def rss_kib(self) -> int:
        return int(self.status("VmRSS").split()[0])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 90.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def wait(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


class SensorLauncher:
    """Starts sensors for one test and kills whatever still runs at its end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runs: list[SensorRun] = []

    def start(self, *flags: str, metrics: bool = True) -> SensorRun:
        run = SensorRun(self.workdir, *flags, metrics=metrics)
        self.runs.append(run)
        return run

    def cleanup(self) -> None:
        for run in self.runs:
            with contextlib.suppress(Exception):
                run.kill()


def sample_total(run: ProcessorRun, sample_name: str) -> float:
    """The sum of one sample over all its label values; 0 when absent or while the endpoint is
    not up yet."""
    try:
        families = run.scrape()
    except OSError:
        return 0.0
    return sum(
        float(sample.value)
        for family in families
        for sample in family.samples
        if sample.name == sample_name
    )
