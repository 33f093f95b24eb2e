"""Odd real captures, whole and cut short, go through the pcap source and the fast decoder."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from capture.decode import FrameDecoder, Undecodable
from capture.schema import INDEX
from capture.sources import PcapSource

pytestmark = pytest.mark.shared

SHARED_PCAPS = Path(__file__).resolve().parents[2] / ".." / "shared" / "pcaps"
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond timestamps
    b"\xa1\xb2\x3c\x4d": ">",
}
PCAPNG_SECTION_HEADER = 0x0A0D0D0A
PCAPNG_PACKET_BLOCKS = (2, 3, 6)  # obsolete packet, simple packet, enhanced packet
PCAP_RECORD_HEADER = 16


def shared_pcaps() -> list:
    if not SHARED_PCAPS.is_dir():
        reason = f"the shared captures are not beside the project (looked in {SHARED_PCAPS})"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="shared-absent")]
    paths = sorted(p for p in SHARED_PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return [pytest.param(path, id=path.name) for path in paths]


def decode_file(path: Path) -> tuple[PcapSource, Counter]:
    """Read and decode every frame; count records and Undecodable frames by reason."""
    source = PcapSource(str(path))
    decoder = FrameDecoder(iface=source.name)
    outcomes: Counter = Counter()
    for frame in source:
        try:
            record = decoder.decode(frame.data, frame.link_type, frame.ts_ns, frame.wire_len)
        except Undecodable as err:
            outcomes[f"undecodable:{err.reason}"] += 1
        else:
            outcomes["records"] += 1
            if record[INDEX["decode_error"]]:
                outcomes[f"decode_error:{record[INDEX['decode_error']]}"] += 1
    return source, outcomes


def packet_records(data: bytes) -> list[tuple[int, int]]:
    """Start and end offset of every packet record of a pcap or pcapng file."""
    if data[:4] in PCAP_MAGICS:
        order = PCAP_MAGICS[data[:4]]
        spans, offset = [], 24
        while offset + PCAP_RECORD_HEADER <= len(data):
            caplen = struct.unpack_from(f"{order}I", data, offset + 8)[0]
            spans.append((offset, offset + PCAP_RECORD_HEADER + caplen))
            offset += PCAP_RECORD_HEADER + caplen
        return spans
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    spans, offset = [], 0
    while offset + 8 <= len(data):
        kind, length = struct.unpack_from(f"{order}II", data, offset)
        if kind in PCAPNG_PACKET_BLOCKS:
            spans.append((offset, offset + length))
        offset += length
    return spans


def cut_points(spans: list[tuple[int, int]], is_pcapng: bool) -> list[tuple[str, int, int, int]]:
    """Where to cut a file: (what is cut, offset, frames expected, truncated records expected).

    A cut at a record boundary is a shorter but whole file. A cut inside a record's header
    loses that record; a cut inside its data hands it over short from a pcap, while scapy's
    pcapng reader drops the cut block whole.
    """
    points = []
    for index in sorted({0, len(spans) // 2, len(spans) - 1}):
        start, end = spans[index]
        points.append(("at a record boundary", start, index, 0))
        points.append(("inside a record header", start + 6, index, 1))
        data_frames = index if is_pcapng else index + 1
        points.append(("inside record data", (start + 16 + end) // 2, data_frames, 1))
    return points


# A known gap of PcapSource: it counts a cut record only when bytes are left after scapy's
# failed read, but scapy reads a pcap record header, or a whole pcapng block, to the end of
# the file before it gives up. Comparing the file size with the position before the read
# would count these cuts too. Every cut is still read without an error; the count of the
# cuts the source misses is checked on two examples, expected to fail until the gap closes.
GAP_EXAMPLES = ("dhcp.pcap", "dhcp.pcapng")


def is_uncounted_cut(is_pcapng: bool, what: str, truncated: int) -> bool:
    return bool(truncated) and (is_pcapng or what == "inside a record header")


def truncation_cases(gap_examples_only: bool = False) -> list:
    """Cut points of every shared capture, or only the uncounted ones of the gap examples."""
    if not SHARED_PCAPS.is_dir():
        reason = f"the shared captures are not beside the project (looked in {SHARED_PCAPS})"
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=reason), id="absent")]
    cases = []
    for path in sorted(p for p in SHARED_PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng")):
        data = path.read_bytes()
        is_pcapng = data[:4] not in PCAP_MAGICS
        for what, offset, frames, truncated in cut_points(packet_records(data), is_pcapng):
            uncounted = is_uncounted_cut(is_pcapng, what, truncated)
            if gap_examples_only and not (uncounted and path.name in GAP_EXAMPLES):
                continue
            case_id = f"{path.name}-{what.replace(' ', '-')}-{offset}"
            cases.append(pytest.param(path, (offset, frames, truncated, uncounted), id=case_id))
    return cases


def read_cut_copy(pcap: Path, offset: int, tmp_path: Path) -> tuple[PcapSource, int]:
    """Decode a copy of ``pcap`` cut at ``offset``; the source and the frames it handed over."""
    copy = tmp_path / pcap.name
    copy.write_bytes(pcap.read_bytes()[:offset])
    source, outcomes = decode_file(copy)
    frames = sum(n for what, n in outcomes.items() if not what.startswith("decode_error"))
    return source, frames


class TestWholeCaptures:
    @pytest.mark.parametrize("pcap", shared_pcaps())
    def test_every_frame_is_a_record_or_undecodable(
        self, pcap: Path, record_property: Callable[[str, object], None]
    ) -> None:
        """Each frame gives a record or Undecodable; nothing else escapes, nothing is lost."""
        source, outcomes = decode_file(pcap)

        frames = sum(n for what, n in outcomes.items() if not what.startswith("decode_error"))
        summary = ", ".join(f"{what}={n}" for what, n in sorted(outcomes.items()))
        print(f"{pcap.name}: {summary}")
        record_property("outcomes", summary)
        assert len(packet_records(pcap.read_bytes())) == frames
        assert 0 == source.stats.truncated_records


class TestTruncatedCaptures:
    @pytest.mark.parametrize(("pcap", "cut"), truncation_cases())
    def test_cut_file_is_read_up_to_the_cut_and_the_cut_counted(
        self, pcap: Path, cut: tuple[int, int, int, bool], tmp_path: Path
    ) -> None:
        """A file cut short yields the frames before the cut and counts a record it cut into."""
        offset, expected_frames, expected_truncated, uncounted = cut

        source, frames = read_cut_copy(pcap, offset, tmp_path)

        assert expected_frames == frames
        if not uncounted:
            assert expected_truncated == source.stats.truncated_records

    @pytest.mark.parametrize(("pcap", "cut"), truncation_cases(gap_examples_only=True))
    def test_cut_that_leaves_no_bytes_after_the_failed_read_is_counted(
        self, pcap: Path, cut: tuple[int, int, int, bool], tmp_path: Path
    ) -> None:
        """A cut inside a pcap record header or a pcapng block counts as a truncated record."""
        offset, _frames, expected_truncated, _uncounted = cut

        source, _ = read_cut_copy(pcap, offset, tmp_path)

        assert expected_truncated == source.stats.truncated_records
