"""The pipeline across a broker outage: a broker of the test's own is stopped while the sensor
publishes to it, or is not up yet when the sensor starts, and every record is accounted for."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from rigs import OwnBroker, ProcessorRun, SensorLauncher, read_topic, sample_total, wait_until
from support import topics
from support.traffic import write_pcap

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.faults]

PUBLISHED = "antinex_sensor_records_published_total"
DROPPED = "antinex_sensor_records_dropped_total"
SCORED = "antinex_processor_records_scored_total"
DEAD_LETTERED = "antinex_processor_records_dead_lettered_total"
# The synthetic pcap records 20,000 packets a second; these factors stretch a file over
# ``packets / 20,000 / factor`` seconds of replay.
RECORDED_PPS = 20_000


def speed_for(packets: int, seconds: float) -> str:
    return f"{packets / RECORDED_PPS / seconds:.5f}"


def processed(run: ProcessorRun) -> float:
    """Records the processor scored or dead-lettered."""
    return sample_total(run, SCORED) + sample_total(run, DEAD_LETTERED)


def test_records_published_across_a_broker_restart_are_all_scored(
    own_broker: OwnBroker,
    sensors: SensorLauncher,
    processor_runs: list[ProcessorRun],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """A broker stopped for a few seconds mid-stream loses none of the sensor's records."""
    packets = 20_000
    pcap = write_pcap(tmp_path / "steady.pcap", packets)
    own_broker.start()
    topics.create_topic(own_broker.bootstrap, "packets", 3)
    processor = ProcessorRun(
        tmp_path,
        own_broker.bootstrap,
        tiny_model_dir,
        "packets",
        alerts_topic="alerts",
        dead_letter_topic="dead-letters",
        group_id="outage",
        auto_offset_reset="earliest",
        state_dir=str(tmp_path / "processor-state"),
    )
    processor_runs.append(processor)
    processor.wait_assigned()
    sensor = sensors.start(
        "--pcap",
        str(pcap),
        "--speed",
        speed_for(packets, 10),
        "--packets-topic",
        "packets",
        "--bootstrap-servers",
        own_broker.bootstrap,
    )

    wait_until(lambda: sensor.scrape_or_zero(PUBLISHED) >= 3_000, 60, "the first 3,000 records")
    own_broker.stop()
    stopped_mid_stream = sensor.alive()
    time.sleep(4)  # the outage itself
    own_broker.start()
    assert 0 == sensor.wait(timeout=120), sensor.tail()

    (stopped,) = sensor.events("sensor_stopped")
    wait_until(
        lambda: processed(processor) >= stopped["published"],
        120,
        f"the processor to take {stopped['published']} records",
        every=0.5,
    )
    time.sleep(2)  # anything scored twice would show up by now
    taken = processed(processor)
    duplicates = processor.value("antinex_processor_duplicates_total")
    assert stopped_mid_stream
    assert packets == stopped["captured"]
    assert stopped["captured"] == stopped["decoded"]
    assert ({}, stopped["decoded"]) == (stopped.get("dropped", {}), stopped["published"])
    assert stopped["published"] == taken
    assert 0 == duplicates


def test_sensor_started_before_its_broker_drops_boundedly_then_publishes(
    own_broker: OwnBroker, sensors: SensorLauncher, tmp_path: Path
) -> None:
    """With the broker down the sensor retries with backoff, drops what its queue cannot hold
    at a steady memory size, and publishes once the broker is up."""
    packets = 20_000
    pcap = write_pcap(tmp_path / "steady.pcap", packets)
    sensor = sensors.start(
        "--pcap",
        str(pcap),
        "--speed",
        speed_for(packets, 45),
        "--packets-topic",
        "packets",
        "--bootstrap-servers",
        own_broker.bootstrap,
        "--queue-batches",
        "4",
        "--batch-records",
        "100",
    )

    wait_until(
        lambda: sensor.scrape_or_zero(DROPPED, reason="queue_full") > 0, 60, "the first drops"
    )
    first_rss = sensor.rss_kib()
    rss = [first_rss]
    dropped_before = sensor.value(DROPPED, reason="queue_full")

    def retried_twice() -> bool:
        rss.append(sensor.rss_kib())
        return len(sensor.events("broker_unreachable")) >= 2

    wait_until(retried_twice, 60, "two broker_unreachable events", every=0.25)
    dropped_during = sensor.value(DROPPED, reason="queue_full")
    assert 0 == sensor.value(PUBLISHED)

    own_broker.start()
    wait_until(lambda: sensor.value(PUBLISHED) > 0, 60, "publishing to resume", every=0.5)
    grown = sensor.value(PUBLISHED)
    wait_until(lambda: sensor.value(PUBLISHED) > grown, 30, "publishing to go on", every=0.5)
    assert sensor.alive(), sensor.tail()
    assert 0 == sensor.stop()

    retries = [e["retry_in_s"] for e in sensor.events("broker_unreachable")]
    (stopped,) = sensor.events("sensor_stopped")
    in_topic = read_topic(own_broker.bootstrap, "packets", 1, timeout=30)
    assert sorted(retries) == retries and retries[0] < retries[-1]
    assert dropped_during > dropped_before
    assert max(rss) - first_rss < 48 * 1024, f"RSS grew from {first_rss} to {max(rss)} KiB"
    lost = sum(stopped.get("dropped", {}).values())
    assert stopped["decoded"] == stopped["published"] + lost
    assert in_topic


def test_sensor_stopped_while_its_broker_hangs_counts_every_record(
    own_broker: OwnBroker, sensors: SensorLauncher, tmp_path: Path
) -> None:
    """The broker stops answering (frozen, connections open) and the sensor is told to stop:
    it waits its flush time, says so in one event, and every record is published or dropped."""
    packets = 10_000
    pcap = write_pcap(tmp_path / "steady.pcap", packets)
    own_broker.start()
    topics.create_topic(own_broker.bootstrap, "packets", 3)
    sensor = sensors.start(
        "--pcap",
        str(pcap),
        "--speed",
        speed_for(packets, 20),
        "--packets-topic",
        "packets",
        "--bootstrap-servers",
        own_broker.bootstrap,
    )
    wait_until(lambda: sensor.scrape_or_zero(PUBLISHED) >= 1_000, 60, "the first 1,000 records")
    broker_pid = int((own_broker.state_dir / "kafka.pid").read_text())
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        time.sleep(1)  # records captured meanwhile wait for acks that do not come
        code = sensor.stop(timeout=120)
    finally:
        os.kill(broker_pid, signal.SIGCONT)

    (stopped,) = sensor.events("sensor_stopped")
    dropped = sum(stopped.get("dropped", {}).values())
    assert code in (0, 1), sensor.tail()
    assert sensor.events("flush_timed_out"), sensor.tail()
    assert dropped > 0
    assert stopped["decoded"] == stopped["published"] + dropped
    assert "Traceback" not in sensor.log_path.read_text()
