"""Offset commits of the processor: one the broker refuses is made again until it gets
through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import topics as topics_admin

from stream_processor.commits import Commits

pytestmark = [pytest.mark.kafka]


def drive(consumer: Any, commits: Commits, until: Any, timeout: float = 30.0) -> None:
    """Poll ``consumer`` (which runs the commit callbacks) and retry commits until ``until()``."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the commits did not settle in time"
        consumer.poll(timeout_ms=100)
        commits.retry(time.monotonic())


@pytest.fixture
def consumer(kafka_bootstrap: str, topics: Any) -> Iterator[Any]:
    """A consumer in a fresh group that reads nothing (no fetch creates the topic by accident):
    only its commits matter here."""
    from kafka import KafkaConsumer

    made = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=topics.group("commits"),
        enable_auto_commit=False,
        allow_auto_create_topics=False,
    )
    yield made
    made.close(autocommit=False)


class TestCommits:
    def test_a_refused_commit_is_made_again_once_the_broker_takes_it(
        self, consumer: Any, topics: Any, kafka_bootstrap: str
    ) -> None:
        """A commit for a topic the broker does not have yet fails and stays owed; once the
        topic exists, a retry commits the latest offsets and nothing is owed any more."""
        from kafka import TopicPartition

        name = topics.name("commits")  # created below, after the first commit failed
        tp = TopicPartition(name, 0)
        commits = Commits(consumer, retry_s=0.2)

        commits.acknowledged({tp: 41})
        drive(consumer, commits, lambda: commits.owed)
        topics_admin.create_topic(kafka_bootstrap, name, 1)
        drive(consumer, commits, lambda: not commits.owed)

        group = consumer.config["group_id"]
        assert {0: 42} == topics_admin.committed_offsets(kafka_bootstrap, group)
