"""The in-process event bus of `ingest dev` and the tests: Kafka's behaviour in one process.

`InProcessEventBus` (`eventbus`) is an event sink whose topics are bounded
logs (`log`), read through subscriptions (`subscription`), consumer groups
with committed offsets (`groups`) and topic readers (`reader`); the group
consumers and readers implement the same `infra.feeds` Protocols as their
Kafka counterparts. How each part fails is in its module.
"""

from infra.bus.eventbus import DEFAULT_QUEUE_SIZE, DEFAULT_RETENTION, InProcessEventBus
from infra.bus.groups import BusGroupConsumer
from infra.bus.log import BusRecord
from infra.bus.reader import BusTopicReader
from infra.bus.subscription import SubscriberDropped, Subscription

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_RETENTION",
    "BusGroupConsumer",
    "BusRecord",
    "BusTopicReader",
    "InProcessEventBus",
    "SubscriberDropped",
    "Subscription",
]
