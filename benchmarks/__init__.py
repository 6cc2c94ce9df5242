"""Benchmarks of the ingest service against the real local stack. Not part of the test suite."""
