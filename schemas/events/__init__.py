"""The events the service publishes: one frozen msgspec Struct per event type, by topic.

The types live in `base` (the fields every event carries, the shared field
types and the closed sets of values), `upload` (an upload's lifecycle and
progress), `detection`, `quota` and `union` (the union `Event` and what is
derived from it: type tags, schema URIs, CloudEvents subject, Kafka key); every
public name is importable from here and from `schemas`.

Every concrete type is part of the tagged union `Event`; the tag, stored in the
`type` field of the JSON payload, is the CloudEvents `type` (for example
`ingest.upload.completed`). Building an event with a naive datetime raises
ValueError; aware datetimes are normalised to UTC, so every timestamp a consumer
sees is UTC. Field constraints (sizes >= 0, priority 1-10, sha256 as lowercase
hex) are checked when a payload is decoded, not when a Struct is built.

How these types may change (they are a public contract; downstream teams decode
them with code we do not control and with the JSON Schemas in `schemas/json/`):

* A change must let an old consumer read a new payload and a new consumer read an
  old one. So the only change allowed to an existing type is a new field that
  has a default; a payload written before the field existed decodes with that
  default, and a consumer that does not know the field ignores it (unknown
  fields are never forbidden here).
* A field is never removed, renamed, or given another type or meaning. A field
  that becomes useless stays, filled with its default.
* The sets of values of `ErrorCode` and `UploadProtocol` are closed: an old
  consumer would reject a value it has not seen. An unexpected failure is
  reported as `INTERNAL` with the detail in `error_message`.
* A new kind of event is a new Struct with a new tag. Consumers skip tags they
  do not know (`schemas.cloudevents.decode` returns None for them), so adding a
  type never breaks anyone.
* A change that cannot follow these rules is a new event type whose tag carries
  a version suffix (`ingest.upload.completed.v2`), published next to the old
  one until every consumer has moved.

These rules are checked, not only written: `schemas/released/` keeps the JSON
Schemas of the last release, and a test (`schemas.compatibility`) refuses any
change that a consumer of them would not survive, in both directions (a field
removed or renamed, a type narrowed or widened, a required field added, an enum
value removed or added, an event type removed), naming the type and the field.

The release step, once the release's changes are merged:

1. `python -m schemas.compatibility --release` runs the same check and, only if
   it passes, makes the schemas of now the snapshot in `schemas/released/`;
2. if the snapshot changed, raise the minor number of `CONTRACT_VERSION` in
   `schemas/asyncapi.py` and run `python -m schemas.jsonschema`;
3. commit `schemas/released/`, the version and the generated files together.

Retiring a superseded type once no consumer reads it is the one deliberate
break: delete its file from `schemas/released/` in the reviewed commit that
removes the type.
"""

from schemas.events.base import ERROR_CODES, ErrorCode, EventBase, UploadProtocol

# The shared field types, for code that names them from here.
from schemas.events.base import AnalysisId as AnalysisId
from schemas.events.base import ByteCount as ByteCount
from schemas.events.base import Count as Count
from schemas.events.base import Seconds as Seconds
from schemas.events.base import Sha256Hex as Sha256Hex
from schemas.events.base import UploadId as UploadId
from schemas.events.base import UserId as UserId
from schemas.events.base import UtcDatetime as UtcDatetime
from schemas.events.base import VideoId as VideoId
from schemas.events.detection import (
    DetectionCompleted,
    DetectionEvent,
    DetectionFailed,
    FrameMeasurements,
    VideoInfo,
)
from schemas.events.quota import (
    AppliedOffset,
    CountedUpload,
    QuotaEvent,
    QuotaLimitsSet,
    QuotaUpdated,
)
from schemas.events.union import (
    EVENT_TYPES,
    SCHEMA_URI_PREFIX,
    Event,
    event_type,
    key_field,
    key_of,
    schema_uri,
    subject_field,
    subject_of,
)
from schemas.events.upload import (
    UploadCancelled,
    UploadCompleted,
    UploadEvent,
    UploadFailed,
    UploadProgress,
    UploadStarted,
)

__all__ = [
    "ERROR_CODES",
    "EVENT_TYPES",
    "SCHEMA_URI_PREFIX",
    "AppliedOffset",
    "CountedUpload",
    "DetectionCompleted",
    "DetectionEvent",
    "DetectionFailed",
    "ErrorCode",
    "Event",
    "EventBase",
    "FrameMeasurements",
    "QuotaEvent",
    "QuotaLimitsSet",
    "QuotaUpdated",
    "UploadCancelled",
    "UploadCompleted",
    "UploadEvent",
    "UploadFailed",
    "UploadProgress",
    "UploadProtocol",
    "UploadStarted",
    "VideoInfo",
    "event_type",
    "key_field",
    "key_of",
    "schema_uri",
    "subject_field",
    "subject_of",
]
