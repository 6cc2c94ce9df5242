"""What an exception means, in words a person reads: for messages, session status and events.

`repr(error)` (`ConnectionResetError('Connection lost')`) and `Type: text` show
the code that failed, not what happened. `in_words` says what happened: a
fixed phrase for the transport and file-system failures a service meets every
day, the error's own message for the project's errors and for libraries whose
messages are already sentences, and otherwise the type's name split into words
with its text. It never raises and never returns an empty string.
"""

from __future__ import annotations

import asyncio
import errno
import re

# Most specific first: ConnectionResetError is also an OSError.
_TRANSPORT: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "the connection was refused (nothing listens there)"),
    (ConnectionResetError, "the connection was reset by the other side"),
    (BrokenPipeError, "the other side closed the connection"),
    (ConnectionAbortedError, "the connection was aborted"),
    (TimeoutError, "it took too long (timed out)"),
    (asyncio.CancelledError, "it was stopped before it finished"),
)

_LOST = re.compile(r"connection (lost|closed)", re.IGNORECASE)
_ERRNO_PREFIX = re.compile(r"^\[Errno \d+\]\s*")


def in_words(error: BaseException) -> str:
    """A short sentence fragment (lower case, no final full stop) saying what went wrong."""
    text = _own_text(error)
    if isinstance(error, asyncio.IncompleteReadError):
        return f"the connection closed after {len(error.partial)} of {error.expected} bytes"
    for kind, phrase in _TRANSPORT:
        if isinstance(error, kind):
            if isinstance(error, ConnectionError) and _LOST.search(text):
                return "the connection was lost"
            return phrase
    if isinstance(error, EOFError):
        return "the connection closed before the end"
    builtin = type(error).__module__ == "builtins"
    if builtin and isinstance(error, OSError):
        return _os_error(error)
    if text:
        if builtin:
            # A bare "'key'" or "list index out of range" needs its kind to mean anything.
            return f"{_type_words(type(error))}: {text}"
        return _lower_first(text)
    return _type_words(type(error))


def _own_text(error: BaseException) -> str:
    # The project's errors and aiohttp's HTTP errors keep their sentence in `message`.
    message = getattr(error, "message", None)
    text = message if isinstance(message, str) and message else str(error)
    # Some libraries (aiokafka) start their text with the type's name: the words replace it.
    name = type(error).__name__
    text = "" if text == name else text.removeprefix(f"{name}: ")
    return " ".join(text.split()).rstrip(".")


def _os_error(error: OSError) -> str:
    if error.strerror:
        return _lower_first(error.strerror)
    if error.errno is not None and error.errno in errno.errorcode:
        return errno.errorcode[error.errno].lower()
    return _lower_first(_ERRNO_PREFIX.sub("", str(error))) or "an operating system error"


def _type_words(kind: type[BaseException]) -> str:
    name = kind.__name__.removesuffix("Error").removesuffix("Exception") or kind.__name__
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).lower()
    return f"{words} error" if words else "an error"


def _lower_first(text: str) -> str:
    # "Not enough segments" -> "not enough segments"; "S3 said..." and "URL ..." stay.
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text
