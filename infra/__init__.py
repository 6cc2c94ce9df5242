"""Plumbing shared by the write path and the consumers, with no domain rules of its own.

Kafka producer and readers, the in-process bus, the S3 client set-up, the
environment parsers, provisioning, and the bucket layout. Imports `schemas`
and client libraries only; `ingest` and `consumers` both build on it.
"""
