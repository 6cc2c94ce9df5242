"""A port that cannot be listened on is one line naming it and a free one, not a traceback."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from collections.abc import Iterator

import pytest

from cli.listening import PortUnavailable, bind_errors_explained, check_port


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_taken_port_is_named_with_a_free_one_to_pick(taken: int) -> None:
    with pytest.raises(PortUnavailable) as refused:
        check_port("127.0.0.1", taken, how_to_change="--port {port}")
    message = str(refused.value)
    assert message.startswith(f"port {taken} is already in use on 127.0.0.1; pick another: ")
    suggested = int(re.findall(r"--port (\d+)", message)[0])
    assert suggested != taken
    check_port("127.0.0.1", suggested, how_to_change="--port {port}")  # it is free


def test_a_free_port_passes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_port("127.0.0.1", free, how_to_change="--port {port}")


def test_the_server_s_own_bind_failing_later_is_explained_too(taken: int) -> None:
    async def listen() -> None:
        await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", taken)

    with (
        pytest.raises(PortUnavailable, match=f"port {taken} is already in use"),
        bind_errors_explained("127.0.0.1", taken, how_to_change="--port {port}"),
    ):
        asyncio.run(listen())


def test_other_permission_errors_are_not_taken_for_a_port_problem() -> None:
    with (
        pytest.raises(PermissionError),
        bind_errors_explained("127.0.0.1", 8080, how_to_change="--port {port}"),
    ):
        raise PermissionError(errno.EACCES, "Permission denied", ".ingest-data")
