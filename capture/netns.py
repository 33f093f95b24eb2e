"""Opening a capture socket inside another network namespace.

A packet socket belongs to the namespace its creator was in when it was made, and keeps
capturing there afterwards. So the sensor can watch an interface of a container or a lab
namespace while its broker connection and metrics endpoint stay in its own namespace: the
calling thread enters the named namespace, the socket is made, and the thread returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator

from antinex.options import UsageError

NETNS_DIR = "/var/run/netns"  # where `ip netns add` mounts named namespaces
_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with this thread in the network namespace ``name`` (as ``ip netns`` names
    it), then return to the thread's own namespace."""
    path = os.path.join(NETNS_DIR, name)
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError as err:
        raise UsageError(
            f"network namespace {name} does not exist; `ip netns list` lists them"
        ) from err
    except PermissionError as err:
        raise UsageError(f"entering network namespace {name} needs root; run as root") from err
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            _setns(target)
        except OSError as err:
            raise UsageError(
                f"cannot enter network namespace {name}: {err.strerror}; run as root"
            ) from err
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
