"""The consumers of the ingest events: a shared runtime and one package per consumer."""
