"""Live capture: ``antinex sensor --interface`` on a veth pair fed by tcpreplay from a namespace.

Each test builds its own veth pair with one end in a fresh network namespace, runs the sensor
as a subprocess on the other end, replays a synthetic pcap into the pair and checks what the
sensor wrote against what FrameDecoder makes of the same frames read from the pcap.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import netns, topics, traffic

from capture.decode import FrameDecoder, Undecodable
from capture.encoding import record_to_dict
from capture.schema import FIELDS
from capture.sources import PcapSource

CAPTURED = "antinex_sensor_packets_captured_total"
# Fields a live capture changes on purpose: when and where a frame was read, and the context
# statistics, which follow the capture's timing.
LIVE_ONLY = {"ts_ns", "iface"} | {f.name for f in FIELDS if f.layer == "context"}


class LiveSensor:
    """``antinex sensor --interface IFACE`` in a subprocess, logging JSON events to a file."""

    def __init__(self, iface: str, workdir: Path, *output_args: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log_path = workdir / "sensor.log"
        command = [sys.executable, "-m", "antinex.cli", "--log-format", "json", "sensor"]
        command += ["--interface", iface, "--metrics-port", str(self.port), *output_args]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)

    def captured(self) -> int | None:
        """The sensor's captured-packets counter, or None while its endpoint does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(CAPTURED + " "):
                return int(float(line.split()[1]))
        return None

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Wait for the metrics endpoint, which the sensor serves once its socket is open."""
        deadline = time.monotonic() + timeout
        while self.captured() is None:
            if self.process.poll() is not None:
                pytest.fail(f"the sensor exited {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the sensor was not serving metrics after {timeout} s: {self.log()}")
            time.sleep(0.1)

    def wait_for(self, expected: int, quiet_s: float = 5.0) -> int:
        """Wait until ``expected`` frames were captured or the count stalled for ``quiet_s``."""
        last, changed = -1, time.monotonic()
        while True:
            captured = self.captured() or 0
            if captured >= expected:
                return captured
            if captured != last:
                last, changed = captured, time.monotonic()
            elif time.monotonic() - changed > quiet_s:
                return captured
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text()

    def stopped_event(self) -> dict[str, Any]:
        events = [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]
        stopped = [e for e in events if e.get("event") == "sensor_stopped"]
        assert stopped, f"no sensor_stopped event in the sensor's log: {self.log()}"
        return stopped[-1]


@pytest.fixture
def start_sensor(tmp_path: Path) -> Iterator[Any]:
    """Start a LiveSensor; whatever still runs at the end of the test is killed."""
    started: list[LiveSensor] = []

    def start(iface: str, *output_args: str) -> LiveSensor:
        sensor = LiveSensor(iface, tmp_path, *output_args)
        started.append(sensor)
        sensor.wait_until_ready()
        return sensor

    yield start
    for sensor in started:
        if sensor.process.poll() is None:
            sensor.process.kill()
            sensor.process.wait()


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return traffic.write_pcap(tmp_path_factory.mktemp("live") / "synthetic.pcap", 3000)


def expected_records(pcap: Path) -> list[dict[str, Any]]:
    """What FrameDecoder makes of the pcap's frames, as the JSON-lines output shows records."""
    decoder = FrameDecoder("pcap")
    records = []
    for frame in PcapSource(str(pcap)):
        try:
            record = decoder.decode(*frame)
        except Undecodable:
            continue
        records.append(json.loads(json.dumps(record_to_dict(record))))
    return records


def comparable(records: list[dict[str, Any]]) -> Counter[str]:
    """Records without their live-only fields, as a multiset of canonical JSON texts."""
    return Counter(
        json.dumps({k: v for k, v in r.items() if k not in LIVE_ONLY}, sort_keys=True)
        for r in records
    )


@pytest.mark.netns
class TestCaptureToJsonLines:
    def test_every_replayed_packet_is_captured_and_decoded_as_from_the_pcap(
        self, veth: netns.VethPair, start_sensor, pcap: Path, tmp_path: Path
    ):
        """All 3,000 frames sent at 3,000 packets/s come out as the records the pcap gives."""
        out = tmp_path / "records.jsonl"
        sensor = start_sensor(veth.host_end, "--output", "jsonl", "--out", str(out))

        sent = netns.replay(veth, pcap, pps=3000)
        sensor.wait_for(sent.sent)
        code = sensor.stop()

        assert 0 == code, sensor.log()
        assert 3000 == sent.sent
        stopped = sensor.stopped_event()
        assert (3000, 0) == (stopped["captured"], stopped["kernel_drops"])
        written = [json.loads(line) for line in out.read_text().splitlines()]
        expected = expected_records(pcap)
        assert len(expected) == len(written)
        flow_ids = Counter(r["flow_id"] for r in expected)
        assert flow_ids == Counter(r["flow_id"] for r in written)
        assert {veth.host_end} == {r["iface"] for r in written}
        missing = comparable(expected) - comparable(written)
        assert not missing, f"{sum(missing.values())} records differ, e.g. {next(iter(missing))}"

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_a_signal_while_packets_arrive_flushes_what_was_captured_and_exits_0(
        self, veth: netns.VethPair, start_sensor, pcap: Path, tmp_path: Path, sig: int
    ):
        """Every frame the sensor counted before the signal is in the output, whole."""
        out = tmp_path / "records.jsonl"
        sensor = start_sensor(veth.host_end, "--output", "jsonl", "--out", str(out))

        netns.replay(veth, pcap, pps=20_000, limit=1000)
        code = sensor.stop(sig, timeout=30)

        assert 0 == code, sensor.log()
        stopped = sensor.stopped_event()
        lines = out.read_text().splitlines()
        assert stopped["captured"] == len(lines)
        assert stopped["captured"] == stopped["published"]
        assert all(json.loads(line)["schema_version"] for line in lines)
        assert "Traceback" not in sensor.log()

    def test_an_idle_sensor_stops_on_sigterm_within_seconds(
        self, veth: netns.VethPair, start_sensor, tmp_path: Path
    ):
        """With no traffic at all, SIGTERM ends the capture promptly with exit code 0."""
        out = tmp_path / "records.jsonl"
        sensor = start_sensor(veth.host_end, "--output", "jsonl", "--out", str(out))

        started = time.monotonic()
        code = sensor.stop(timeout=30)

        assert 0 == code, sensor.log()
        assert time.monotonic() - started < 5
        assert 0 == sensor.stopped_event()["captured"]
        assert "" == out.read_text()


def test_a_missing_interface_is_one_line_and_exit_2(tmp_path: Path):
    """The user names an interface that does not exist: one sentence, no traceback.

    Needs no namespace and no root: the interface is looked up before any socket opens.
    """
    command = [sys.executable, "-m", "antinex.cli", "sensor", "--interface", "anx-absent0"]
    command += ["--output", "jsonl", "--out", str(tmp_path / "x.jsonl"), "--metrics-port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert 2 == done.returncode
    lines = done.stderr.strip().splitlines()
    assert 1 == len(lines), done.stderr
    assert lines[0].startswith("antinex: ") and "anx-absent0" in lines[0]


@pytest.fixture
def live_to_kafka(
    veth: netns.VethPair, start_sensor, pcap: Path, kafka_bootstrap: str
) -> Iterator[Any]:
    """Start a sensor on an interface of ``veth`` publishing to a fresh topic, replay the pcap
    into the pair at 3,000 packets/s, stop the sensor, and return the batches on the topic."""
    created: list[str] = []

    def run(iface: str, *flags: str) -> list[Any]:
        from capture.encoding import BatchCodec

        topic = f"antinex.test.live.{uuid.uuid4().hex[:12]}"
        created.append(topic)
        sensor = start_sensor(
            iface, *flags, "--bootstrap-servers", kafka_bootstrap, "--packets-topic", topic
        )
        sent = netns.replay(veth, pcap, pps=3000)
        sensor.wait_for(sent.sent)
        code = sensor.stop()

        assert 0 == code, sensor.log()
        stopped = sensor.stopped_event()
        assert (3000, 3000) == (stopped["captured"], stopped["published"])
        return [BatchCodec().decode(value) for value in topics.read_values(kafka_bootstrap, topic)]

    yield run
    topics.delete_topics(kafka_bootstrap, created)


@pytest.mark.netns
@pytest.mark.kafka
class TestCaptureToKafka:
    def test_every_replayed_packet_reaches_the_topic_as_valid_rows(
        self, veth: netns.VethPair, live_to_kafka, pcap: Path
    ):
        """All 3,000 frames are published, read back from the broker and pass validation."""
        from capture.encoding import invalid_rows

        batches = live_to_kafka(veth.host_end)

        assert [] == [bad for batch in batches for bad in invalid_rows(batch)]
        flow_ids = Counter(r["flow_id"] for r in expected_records(pcap))
        assert flow_ids == Counter(
            flow_id.decode() for batch in batches for flow_id in batch["flow_id"]
        )

    def test_an_interface_in_another_namespace_publishes_from_the_sensors_own(
        self, veth: netns.VethPair, live_to_kafka
    ):
        """--netns: the capture socket opens inside the namespace, whose loopback has no broker,
        while the records still reach the broker on this namespace's 127.0.0.1."""
        batches = live_to_kafka(veth.ns_end, "--netns", veth.namespace)

        assert 3000 == sum(len(batch) for batch in batches)
        assert {veth.ns_end.encode()} == {i for batch in batches for i in batch["iface"]}


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--interface", "lo", "--netns", "anx-absent-ns"], "anx-absent-ns"),
        (["--pcap", "x.pcap", "--netns", "anx-absent-ns"], "--netns"),
    ],
    ids=["missing-namespace", "netns-without-interface"],
)
def test_a_bad_namespace_is_one_line_and_exit_2(tmp_path: Path, flags: list[str], named: str):
    command = [sys.executable, "-m", "antinex.cli", "sensor", *flags]
    command += ["--output", "jsonl", "--out", str(tmp_path / "x.jsonl"), "--metrics-port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert 2 == done.returncode
    lines = done.stderr.strip().splitlines()
    assert 1 == len(lines), done.stderr
    assert lines[0].startswith("antinex: ") and named in lines[0]
