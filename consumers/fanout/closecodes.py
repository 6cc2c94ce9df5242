"""WebSocket close codes of the live feed (4000-4999 are the application's own).

- 1000 normal closure: the client closed.
- 1001 going away: the replica is shutting down, or the connection was lost;
  reconnect with the last cursor.
- 4400 too many client messages that are not JSON of the documented shape.
- 4401 the token expired while connected; reconnect with a fresh token and
  the last cursor.
- 4408 too slow: the client did not take its messages fast enough (its send
  queue filled); reconnect with the last cursor, and read faster.
- 4429 too many connections for this user on this replica
  (`FANOUT_MAX_CONNECTIONS_PER_USER`, default 5); close another first.
- 4503 the replica is at its connection limit (`FANOUT_MAX_CONNECTIONS`,
  default 1000); retry later or on another replica.

A peer that does not answer a WebSocket ping within half the ping interval
(`FANOUT_PING_INTERVAL`, default 20 s) is dropped without a close frame (the client sees 1006).
Authentication, a forbidden scope and a malformed cursor are refused before
the upgrade, as HTTP 401 / 403 / 400 with the JSON error body.
"""

from __future__ import annotations

from typing import Final

NORMAL: Final = 1000
GOING_AWAY: Final = 1001
BAD_MESSAGE: Final = 4400
TOKEN_EXPIRED: Final = 4401
TOO_SLOW: Final = 4408
USER_LIMIT: Final = 4429
SERVICE_FULL: Final = 4503

REASONS: Final = {
    NORMAL: "normal",
    GOING_AWAY: "going_away",
    BAD_MESSAGE: "bad_message",
    TOKEN_EXPIRED: "token_expired",
    TOO_SLOW: "too_slow",
    USER_LIMIT: "user_limit",
    SERVICE_FULL: "service_full",
}
"""Label of each code in the metrics."""
