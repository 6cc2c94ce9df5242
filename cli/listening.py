"""The port a server is about to listen on: checked before anything starts, explained when taken.

A port another program holds would otherwise surface as a 30-line traceback
from deep inside asyncio, after Kafka and S3 were already reached. `check_port`
binds and releases it first (with SO_REUSEADDR, as the server does, so a port
in TIME_WAIT is not mistaken for a taken one) and raises `PortUnavailable`
with one line naming the port and a free one to pick instead;
`bind_errors_explained` gives the same line if the port is taken in the
moment between the check and the server's own bind.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

# How far above a taken port to look for a free one to suggest.
_SUGGEST_WITHIN = 20


class PortUnavailable(Exception):
    """The server cannot listen where it was told to; the message says what to do."""


def check_port(host: str, port: int, *, how_to_change: str) -> None:
    """Raise PortUnavailable when host:port cannot be listened on now."""
    try:
        _try_bind(host, port)
    except OSError as error:
        raise _explained(error, host, port, how_to_change) from None


@contextmanager
def bind_errors_explained(host: str, port: int, *, how_to_change: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        # Only the server's own bind: asyncio names it ("error while attempting to bind on
        # address ..."); a PermissionError from a data directory is not a port problem.
        if "attempting to bind" not in str(error):
            raise
        raise _explained(error, host, port, how_to_change) from None


def _explained(error: OSError, host: str, port: int, how_to_change: str) -> PortUnavailable:
    where = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        free = _free_port_near(host, port)
        pick = how_to_change.format(port=free if free is not None else port + 1)
        return PortUnavailable(f"port {port} is already in use on {host}; pick another: {pick}")
    if error.errno == errno.EACCES:
        pick = how_to_change.format(port=8080 if port < 1024 else port + 1)
        return PortUnavailable(
            f"not allowed to listen on {where} (ports under 1024 need root); {pick}"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return PortUnavailable(f"{host} is not an address of this machine; use --host 127.0.0.1")
    return PortUnavailable(f"cannot listen on {where}: {error.strerror or error}")


def _try_bind(host: str, port: int) -> None:
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)


def _free_port_near(host: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + 1 + _SUGGEST_WITHIN, 65536)):
        try:
            _try_bind(host, candidate)
        except OSError:
            continue
        return candidate
    return None
