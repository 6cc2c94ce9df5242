"""The consumer runtime: runs a `ConsumerApp` on a group consumer (Kafka or the in-process bus).

`app` is the contract a consumer implements; `runtime` runs one app on one
group member (decode, handle, retry or dead-letter, commit the finished
prefix, drain); `inprocess` runs several on the bus; `observability` serves
health and metrics. Each module says how it fails.
"""

from consumers.runtime.app import ConsumerApp
from consumers.runtime.retries import RetryPolicy
from consumers.runtime.runtime import ConsumerRuntime, RuntimeOptions

__all__ = ["ConsumerApp", "ConsumerRuntime", "RetryPolicy", "RuntimeOptions"]
