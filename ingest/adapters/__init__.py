"""Adapters from the write path's ports to real systems: S3, Kafka, local disk, in-process bus."""
