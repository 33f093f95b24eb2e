"""At-least-once delivery: a processor killed with SIGKILL mid-stream and restarted loses no
record, and the records it scores twice are counted as duplicates."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import tiny_model

from capture.publisher import partition_of
from stream_processor.offsets import ScoredMarks

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PARTITIONS = 3
PER_MESSAGE = 100


def rewind_commits(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` for an empty group, as if the processor's last commits were lost."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = {p: TopicPartition(topic, p) for p in offsets}
        consumer.assign(list(parts.values()))
        consumer.commit({parts[p]: OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
    finally:
        consumer.close(autocommit=False)


def test_a_killed_processor_restarts_without_loss_and_counts_its_duplicates(
    trained_models: dict[str, Path],
    topics: Any,
    processors: Any,
    publisher: Any,
    kafka_tools: Any,
    kafka_bootstrap: str,
) -> None:
    """Every record is its own attacking flow, so every scored record raises one alert: after
    SIGKILL, a lost commit and a restart, every flow has an alert and the duplicates metric
    equals the records between the restart's starting offsets and the scored marks."""
    topic = topics.new("restart", PARTITIONS)
    alerts, group = topics.name("alerts"), topics.group("restart")
    flags = {
        "alerts_topic": alerts,
        "dead_letter_topic": topics.name("dead"),
        "group_id": group,
        "session_timeout_s": 6,
    }
    records = tiny_model.synthetic_records(3000, [tiny_model.PORTSCAN], first_host=10_000)
    owner = np.array([partition_of(f.decode(), PARTITIONS) for f in records["flow_id"]])
    messages: list[tuple[int, np.ndarray]] = []
    sizes: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    for p in range(PARTITIONS):
        rows = records[owner == p]
        for start in range(0, len(rows), PER_MESSAGE):
            messages.append((p, rows[start : start + PER_MESSAGE]))
            sizes[p].append(len(messages[-1][1]))
    messages.sort(key=lambda m: int(m[1]["ts_ns"][0]))  # interleave the partitions

    first = processors.start(trained_models["v1"], topic, **flags)
    first.wait_assigned()
    sender = threading.Thread(
        target=lambda: [(publisher.batch(topic, rows, p), time.sleep(0.1)) for p, rows in messages]
    )
    sender.start()
    kafka_tools.wait_until(lambda: first.scored() >= 1000, 60, "1000 records scored")
    first.kill()
    sender.join()

    kafka_tools.wait_until(lambda: kafka_tools.group_state(group) == "Empty", 30, "an empty group")
    marks = ScoredMarks(processors.workdir / "state", group, topic)
    scored_through = {p: marks.load(p) for p in range(PARTITIONS)}
    committed = kafka_tools.committed(group)
    restart_at = {p: max(0, committed.get(p, 0) - 1) for p in range(PARTITIONS)}
    rewind_commits(kafka_bootstrap, group, topic, restart_at)
    expected_duplicates = sum(
        sum(sizes[p][restart_at[p] : mark + 1])
        for p, mark in scored_through.items()
        if mark is not None
    )

    second = processors.start(trained_models["v1"], topic, **flags)
    kafka_tools.wait_committed(group, topic, PARTITIONS, timeout=90)
    duplicates = second.value("antinex_processor_duplicates_total")
    everything = kafka_tools.read(alerts, 3000 + expected_duplicates)
    alerted = [json.loads(m.value)["antinex"]["flow"]["id"] for m in everything]
    code = second.stop()

    assert {f.decode() for f in records["flow_id"]} == set(alerted)
    assert expected_duplicates > 0
    assert expected_duplicates == duplicates
    assert 0 == code, second.tail()
