"""Cleaning up after failures nobody could clean at the time: `sweeper` (one pass, run by
every instance and by `ingest sweep`) and `settle` (ending an upload for a streamer that
cannot, shared with DELETE)."""
