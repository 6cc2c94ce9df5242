"""The live API fuzzed from its own `/openapi.json` with schemathesis, one user against another.

`ingest serve` runs as its own process on the real Kafka and MinIO. One user
holds sessions and a stored upload with telling names; another is fuzzed
across every documented operation, in cases that fit the document and cases
that break it, with its own and the first user's session ids mixed in. Any
5xx, any answer the document does not describe (status, content type,
headers, body), any schema-breaking input accepted, and any answer holding
the first user's data fails the test, which prints one reproducing curl per
finding. The longer run is `python -m benchmarks fuzz --minutes 10`.
"""

from __future__ import annotations

from benchmarks.fuzz import run_fuzz
from benchmarks.fuzz_report import describe
from ingest.settings import IngestSettings

FUZZ_SECONDS = 75.0
EXAMPLES_PER_OPERATION = 60


async def test_fuzzing_every_documented_operation_finds_nothing(settings: IngestSettings) -> None:
    result = await run_fuzz(settings, seconds=FUZZ_SECONDS, examples=EXAMPLES_PER_OPERATION)
    print(describe(result))
    # It did fuzz: every operation got cases, and many answers came back.
    assert result.tally.operations >= 30
    assert result.tally.requests >= 1000, describe(result)
    assert result.clean, describe(result)
