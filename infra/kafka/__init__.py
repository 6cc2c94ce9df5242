"""Kafka plumbing: the event sink, topic readers, and the one module knowing aiokafka internals."""
