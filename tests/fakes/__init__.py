"""Hand-written in-memory implementations of the ports in `ingest.ports`, for tests.

These are working fakes, not mocks: each passes the contract suite the real
adapters pass (tests/contract: S3 verifies part checksums and refuses unknown
or aborted uploads, with the same error types and `details`; the document
store is compare-and-swap), keeps what it stored for assertions, and has a few
knobs to inject faults or slowness.
Everything is plain attributes: set a knob, run the code, read the record.
One module per faked port (`object_store`, `event_sink`, `document_store`,
`quota_view`, `topic_reader`), plus `upload_inputs`: `ScriptedBody` (a request
body that can fail, stall or go slowly), `video_bytes` (bytes with a real
container signature) and `upload_target`. Everything is re-exported here.

    store = MemoryObjectStore()
    store.fail_parts[2] = StorageError("S3 answered 503")
    sink = RecordingEventSink()
    ...
    assert store.uploads[0].state == "aborted"
    assert sink.types()[-1] == "ingest.upload.failed"
"""

from tests.fakes.document_store import MemoryDocumentStore
from tests.fakes.event_sink import GatedSink, RecordingEventSink
from tests.fakes.object_store import (
    MAX_PART_NUMBER,
    S3_MIN_PART_SIZE,
    MemoryMultipartUpload,
    MemoryObjectStore,
    StoredObjectInfo,
    UploadState,
)
from tests.fakes.quota_view import FixedQuotaView
from tests.fakes.topic_reader import StaticFeed
from tests.fakes.upload_inputs import (
    AVI_HEAD,
    HEADS,
    MKV_HEAD,
    MOV_HEAD,
    MP4_HEAD,
    WEBM_HEAD,
    ScriptedBody,
    upload_target,
    video_bytes,
)

__all__ = [
    "AVI_HEAD",
    "HEADS",
    "MAX_PART_NUMBER",
    "MKV_HEAD",
    "MOV_HEAD",
    "MP4_HEAD",
    "S3_MIN_PART_SIZE",
    "WEBM_HEAD",
    "FixedQuotaView",
    "GatedSink",
    "MemoryDocumentStore",
    "MemoryMultipartUpload",
    "MemoryObjectStore",
    "RecordingEventSink",
    "ScriptedBody",
    "StaticFeed",
    "StoredObjectInfo",
    "UploadState",
    "upload_target",
    "video_bytes",
]
