"""Fixtures shared by the test modules: the services they need, or a skip."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The local Kafka broker's bootstrap address; skips the test when no broker answers there."""
    from antinex.broker import bootstrap_address, is_up

    address = bootstrap_address()
    if not is_up(address, timeout=5.0):
        pytest.skip(f"no Kafka broker answers at {address}; start one with `antinex kafka start`")
    return address
