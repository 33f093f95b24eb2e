"""The sensor's Prometheus metrics, exported over HTTP."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from antinex import __version__
from capture.schema import SCHEMA_VERSION

PACKETS_CAPTURED = Counter(
    "antinex_sensor_packets_captured", "Frames read from the interface or capture file"
)
PACKETS_DECODED = Counter(
    "antinex_sensor_packets_decoded", "Frames turned into a packet record (partial ones included)"
)
PACKETS_PARTIAL = Counter(
    "antinex_sensor_packets_partial",
    "Records whose decoding stopped early at a truncated or malformed header",
)
PACKETS_UNDECODABLE = Counter(
    "antinex_sensor_packets_undecodable", "Frames that yielded no record, by reason", ["reason"]
)
KERNEL_DROPS = Counter(
    "antinex_sensor_kernel_drops", "Frames the kernel dropped before the sensor read them"
)
RECORDS_PUBLISHED = Counter(
    "antinex_sensor_records_published", "Records acknowledged by Kafka or written to the output"
)
PUBLISH_ERRORS = Counter("antinex_sensor_publish_errors", "Kafka sends that failed")
RECORDS_DROPPED = Counter(
    "antinex_sensor_records_dropped", "Records lost before publishing, by reason", ["reason"]
)
CONTEXT_ENTRIES = Gauge(
    "antinex_sensor_context_entries",
    "Entries in each context table; each is bounded by --context-table-size",
    ["table"],
)
QUEUE_DEPTH = Gauge(
    "antinex_sensor_queue_records", "Records waiting between capture and the broker's ack"
)
EXTRACT_SECONDS = Histogram(
    "antinex_sensor_extract_seconds",
    "Decoding time per packet, averaged over each chunk of packets",
    buckets=(2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3),
)
LAST_PACKET = Gauge(
    "antinex_sensor_last_packet_timestamp_seconds", "Capture time of the newest packet read"
)
SENSOR_INFO = Info("antinex_sensor", "Sensor build and record schema")
SENSOR_INFO.info({"version": __version__, "schema_version": str(SCHEMA_VERSION)})
