"""The sensor: capture packets with scapy, decode them into records, publish to Kafka."""
