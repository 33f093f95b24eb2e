"""Topic chores for tests and benchmarks on a real broker: create, read back, delete."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def delete_topics(bootstrap: str, topics: Iterable[str], groups: Iterable[str] = ()) -> None:
    """Delete ``topics`` and consumer ``groups``; what is already gone is fine, anything else is
    reported on stderr and passed over (this is cleanup)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupIdNotFoundError, UnknownTopicOrPartitionError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for call, names in (
            (admin.delete_topics, list(topics)),
            (admin.delete_groups, list(groups)),
        ):
            if not names:
                continue
            try:
                call(names)
            except (UnknownTopicOrPartitionError, GroupIdNotFoundError):
                pass
            except Exception as err:  # cleanup only: report and go on
                print(f"cleanup: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        admin.close()


def read_values(bootstrap: str, topic: str, timeout: float = 60.0) -> list[bytes]:
    """Every message value of ``topic``, from the first offset to the last."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(p) < ends[p] for p in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} back took more than {timeout:.0f} s")
            for messages in consumer.poll(timeout_ms=1000).values():
                values.extend(m.value for m in messages)
        return values
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The offsets ``group`` has committed, by partition."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}
