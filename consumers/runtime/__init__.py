"""The consumer runtime: runs a `ConsumerApp` on a group consumer (Kafka or the in-process bus)."""
