"""Opening an aiobotocore S3 client without blocking the event loop.

botocore reads its configuration files and JSON service models from disk,
synchronously, the first time a client is built. Those reads are done here in
a worker thread first, so building the client afterwards only hits botocore's
in-memory caches.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

_MODELS = ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2")
_DATA = ("endpoints", "partitions", "_retry", "sdk-default-configuration")


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None


async def warm_session() -> AioSession:
    """A session whose configuration and S3 models are already loaded."""
    session = get_session()
    await asyncio.to_thread(_load_from_disk, session)
    return session


def open_s3(
    session: AioSession, endpoint: S3Endpoint, config: AioConfig | None = None
) -> AbstractAsyncContextManager[Any]:
    return session.create_client(  # type: ignore[no-any-return]
        "s3",
        endpoint_url=endpoint.endpoint_url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
        config=config,
    )


def _load_from_disk(session: AioSession) -> None:
    session.get_scoped_config()
    loader = session.get_component("data_loader")
    version = loader.determine_latest_version("s3", "service-2")
    for name in _MODELS:
        # botocore caches per (service, type, api_version): warm both spellings it uses.
        loader.load_service_model("s3", name)
        loader.load_service_model("s3", name, api_version=version)
    for name in _DATA:
        loader.load_data(name)
