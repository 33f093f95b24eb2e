"""Scaling out: two processors in one consumer group share the partitions and, without failures,
score every record exactly once between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import tiny_model

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PARTITIONS = 4
RECORDS = 8000


def test_two_processors_in_one_group_score_every_record_exactly_once(
    trained_models: dict[str, Path],
    topics: Any,
    processors: Any,
    publisher: Any,
    kafka_tools: Any,
) -> None:
    """The partitions are split between both processors, and their counters add up to the
    records published: none scored twice, none missed."""
    topic = topics.new("group", PARTITIONS)
    group = topics.group("pair")
    flags = {
        "alerts_topic": topics.name("alerts"),
        "dead_letter_topic": topics.name("dead"),
        "group_id": group,
    }
    pair = [processors.start(trained_models["v1"], topic, **flags) for _ in range(2)]

    def split() -> tuple[list[int], list[int]] | None:
        owned = [run.wait_assigned() for run in pair]
        both = sorted(owned[0] + owned[1])
        return (owned[0], owned[1]) if both == list(range(PARTITIONS)) else None

    first_owns, second_owns = kafka_tools.wait_until(split, 90, "the partitions to be split")
    kinds = [tiny_model.BENIGN] * 9 + [tiny_model.PORTSCAN]
    records = tiny_model.synthetic_records(RECORDS, kinds, flows=40, first_host=20_000)
    publisher.batches(topic, records, PARTITIONS, per_message=250)
    kafka_tools.wait_committed(group, topic, PARTITIONS, timeout=90)

    scored = [run.scored() for run in pair]
    consumed = [run.value("antinex_processor_records_consumed_total") for run in pair]
    duplicates = [run.value("antinex_processor_duplicates_total") for run in pair]
    codes = [run.stop() for run in pair]

    assert first_owns and second_owns
    assert RECORDS == sum(scored)
    assert RECORDS == sum(consumed)
    assert all(count > 0 for count in scored)
    assert [0, 0] == duplicates
    assert [0, 0] == codes
