"""The `ingest` command line: the only place that knows the write path, consumers and stack."""
