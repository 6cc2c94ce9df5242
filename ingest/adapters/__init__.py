"""Adapters from the write path's ports to real systems: S3 and local disk.

The event sinks (Kafka, the in-process bus) and the topic readers behind the quota
view are shared plumbing in `infra`; the composition roots in `cli` pick them all.
"""
