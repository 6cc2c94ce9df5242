"""deploy/s3-lifecycle.json: the abandoned-upload rule `ingest provision` puts, for AWS.

Checked against botocore's bundled S3 model (the published API definition), offline.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from infra.provisioning import (
    ABANDONED_MULTIPART_DAYS,
    ABANDONED_UPLOAD_RULE,
    with_abandoned_upload_rule,
)
from tests.deploy.support import S3_LIFECYCLE


def _lifecycle() -> dict[str, Any]:
    document = json.loads(S3_LIFECYCLE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _model_errors(configuration: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model("s3")
    shape = model.operation_model("PutBucketLifecycleConfiguration").input_shape
    report = ParamValidator().validate(
        {"Bucket": "example-bucket", "LifecycleConfiguration": configuration}, shape
    )
    return str(report.generate_report()) if report.has_errors() else ""


def test_the_lifecycle_file_follows_the_s3_api() -> None:
    assert _model_errors(_lifecycle()) == ""


def test_the_api_check_would_catch_a_mistake() -> None:
    broken = _lifecycle()
    broken["Rules"][0]["AbortIncompleteMultipartUpload"] = {"DaysAfterInitation": 2}
    assert "DaysAfterInitation" in _model_errors(broken)


def test_incomplete_uploads_are_aborted_after_the_provisioned_delay() -> None:
    (rule,) = _lifecycle()["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == ABANDONED_MULTIPART_DAYS
    # The whole bucket: sessions and uploads live under several prefixes.
    assert rule["Filter"] in ({"Prefix": ""}, {})
    assert "Expiration" not in rule, "the rule must never delete stored objects"


def test_provisioning_puts_the_rule_of_the_file() -> None:
    (rule,) = _lifecycle()["Rules"]
    assert rule == ABANDONED_UPLOAD_RULE
    assert _model_errors({"Rules": with_abandoned_upload_rule([]) or []}) == ""


def test_an_existing_bucket_gets_the_rule_beside_its_own() -> None:
    theirs = {
        "ID": "logs",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 7},
    }
    merged = with_abandoned_upload_rule([theirs])
    assert merged == [theirs, ABANDONED_UPLOAD_RULE]
    assert _model_errors({"Rules": merged}) == ""


def test_a_bucket_that_aborts_abandoned_uploads_already_is_left_alone() -> None:
    sooner = {
        "ID": "site-policy",
        "Status": "Enabled",
        "Filter": {},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }
    assert with_abandoned_upload_rule([sooner]) is None
    assert with_abandoned_upload_rule([ABANDONED_UPLOAD_RULE]) is None


def test_a_weaker_rule_does_not_count() -> None:
    later = {
        "ID": "abort-abandoned-multipart-uploads",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 30},
    }
    disabled = {**ABANDONED_UPLOAD_RULE, "ID": "off", "Status": "Disabled"}
    partial = {**ABANDONED_UPLOAD_RULE, "ID": "part", "Filter": {"Prefix": "dashboard-uploads/"}}
    merged = with_abandoned_upload_rule([later, disabled, partial])
    assert merged == [disabled, partial, ABANDONED_UPLOAD_RULE]
