"""Plumbing shared by the write path and the consumers, with no domain rules of its own.

The Kafka producer, topic readers and group consumers on Kafka and on the
in-process bus (one interface for both, `feeds`), the S3 client set-up, the
environment parsers, provisioning, and the bucket layout. Imports `schemas`
and client libraries only; `ingest` and `consumers` both build on it.
"""
