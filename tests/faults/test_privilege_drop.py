"""``antinex sensor --user``: root opens the capture socket, then the sensor runs as that user."""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path

import pytest
from rigs import ANTINEX, SensorLauncher, Topics, wait_until
from support import netns, traffic

pytestmark = pytest.mark.faults

CAPTURED = "antinex_sensor_packets_captured_total"


@pytest.mark.netns
@pytest.mark.slow
def test_sensor_dropped_to_nobody_still_captures_on_its_open_socket(
    veth: netns.VethPair, sensors: SensorLauncher, tmp_path: Path
) -> None:
    """After the drop /proc shows nobody's uid and gid, no groups, and frames keep coming."""
    nobody = pwd.getpwnam("nobody")
    pcap = traffic.write_pcap(tmp_path / "live.pcap", 2_000)
    sensor = sensors.start(
        "--interface", veth.host_end, "--user", "nobody", "--output", "jsonl", "--out", "/dev/null"
    )
    wait_until(lambda: not sensor.alive() or sensor.events("privileges_dropped"), 60, "the drop")
    assert sensor.alive(), sensor.tail()
    ids = (sensor.status("Uid"), sensor.status("Gid"), sensor.status("Groups"))

    sent = netns.replay(veth, pcap, pps=2_000).sent
    wait_until(lambda: sensor.scrape_or_zero(CAPTURED) >= sent, 60, f"{sent} frames captured")
    assert 0 == sensor.stop()

    (stopped,) = sensor.events("sensor_stopped")
    assert (f"{nobody.pw_uid}\t" * 4).strip() == ids[0]
    assert (f"{nobody.pw_gid}\t" * 4).strip() == ids[1]
    assert "" == ids[2]
    assert 2_000 == sent
    assert sent == stopped["captured"]


def test_unknown_user_is_refused_in_one_line_before_capturing(tmp_path: Path) -> None:
    """A --user that does not exist ends with exit 2 and one sentence naming it."""
    pcap = traffic.write_pcap(tmp_path / "few.pcap", 10)

    done = subprocess.run(
        [ANTINEX, "sensor", "--pcap", str(pcap), "--user", "no-such-user-here"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert 2 == done.returncode
    assert [
        "antinex: --user no-such-user-here: no such user; give a user listed by `getent passwd`"
    ] == done.stderr.strip().splitlines()
    assert "" == done.stdout


@pytest.mark.kafka
def test_sensor_dropped_to_nobody_still_publishes_to_kafka(
    sensors: SensorLauncher, shared_topics: Topics, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The broker client, connected after the drop, publishes every record of a replay."""
    pcap = traffic.write_pcap(tmp_path / "few.pcap", 2_000)
    topic = shared_topics.name("faults-nobody")
    sensor = sensors.start(
        "--pcap",
        str(pcap),
        "--user",
        "nobody",
        "--packets-topic",
        topic,
        "--bootstrap-servers",
        kafka_bootstrap,
    )

    assert 0 == sensor.wait(timeout=120), sensor.tail()

    (dropped,) = sensor.events("privileges_dropped")
    (stopped,) = sensor.events("sensor_stopped")
    assert "nobody" == dropped["user"]
    assert (2_000, 2_000) == (stopped["captured"], stopped["published"])
