"""Kafka plumbing: the event sink, topic readers, group consumers, and aiokafka's internals."""
