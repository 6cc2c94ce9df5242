"""The in-process event bus of `ingest dev` and the tests: Kafka's behaviour in one process.

`InProcessEventBus` (`eventbus`) is an event sink whose topics are bounded
logs (`log`), read through subscriptions (`subscription`) and topic readers
(`reader`, the same `infra.feeds` Protocol as its Kafka counterpart). How
each part fails is in its module.
"""

from infra.bus.eventbus import DEFAULT_QUEUE_SIZE, DEFAULT_RETENTION, InProcessEventBus
from infra.bus.log import BusRecord
from infra.bus.reader import BusTopicReader
from infra.bus.subscription import SubscriberDropped, Subscription

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_RETENTION",
    "BusRecord",
    "BusTopicReader",
    "InProcessEventBus",
    "SubscriberDropped",
    "Subscription",
]
