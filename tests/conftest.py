"""Fixtures shared by the test modules: the services they need, or a skip."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from support.netns import VethPair


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The local Kafka broker's bootstrap address; skips the test when no broker answers there."""
    from antinex.broker import bootstrap_address, is_up

    address = bootstrap_address()
    if not is_up(address, timeout=5.0):
        pytest.skip(f"no Kafka broker answers at {address}; start one with `antinex kafka start`")
    return address


@pytest.fixture
def veth() -> Iterator[VethPair]:
    """A veth pair whose far end sits in its own network namespace; skips without root or ip(8)."""
    from support import netns

    reason = netns.netns_unavailable()
    if reason:
        pytest.skip(f"live capture needs a veth pair in a network namespace: {reason}")
    with netns.veth_in_namespace() as pair:
        yield pair
