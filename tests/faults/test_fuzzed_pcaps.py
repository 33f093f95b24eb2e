"""The sensor against hostile input: 100,000 fuzzed frames, and capture files that are cut short,
corrupt, or not captures at all. It must count every frame, never crash, and say what it cut."""

from __future__ import annotations

import json
import logging
import random
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rigs import ANTINEX

pytestmark = [pytest.mark.faults, pytest.mark.slow]

FRAMES = 100_000
TEMPLATES = 2_000
SEED = 4_242


def fuzzed_templates(count: int, seed: int) -> list[bytes]:
    """``count`` frames from scapy's fuzz(): random values in every field not given, over the
    protocols the sensor decodes."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.packet import fuzz

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # warnings about fuzzed ARP
    random.seed(seed)
    stacks: list[Callable[[], Any]] = [
        lambda: Ether() / fuzz(IP()) / fuzz(TCP()),
        lambda: Ether() / IP() / fuzz(TCP()),
        lambda: Ether() / fuzz(IP()) / fuzz(UDP()),
        lambda: Ether() / IP() / UDP(dport=53) / fuzz(DNS(qd=DNSQR())),
        lambda: Ether() / IP() / fuzz(ICMP()),
        lambda: Ether() / fuzz(IPv6()) / fuzz(TCP()),
        lambda: Ether() / IPv6() / fuzz(IPv6ExtHdrHopByHop()) / fuzz(UDP()),
        lambda: Ether() / IPv6() / fuzz(ICMPv6EchoRequest()),
        lambda: Ether() / fuzz(ARP()),
        lambda: fuzz(Ether()) / fuzz(Dot1Q()) / fuzz(IP()),
        lambda: fuzz(Ether()),
    ]
    frames: list[bytes] = []
    while len(frames) < count:
        stack = stacks[len(frames) % len(stacks)]
        try:
            frames.append(bytes(stack()))
        except Exception:  # scapy cannot build every random combination; draw another
            continue
    return frames


def varied(template: bytes, rng: random.Random) -> bytes:
    """The template with a few bytes changed at random, and sometimes cut short."""
    frame = bytearray(template)
    for _ in range(rng.randrange(1, 5)):
        if frame:
            frame[rng.randrange(len(frame))] = rng.randrange(256)
    if rng.random() < 0.1:
        del frame[rng.randrange(len(frame) + 1) :]
    return bytes(frame)


def write_fuzzed_pcap(path: Path, frames: int = FRAMES) -> Path:
    from scapy.utils import RawPcapWriter

    rng = random.Random(SEED)
    templates = fuzzed_templates(TEMPLATES, SEED)
    writer = RawPcapWriter(str(path), linktype=1, bufsz=1 << 20)
    try:
        writer.write_header(None)
        for number in range(frames):
            template = templates[number % len(templates)]
            frame = template if number < len(templates) else varied(template, rng)
            writer.write_packet(frame, sec=1_700_000_000 + number // 1000, usec=number % 1000)
    finally:
        writer.close()
    return path


@pytest.fixture(scope="module")
def fuzzed_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fuzzed_pcap(tmp_path_factory.mktemp("fuzz") / "fuzzed.pcap")


def run_sensor(pcap: Path) -> tuple[int, dict[str, Any] | None, str]:
    """Exit code, the sensor_stopped event (None when absent) and stderr of a replay to
    /dev/null."""
    command = [ANTINEX, "--log-format", "json", "sensor", "--pcap", str(pcap)]
    command += ["--output", "jsonl", "--out", "/dev/null", "--metrics-port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    stopped = None
    for line in done.stderr.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "sensor_stopped":
            stopped = json.loads(line)
    return done.returncode, stopped, done.stderr


def test_every_fuzzed_frame_is_counted_as_decoded_or_undecodable(fuzzed_pcap: Path) -> None:
    """100,000 fuzzed frames: exit 0, all captured, each decoded or counted undecodable."""
    code, stopped, stderr = run_sensor(fuzzed_pcap)

    assert "Traceback" not in stderr
    assert 0 == code, stderr[-2000:]
    assert stopped is not None
    assert FRAMES == stopped["captured"]
    assert stopped["captured"] == stopped["decoded"] + stopped.get("undecodable", 0)


def _cut_mid_record(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3 + 5])
    return target


def _huge_caplen(source: Path, target: Path) -> Path:
    """A record header in the middle claims a 4 GiB frame."""
    data = bytearray(source.read_bytes())
    at = 24  # the global header; then walk 500 records
    for _ in range(500):
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    struct.pack_into("<II", data, at + 8, 0xFFFFFFF0, 0xFFFFFFF0)
    target.write_bytes(bytes(data))
    return target


def _header_only(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[:24])
    return target


def _cut_in_record_header(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[: 24 + 7])
    return target


def _pcapng_block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def _pcapng_cut_mid_block(source: Path, target: Path) -> Path:
    """The first 3,000 frames as pcapng (section, Ethernet interface, enhanced packet blocks),
    cut in the middle of a block."""
    from scapy.utils import RawPcapReader

    blocks = [
        _pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        _pcapng_block(1, struct.pack("<HHI", 1, 0, 65535)),
    ]
    with RawPcapReader(str(source)) as reader:
        for number, (frame, meta) in enumerate(reader):
            if number == 3_000:
                break
            stamp = meta.sec * 1_000_000 + meta.usec
            head = struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(frame), len(frame))
            blocks.append(_pcapng_block(6, head + frame))
    data = b"".join(blocks)
    target.write_bytes(data[: len(data) // 2 + 3])
    return target


@pytest.fixture(scope="module")
def small_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fuzzed_pcap(tmp_path_factory.mktemp("small") / "small.pcap", 5_000)


@pytest.mark.parametrize(
    "damage",
    [
        _cut_mid_record,
        _huge_caplen,
        _header_only,
        _cut_in_record_header,
        _pcapng_cut_mid_block,
    ],
    ids=lambda damage: damage.__name__.strip("_"),
)
def test_damaged_capture_ends_with_exit_zero_and_the_cut_reported(
    damage: Callable[[Path, Path], Path], small_pcap: Path, tmp_path: Path
) -> None:
    """A capture cut short or corrupt is read up to the damage, which the closing event names."""
    damaged = damage(small_pcap, tmp_path / "damaged.pcap")

    code, stopped, stderr = run_sensor(damaged)

    assert "Traceback" not in stderr
    assert 0 == code, stderr[-2000:]
    assert stopped is not None
    assert stopped["captured"] == stopped["decoded"] + stopped.get("undecodable", 0)
    if damage is not _header_only:
        assert stopped.get("source_note"), stopped


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a capture\n", b"", b"\xd4\xc3\xb2", bytes(range(256)) * 40],
    ids=["text", "empty", "three-bytes", "binary-noise"],
)
def test_file_that_is_not_a_capture_exits_2_with_one_line(content: bytes, tmp_path: Path) -> None:
    """Anything without a pcap or pcapng header is a usage error, told in one line."""
    path = tmp_path / "not-a-capture.pcap"
    path.write_bytes(content)

    done = subprocess.run(
        [ANTINEX, "sensor", "--pcap", str(path), "--output", "jsonl", "--out", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert 2 == done.returncode
    assert 1 == len(done.stderr.strip().splitlines()), done.stderr
    assert str(path) in done.stderr
