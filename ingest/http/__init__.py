"""The HTTP edge of the write path: routes, request parsing, error mapping, health and metrics."""
