"""One test suite run against the embedded adapters and the real Kafka and S3."""
