"""The stream processor: packet records from Kafka, scored in batches, alerts back to Kafka."""
