"""Where frames come from: pcap/pcapng files through scapy's raw readers, or a live interface
through scapy's AF_PACKET listen socket, handing over undissected bytes either way.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from antinex.options import UsageError

log = logging.getLogger("antinex.capture")

# scapy reports every oddity in a capture file as a warning of its own; the sensor counts
# them instead, so keep scapy's logger for real errors only.
logging.getLogger("scapy").setLevel(logging.ERROR)

_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_SO_RCVBUFFORCE = 33
# ARPHRD_* hardware types of a live interface, and the link type their frames start with.
_HWTYPE_TO_LINK = {1: 1, 772: 1, 65534: 101, 776: 101}
_SNAPLEN = 65535
_MAX_RECORD = 262144  # the largest snapshot length libpcap writes
_IDLE_WAKE_S = 0.01  # longest wait for input before the sensor gets a turn to flush


class Frame(NamedTuple):
    """One captured frame, undissected."""

    data: bytes
    link_type: int
    ts_ns: int
    wire_len: int


@dataclass
class SourceStats:
    """What a source could not hand over as frames."""

    truncated_records: int = 0
    kernel_drops: int = 0
    end_reason: str = ""
    notes: list[str] = field(default_factory=list)


def _open_pcap(path: str):
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    if not os.path.isfile(path):
        raise UsageError(f"pcap file {path} does not exist; give the path of a .pcap or .pcapng")
    try:
        return RawPcapReader(path)
    except (Scapy_Exception, OSError, EOFError) as err:
        raise UsageError(f"{path} is not a readable pcap or pcapng file ({err})") from err


class UserIds(NamedTuple):
    """The user the sensor runs as once its capture socket is open."""

    name: str
    uid: int
    gid: int


def look_up_user(name: str) -> UserIds:
    """The uid and primary gid of user ``name``; a usage error when there is no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(
            f"--user {name}: no such user; give a user listed by `getent passwd`"
        ) from None
    return UserIds(name, entry.pw_uid, entry.pw_gid)


def drop_privileges(user: UserIds) -> None:
    """Become ``user``: no supplementary groups, its gid, then its uid, for good.

    Called once the capture socket and the output are open, which is what needs root: the
    sensor then reads, decodes and publishes without root, so a flaw in packet parsing cannot
    act as root. Every thread of the process changes user (glibc applies set*id to all threads).
    """
    try:
        os.setgroups([])
        os.setgid(user.gid)
        os.setuid(user.uid)
    except PermissionError as err:
        raise UsageError(
            f"--user {user.name}: changing user needs root (running as uid {os.getuid()}); "
            "start the sensor as root or leave --user out"
        ) from err
    log.info("privileges_dropped", extra={"user": user.name, "uid": user.uid, "gid": user.gid})


class PcapSource:
    """Frames of a pcap or pcapng file, optionally paced to the recorded timing.

    ``speed`` is ``"max"`` (as fast as possible), ``"recorded"`` (the capture's own timing)
    or a factor such as ``"10"`` (ten times faster than recorded).
    """

    def __init__(self, path: str, speed: str = "max") -> None:
        self.path = path
        self.factor = _speed_factor(speed)
        self.stats = SourceStats()
        self._reader = _open_pcap(path)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def _note_truncated(self) -> None:
        self.stats.truncated_records += 1
        self.stats.end_reason = "the file ends inside a packet record (truncated capture)"

    def __iter__(self) -> Iterator[Frame | None]:
        """Yield frames; when pacing makes it wait, yield ``None`` now and then."""
        reader = self._reader
        is_ng = hasattr(reader, "interfaces")
        link_type = getattr(reader, "linktype", 1)
        snaplen = getattr(reader, "snaplen", 0)
        ns_per_unit = 1 if getattr(reader, "nano", False) else 1000
        first_ts = first_clock = None
        block_start = [0]
        if is_ng:  # one packet read may span several blocks: remember where the last began
            read_block = reader._read_block

            def tracked_read_block(size: int = _SNAPLEN):
                block_start[0] = _position(reader)
                return read_block(size=size)

            reader._read_block = tracked_read_block
        try:
            while True:
                block_start[0] = _position(reader)
                try:
                    data, meta = reader._read_packet()
                except EOFError:
                    # A failed read may consume the rest of the file: compare with where the
                    # record started, not where the reader stopped.
                    if _file_size(reader) > block_start[0] and not self.stats.truncated_records:
                        self._note_truncated()
                    break
                except Exception as err:  # scapy raises many kinds on a corrupt block
                    self.stats.notes.append(f"stopped at a corrupt block: {err}")
                    break
                if is_ng:
                    ts_ns = ((meta.tshigh << 32) | meta.tslow) * 1_000_000_000 // meta.tsresol
                    link_type = meta.linktype
                else:
                    ts_ns = meta.sec * 1_000_000_000 + meta.usec * ns_per_unit
                    if meta.caplen > max(snaplen, _MAX_RECORD):
                        # scapy has skipped what it took for this record's data: the rest of
                        # the file is gone, so say where and why instead of ending quietly.
                        self.stats.end_reason = (
                            f"a corrupt record claims {meta.caplen} bytes (snaplen {snaplen}); "
                            "the rest of the file was not read"
                        )
                        break
                    if len(data) < min(meta.caplen, _SNAPLEN):  # the file ends in this record
                        self._note_truncated()
                        if not data:
                            break
                if self.factor:
                    if first_ts is None:
                        first_ts, first_clock = ts_ns, time.monotonic()
                    due = first_clock + (ts_ns - first_ts) / 1e9 / self.factor
                    ahead = due - time.monotonic()
                    while ahead > _IDLE_WAKE_S:  # a long wait: let the caller flush meanwhile
                        time.sleep(_IDLE_WAKE_S)
                        yield None
                        ahead = due - time.monotonic()
                    if ahead > 0.001:
                        time.sleep(ahead)
                yield Frame(data, link_type, ts_ns, meta.wirelen)
        finally:
            reader.close()


def _position(reader) -> int:
    try:
        return reader.f.tell()
    except (AttributeError, OSError, ValueError):  # a stream: position unknown
        return 0


def _file_size(reader) -> int:
    try:
        return os.fstat(reader.f.fileno()).st_size
    except (AttributeError, OSError, ValueError):  # gzip or stream: size unknown
        return 0


def _speed_factor(speed: str) -> float:
    if speed == "max":
        return 0.0
    if speed == "recorded":
        return 1.0
    try:
        factor = float(speed)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise UsageError(f"--speed {speed!r} is not max, recorded or a positive factor")
    return factor


class LiveSource:
    """Frames from a live interface, read as raw bytes from scapy's AF_PACKET listen socket.

    The kernel's drop counter (PACKET_STATISTICS) is read into ``stats.kernel_drops``, since
    loss on a packet socket is otherwise silent.
    """

    def __init__(self, iface: str, bpf: str | None = None, buffer_bytes: int = 64 << 20) -> None:
        # Imported from scapy.arch.linux itself: ``conf.L2listen`` stays None until something
        # imports scapy.arch, which the sensor otherwise never does.
        from scapy.arch.linux import L2ListenSocket
        from scapy.error import Scapy_Exception

        self.iface = iface
        self.stats = SourceStats()
        self._stopping = False
        try:
            socket.if_nametoindex(iface)
        except OSError as err:  # scapy would raise a bare ValueError for it
            raise UsageError(
                f"interface {iface} does not exist; `ip link` lists the interfaces"
            ) from err
        try:
            self._socket = L2ListenSocket(iface=iface, filter=bpf, promisc=True)
        except PermissionError as err:
            raise UsageError(
                f"capturing on {iface} needs root or CAP_NET_RAW; run as root or grant it"
            ) from err
        except OSError as err:
            raise UsageError(f"cannot capture on interface {iface}: {err.strerror}") from err
        except Scapy_Exception as err:
            raise UsageError(f"cannot capture on {iface} with filter {bpf!r}: {err}") from err
        raw = self._socket.ins
        try:
            raw.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, buffer_bytes)
        except OSError:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        # Wake often enough when the input goes quiet that a lingering batch leaves on time.
        raw.settimeout(_IDLE_WAKE_S)
        hwtype = raw.getsockname()[3]
        if hwtype not in _HWTYPE_TO_LINK:
            self._socket.close()
            raise UsageError(
                f"interface {iface} has hardware type {hwtype}, which the sensor cannot decode; "
                "capture on an Ethernet, loopback or raw IP interface"
            )
        self.link_type = _HWTYPE_TO_LINK[hwtype]

    @property
    def name(self) -> str:
        return self.iface

    def stop(self) -> None:
        self._stopping = True

    def read_kernel_drops(self) -> int:
        """Add the drops the kernel counted since the last read; return the running total."""
        if self._socket.closed:  # the final count was taken when the socket closed
            return self.stats.kernel_drops
        raw = self._socket.ins.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("II", raw)
        self.stats.kernel_drops += drops
        return self.stats.kernel_drops

    def __iter__(self) -> Iterator[Frame | None]:
        """Yield frames; yield ``None`` when nothing arrived for a while, so callers can flush."""
        recv_raw = self._socket.recv_raw
        link_type = self.link_type
        try:
            while not self._stopping:
                try:
                    _cls, data, ts = recv_raw(_SNAPLEN)
                except (TimeoutError, BlockingIOError):
                    yield None
                    continue
                except OSError as err:
                    log.error("capture_failed", extra={"iface": self.iface, "error": str(err)})
                    self.stats.end_reason = f"interface error: {err.strerror}"
                    break
                if not data:
                    continue
                ts_ns = int(ts * 1e9) if ts else time.time_ns()
                yield Frame(data, link_type, ts_ns, len(data))
        finally:
            self.read_kernel_drops()
            self._socket.close()
