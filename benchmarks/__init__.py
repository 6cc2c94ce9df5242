"""Benchmarks of the ingest service against the real local stack. Not part of the test suite.

`python -m benchmarks all` (or one of throughput, memory, concurrency, latency,
consumers, profile); see benchmarks/README.md. Each benchmark starts real
`ingest serve` processes and fails loudly (RuntimeError) rather than report a
figure from a broken run.
"""
