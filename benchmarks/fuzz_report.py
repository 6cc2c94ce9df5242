"""What a fuzzing run sent and found, as text for a terminal and as a result document."""

from __future__ import annotations

from typing import Any

from benchmarks.fuzz import FuzzResult


def describe(result: FuzzResult) -> str:
    tally = result.tally
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(tally.statuses.items()))
    lines = [
        f"{tally.requests} requests to {tally.operations} operations in {result.seconds:.0f} s "
        f"({tally.unsendable} cases the client could not send), seed {tally.seed}",
        f"statuses: {statuses}",
        f"findings: {len(tally.findings)}",
    ]
    for key, finding in tally.findings.items():
        lines += [
            f"- {finding.operation}: {finding.check} (status {finding.status}, "
            f"{tally.occurrences[key]} times)",
            f"  {finding.message}".replace("\n", "\n  "),
            f"  reproduce: {finding.curl}",
        ]
    lines += [f"- {problem}" for problem in result.owner_findings]
    return "\n".join(lines)


def as_document(result: FuzzResult) -> dict[str, Any]:
    tally = result.tally
    return {
        "seconds": round(result.seconds, 1),
        "seed": tally.seed,
        "requests": tally.requests,
        "unsendable": tally.unsendable,
        "operations": tally.operations,
        "statuses": {str(status): n for status, n in sorted(tally.statuses.items())},
        "nothing_to_generate": tally.skipped,
        "findings": [
            {
                "operation": finding.operation,
                "check": finding.check,
                "status": finding.status,
                "times": tally.occurrences[key],
                "message": finding.message,
                "reproduce": finding.curl,
            }
            for key, finding in tally.findings.items()
        ],
        "owner_data_changed": result.owner_findings,
    }
