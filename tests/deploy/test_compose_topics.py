"""The kafka-topics service of docker-compose.yml, its shell script run against the local broker.

The script runs as compose would run it (``$$`` read as ``$``), with ``kafka-topics.sh`` standing
for Kafka's own TopicCommand from the kafka-tools jars of the broker's version, which Maven
fetches once into ``~/.cache/antinex/kafka-tools``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployfiles import COMPOSE, yaml_file

from antinex import broker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOOLS_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.antinex</groupId><artifactId>antinex-kafka-tools</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


@pytest.fixture(scope="module")
def kafka_topics_command(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable that does what the image's /opt/kafka/bin/kafka-topics.sh does."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("needs java and mvn to run Kafka's TopicCommand")
    jars = Path("~/.cache/antinex/kafka-tools").expanduser() / broker.DEFAULT_VERSION
    if not any(jars.glob("kafka-tools-*.jar")):
        work = tmp_path_factory.mktemp("kafka-tools")
        (work / "pom.xml").write_text(TOOLS_POM.format(version=broker.DEFAULT_VERSION))
        fetch = ["mvn", "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies"]
        done = subprocess.run(
            [*fetch, f"-DoutputDirectory={jars}"], capture_output=True, text=True, timeout=300
        )
        if done.returncode:
            pytest.skip(f"Maven could not fetch kafka-tools: {done.stdout[-500:]}")
    command = tmp_path_factory.mktemp("bin") / "kafka-topics.sh"
    command.write_text(
        "#!/bin/sh\n"
        f"exec java -XX:TieredStopAtLevel=1 -cp '{jars}/*' "
        'org.apache.kafka.tools.TopicCommand "$@"\n'
    )
    command.chmod(0o755)
    return command


@pytest.fixture
def topic_names(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    prefix = f"test-compose-{uuid.uuid4().hex[:10]}"
    names = {
        "ANTINEX_PACKETS_TOPIC": f"{prefix}.packets",
        "ANTINEX_ALERTS_TOPIC": f"{prefix}.alerts",
        "ANTINEX_PROCESSOR_DEAD_LETTER_TOPIC": f"{prefix}.deadletter",
    }
    yield names
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    with contextlib.suppress(KafkaError):
        admin.delete_topics(list(names.values()))
    admin.close()


def run_topics_service(
    command: Path, bootstrap: str, topics: dict[str, str], partitions: int
) -> subprocess.CompletedProcess[str]:
    spec = yaml_file(COMPOSE)["services"]["kafka-topics"]
    (script,) = spec["command"]
    script = script.replace("$$", "$")  # compose's escape for a literal dollar
    script = script.replace("/opt/kafka/bin/kafka-topics.sh", str(command))
    script = script.replace("kafka:19092", bootstrap)
    env = {**os.environ, **topics, "PACKETS_PARTITIONS": str(partitions)}
    return subprocess.run(
        [*spec["entrypoint"], script], env=env, capture_output=True, text=True, timeout=120
    )


def partitions_and_size(bootstrap: str, topic: str) -> tuple[int, int]:
    """The topic's partition count and its own max.message.bytes (0 when it has none)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    size = configs["topic"][topic].get("max.message.bytes", {}).get("value", 0)
    return len(described["partitions"]), int(size)


def test_the_topics_service_creates_the_topics_then_raises_the_partitions(
    kafka_topics_command: Path, kafka_bootstrap: str, topic_names: dict[str, str]
) -> None:
    """A first run creates all three topics; a run asking for more partitions adds them."""
    from capture.publisher import MAX_MESSAGE_BYTES

    first = run_topics_service(kafka_topics_command, kafka_bootstrap, topic_names, 2)
    assert 0 == first.returncode, first.stdout + first.stderr
    packets = topic_names["ANTINEX_PACKETS_TOPIC"]
    assert 2 == partitions_and_size(kafka_bootstrap, packets)[0]
    for topic in topic_names.values():
        assert partitions_and_size(kafka_bootstrap, topic)[1] >= MAX_MESSAGE_BYTES

    again = run_topics_service(kafka_topics_command, kafka_bootstrap, topic_names, 4)
    assert 0 == again.returncode, again.stdout + again.stderr
    assert 4 == partitions_and_size(kafka_bootstrap, packets)[0]
    assert 1 == partitions_and_size(kafka_bootstrap, topic_names["ANTINEX_ALERTS_TOPIC"])[0]
