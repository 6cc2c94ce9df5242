"""Opening aiobotocore S3 clients: without blocking the event loop, and sending bodies uncopied.

botocore reads its configuration files and JSON service models from disk,
synchronously, the first time a client is built. Those reads are done here in
a worker thread first (`warm_session`), so building the client afterwards
only hits botocore's in-memory caches.

`open_s3_client` builds the client every process uses for data: large bodies
go to the socket as slices of the caller's bytes (`SlicedBody`), and
`send_data_bodies_as_is` keeps botocore from copying them into a BytesIO.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp.payload
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession, get_session
from aiohttp.abc import AbstractStreamWriter
from botocore.handlers import convert_body_to_file_like_object

LOCAL_S3 = "http://127.0.0.1:9000"
"""The local stack's MinIO (`ingest stack up`): the default endpoint of every process."""

_MODELS = ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2")
_DATA = ("endpoints", "partitions", "_retry", "sdk-default-configuration")


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None


def s3_endpoint_from_env(env: Mapping[str, str]) -> S3Endpoint:
    """S3_ENDPOINT_URL (empty: AWS S3 itself), AWS_REGION and the two AWS keys.

    The local stack's credentials are assumed for its own endpoint only; elsewhere
    no keys means the standard credential chain (an IAM role, a profile).
    """
    endpoint = env.get("S3_ENDPOINT_URL", LOCAL_S3) or None
    local_credential = "minioadmin" if endpoint == LOCAL_S3 else None
    return S3Endpoint(
        endpoint_url=endpoint,
        region=env.get("AWS_REGION") or "us-east-1",
        access_key_id=env.get("AWS_ACCESS_KEY_ID") or local_credential,
        secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or local_credential,
    )


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


def s3_client_config(
    *,
    path_style: bool,
    max_pool_connections: int = 64,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 3,
) -> AioConfig:
    """The client configuration of every S3 client for data (used by `open_s3_client`)."""
    s3_options: dict[str, Any] = {
        # Over plain http botocore otherwise hashes every request body once more
        # (SHA-256, on the event loop) for the SigV4 payload hash. Parts carry a
        # signed x-amz-checksum-crc32c header (documents an x-amz-checksum-sha256)
        # that S3 verifies, and `complete` checks the composite checksum S3
        # answers with, so the payload hash would add cost and no protection.
        # (Over https botocore already skips it for checksummed uploads.)
        "payload_signing_enabled": False,
    }
    if path_style:
        # MinIO and most S3-compatible servers are reached by host name, where
        # virtual-hosted addressing (bucket.host) would not resolve.
        s3_options["addressing_style"] = "path"
    return AioConfig(
        http_session_cls=SlicingHTTPSession,
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        # Only where an operation requires one: parts and documents carry their
        # own checksums (botocore then adds nothing), and a default CRC32 on other
        # calls would only be work, and a header some S3-compatible servers refuse.
        request_checksum_calculation="when_required",
        s3=s3_options,
    )


@asynccontextmanager
async def open_s3_client(
    endpoint: S3Endpoint,
    *,
    session: AioSession | None = None,
    config: AioConfig | None = None,
) -> AsyncIterator[Any]:
    """An aiobotocore S3 client configured for data (see `s3_client_config`), closed on exit."""
    if session is None:
        session = await warm_session()
    if config is None:
        config = s3_client_config(path_style=endpoint.endpoint_url is not None)
    async with open_s3(session, endpoint, config) as client:
        yield client


PART_WRITE_SIZE = 256 * 1024
"""Bytes of a large request body handed to the transport at a time (see `SlicedBody`)."""


class SlicedBody(aiohttp.payload.Payload):
    """A large `bytes` request body sent as memoryview slices: no copy of the whole.

    Given plain bytes, aiohttp (on Python < 3.12.9) joins the request head and
    the whole body into one new buffer, then asyncio's transport copies what
    the socket did not take at once (`data[n:]` of bytes) and appends that to
    its own buffer: three copies of every byte of every part, on the event
    loop, each into freshly faulted-in pages. Here the body goes out in slices
    of `PART_WRITE_SIZE`, and aiohttp's writer waits for the transport to
    drain after each, so the kernel takes the bytes from where they are and
    at most the slice the socket could not take at once is copied.
    """

    _value: bytes
    _autoclose = True

    def __init__(self, value: bytes, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(value, *args, **kwargs)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._value.decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self._value

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)
        end = len(view) if content_length is None else min(content_length, len(view))
        for start in range(0, end, PART_WRITE_SIZE):
            await writer.write(view[start : min(start + PART_WRITE_SIZE, end)])


class SlicingHTTPSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session, sending large `bytes` bodies as a `SlicedBody`.

    The swap happens here, at the last moment, so everything botocore does
    with the request (validation, signing, event hooks, rewinding for a
    retry) still sees the caller's bytes, and the request gets them back
    once sent.
    """

    async def send(self, request: Any) -> Any:
        body = request.body
        if not isinstance(body, bytes) or len(body) <= PART_WRITE_SIZE:
            return await super().send(request)
        request.body = SlicedBody(body)
        try:
            return await super().send(request)
        finally:
            request.body = body


def send_data_bodies_as_is(client: Any) -> None:
    """Let UploadPart and PutObject send a `bytes` body without copying it.

    botocore wraps a bytes body in a BytesIO; aiohttp then calls `getbuffer()`
    on it, which copies the whole body (the BytesIO shares the bytes until a
    buffer is exported), and reads it back in 64 KiB slices (a second copy).
    Sent as bytes, the body reaches the HTTP session as it is (and a client
    configured by `s3_client_config` sends it in slices, see `SlicedBody`).
    Retries still work: botocore resends a bytes body unchanged. The handler
    list is the client's own copy, so other clients are not affected; calling
    this twice is harmless.
    """
    for operation in ("UploadPart", "PutObject"):
        client.meta.events.unregister(
            f"before-parameter-build.s3.{operation}", convert_body_to_file_like_object
        )
