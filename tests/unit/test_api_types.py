"""Request types of the HTTP API refuse what the service must not act on."""

from __future__ import annotations

import msgspec
import pytest

from schemas.api import SetQuotaRequest

PiB = 1024**5


def decode_limits(body: bytes) -> SetQuotaRequest:
    return msgspec.json.decode(body, type=SetQuotaRequest)


@pytest.mark.parametrize(
    ("body", "quota_limit", "uploads_limit"),
    [
        (b'{"quota_limit": 1}', 1, None),
        (b'{"quota_limit": 0, "uploads_limit": 0}', 0, 0),
        (b'{"uploads_limit": 1000000000}', None, 1_000_000_000),
        (b'{"quota_limit": 5629499534213120, "uploads_limit": 1}', 5 * PiB, 1),
        (b'{"quota_limit": 1073741824, "uploads_limit": null}', 1024**3, None),
    ],
)
def test_limits_from_zero_up_to_the_maxima_are_accepted(
    body: bytes, quota_limit: int | None, uploads_limit: int | None
) -> None:
    assert decode_limits(body) == SetQuotaRequest(
        quota_limit=quota_limit, uploads_limit=uploads_limit
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"quota_limit": -1}', r"Expected `int` >= 0 - at `\$\.quota_limit`"),
        (b'{"uploads_limit": -5}', r"Expected `int` >= 0 - at `\$\.uploads_limit`"),
        (b'{"quota_limit": 5629499534213121}', r"<= 5629499534213120 - at `\$\.quota_limit`"),
        (b'{"uploads_limit": 1000000001}', r"<= 1000000000 - at `\$\.uploads_limit`"),
        (b'{"quota_limit": 1e30}', r"got `float` - at `\$\.quota_limit`"),
        (b'{"quota_limit": 10.5}', r"got `float` - at `\$\.quota_limit`"),
        (b'{"uploads_limit": true}', r"got `bool` - at `\$\.uploads_limit`"),
        (b'{"uploads_limit": "10"}', r"got `str` - at `\$\.uploads_limit`"),
        (b"{}", "the request sets no limit"),
        (b'{"quota_limit": null, "uploads_limit": null}', "the request sets no limit"),
        (b'{"quota": 10}', "the request sets no limit"),
    ],
)
def test_limits_that_are_not_bounded_integers_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        decode_limits(body)


def test_the_published_schema_carries_the_bounds() -> None:
    schema = msgspec.json.schema(SetQuotaRequest)
    properties = schema["$defs"]["SetQuotaRequest"]["properties"]
    [bytes_limit, _] = properties["quota_limit"]["anyOf"]
    [uploads_limit, _] = properties["uploads_limit"]["anyOf"]
    assert (bytes_limit["minimum"], bytes_limit["maximum"]) == (0, 5 * PiB)
    assert (uploads_limit["minimum"], uploads_limit["maximum"]) == (0, 10**9)
