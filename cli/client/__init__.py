"""The client behind `ingest upload`: streams files to a server, one-shot or resumable."""
