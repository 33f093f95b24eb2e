"""A batch leaves when its linger time is over, not at the sensor's next periodic flush."""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path
from typing import Any

from support.traffic import synthetic_frames

from capture.decode import FrameDecoder
from capture.publisher import KafkaPublisher, KafkaSettings
from capture.sensor import Sensor
from capture.sources import PcapSource

ETHERNET = 1
# No broker listens here: the capture side of the publisher works without one.
NOWHERE = "127.0.0.1:1"


def _record() -> list[Any]:
    frame = next(synthetic_frames(1))
    return FrameDecoder("test").decode(frame, ETHERNET, time.time_ns(), len(frame))


def test_the_publisher_is_due_when_its_oldest_batch_has_lingered() -> None:
    publisher = KafkaPublisher(KafkaSettings(bootstrap_servers=NOWHERE, linger_ms=40))
    try:
        assert publisher.due == math.inf
        before = time.monotonic()
        publisher.add(_record())
        assert before + 0.040 <= publisher.due <= time.monotonic() + 0.040

        publisher.tick()  # too early: the batch stays
        assert publisher.counts.queued_records == 0

        time.sleep(max(0.0, publisher.due - time.monotonic()) + 0.002)
        publisher.tick()
        assert publisher.counts.queued_records == 1
        assert publisher.due == math.inf
    finally:
        publisher.close(timeout=0.1)


def _trickle_pcap(path: Path, count: int, gap_s: float) -> Path:
    """A capture whose frames were recorded ``gap_s`` apart, as on a quiet link."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, ETHERNET))
        for number, data in enumerate(synthetic_frames(count)):
            micros = int(number * gap_s * 1e6)
            out.write(struct.pack("<IIII", micros // 10**6, micros % 10**6, len(data), len(data)))
            out.write(data)
    return path


class LingeringOutput:
    """Each added record starts a batch that is due ``linger_s`` later; notes how many records
    arrived after a batch was due and before the sensor ticked."""

    def __init__(self, linger_s: float) -> None:
        self.linger_s = linger_s
        self.due = math.inf
        self.late_adds: list[int] = []
        self._late = 0
        self.ticks = 0

    def add(self, record: Any) -> None:
        now = time.monotonic()
        if now >= self.due:
            self._late += 1
        elif self.due == math.inf:
            self.due = now + self.linger_s

    def tick(self) -> None:
        if time.monotonic() >= self.due:
            self.late_adds.append(self._late)
            self._late = 0
            self.due = math.inf
        self.ticks += 1

    def close(self, timeout: float = 0.0) -> None:
        pass


def test_the_sensor_ticks_at_the_first_packet_after_a_batch_is_due(tmp_path: Path) -> None:
    pcap = _trickle_pcap(tmp_path / "trickle.pcap", count=120, gap_s=0.002)
    output = LingeringOutput(linger_s=0.008)
    Sensor(PcapSource(str(pcap), speed="recorded"), output).run()
    # The sensor's periodic flush alone (every 50 ms) would let ~25 packets in after each due.
    assert len(output.late_adds) >= 10
    assert max(output.late_adds) <= 1, output.late_adds
