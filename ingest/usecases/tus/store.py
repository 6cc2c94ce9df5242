"""What the tus service needs from object storage: the core store and the resumable capability.

A store offers tus only when it implements both (`ResumableObjectStore` is
checked at run time by the composition root, like tusd's store composer).
"""

from __future__ import annotations

from typing import Protocol

from ingest.ports import ObjectStore, ResumableObjectStore


class TusStore(ObjectStore, ResumableObjectStore, Protocol):
    """An object store whose multipart uploads can be resumed from any instance."""
