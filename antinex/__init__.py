"""AntiNex: a streaming packet classifier (sensor → Kafka → scoring → alerts)."""

__version__ = "2.0.0.dev0"
