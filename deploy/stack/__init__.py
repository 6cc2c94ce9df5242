"""The local stack: a real Kafka (KRaft) and a real MinIO on 127.0.0.1, without Docker."""

from deploy.stack.errors import StackError
from deploy.stack.lifecycle import (
    Endpoints,
    default_cache_dir,
    default_state_dir,
    down,
    endpoints,
    status,
    up,
)

__all__ = [
    "Endpoints",
    "StackError",
    "default_cache_dir",
    "default_state_dir",
    "down",
    "endpoints",
    "status",
    "up",
]
