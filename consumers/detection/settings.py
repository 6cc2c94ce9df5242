"""The detection consumer's settings, built once from the environment (beside `ConsumerSettings`).

How it fails: a malformed variable raises SettingsError naming it, at start.
Whether the model file is a usable ONNX model is checked when the consumer
starts (`consumers.detection.app.open_detection`), not here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import msgspec

from consumers.detection.analysis import AnalysisSettings
from consumers.detection.measurements import DEFAULT_SCAN_WIDTH
from consumers.detection.model import ModelSettings
from consumers.detection.validation import ValidationLimits
from infra.env import SettingsError, duration, integer
from infra.s3 import S3Endpoint

_LOCAL_S3 = "http://127.0.0.1:9000"
_WORKERS = "INGEST_DETECTION_WORKERS"
_IN_FLIGHT = "INGEST_DETECTION_IN_FLIGHT"
_SAMPLE_EVERY = "INGEST_DETECTION_SAMPLE_EVERY"
_SCAN_WIDTH = "INGEST_DETECTION_SCAN_WIDTH"
_SCALE = "INGEST_DETECTION_MODEL_SCALE"
_OUTPUT = "INGEST_DETECTION_MODEL_OUTPUT"


class DetectionSettings(msgspec.Struct, frozen=True, kw_only=True):
    workers: int = max(1, os.cpu_count() or 1)
    # Past this an analysis is stopped (its worker killed) and reported TIMEOUT.
    time_limit_seconds: float = 600.0
    # Records of one partition in flight; 0: twice the workers, so the next files are
    # downloaded while the pool is busy.
    max_in_flight: int = 0
    sample_every_seconds: float = 1.0
    scan_width: int = DEFAULT_SCAN_WIDTH
    min_duration_seconds: float = 0.1
    frame_count_tolerance: float = 0.02
    scratch_dir: Path = Path(tempfile.gettempdir())
    model: ModelSettings | None = None
    s3_endpoint_url: str | None = _LOCAL_S3
    s3_bucket: str = "ingest"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_region: str = "us-east-1"

    @property
    def in_flight(self) -> int:
        return self.max_in_flight or 2 * self.workers

    def analysis(self) -> AnalysisSettings:
        return AnalysisSettings(
            sample_every_seconds=self.sample_every_seconds,
            scan_width=self.scan_width,
            limits=ValidationLimits(
                min_duration_seconds=self.min_duration_seconds,
                frame_count_tolerance=self.frame_count_tolerance,
            ),
            model=self.model,
        )

    def s3_endpoint(self) -> S3Endpoint:
        return S3Endpoint(
            endpoint_url=self.s3_endpoint_url,
            region=self.aws_region,
            access_key_id=self.aws_access_key_id,
            secret_access_key=self.aws_secret_access_key,
        )


def _number(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number") from None


def _positive(value: float, name: str) -> float:
    if value <= 0:
        raise SettingsError(f"{name} must be above 0, not {value:g}")
    return value


def _model(env: Mapping[str, str]) -> ModelSettings | None:
    path = env.get("INGEST_DETECTION_MODEL")
    if not path:
        return None
    size = env.get("INGEST_DETECTION_MODEL_INPUT", "224x224")
    width, _, height = size.lower().partition("x")
    mean = [m for m in env.get("INGEST_DETECTION_MODEL_MEAN", "0,0,0").split(",") if m.strip()]
    swap = env.get("INGEST_DETECTION_MODEL_SWAP_RB", "true").strip().lower()
    if len(mean) != 3:
        raise SettingsError("INGEST_DETECTION_MODEL_MEAN must be three numbers (e.g. 104,117,123)")
    if swap not in {"true", "false", "1", "0"}:
        raise SettingsError("INGEST_DETECTION_MODEL_SWAP_RB must be true or false")
    return ModelSettings(
        path=Path(path),
        input_width=int(_positive(integer(width, "INGEST_DETECTION_MODEL_INPUT"), "its width")),
        input_height=int(_positive(integer(height, "INGEST_DETECTION_MODEL_INPUT"), "its height")),
        mean=(
            _number(mean[0], "INGEST_DETECTION_MODEL_MEAN"),
            _number(mean[1], "INGEST_DETECTION_MODEL_MEAN"),
            _number(mean[2], "INGEST_DETECTION_MODEL_MEAN"),
        ),
        scale=_number(env.get(_SCALE, str(1 / 255)), _SCALE),
        swap_rb=swap in {"true", "1"},
        output_index=integer(env.get(_OUTPUT, "0"), _OUTPUT),
    )


def detection_settings_from_env(environ: Mapping[str, str] | None = None) -> DetectionSettings:
    env = os.environ if environ is None else environ
    defaults = DetectionSettings()
    endpoint = env.get("S3_ENDPOINT_URL", _LOCAL_S3) or None
    # The local stack's credentials only for its own endpoint (as ingest does); on AWS no
    # keys means the standard credential chain.
    local_credential = "minioadmin" if endpoint == _LOCAL_S3 else None
    workers = integer(env.get(_WORKERS, str(defaults.workers)), _WORKERS)
    return DetectionSettings(
        workers=int(_positive(workers, _WORKERS)),
        time_limit_seconds=_positive(
            duration(env.get("INGEST_DETECTION_TIME_LIMIT", "600s"), "INGEST_DETECTION_TIME_LIMIT"),
            "INGEST_DETECTION_TIME_LIMIT",
        ),
        max_in_flight=integer(env.get(_IN_FLIGHT, "0"), _IN_FLIGHT),
        sample_every_seconds=_positive(
            duration(env.get(_SAMPLE_EVERY, "1s"), _SAMPLE_EVERY),
            _SAMPLE_EVERY,
        ),
        scan_width=int(
            _positive(
                integer(
                    env.get(_SCAN_WIDTH, str(DEFAULT_SCAN_WIDTH)),
                    _SCAN_WIDTH,
                ),
                _SCAN_WIDTH,
            )
        ),
        min_duration_seconds=duration(
            env.get("INGEST_DETECTION_MIN_DURATION", "0.1s"), "INGEST_DETECTION_MIN_DURATION"
        ),
        scratch_dir=Path(env.get("INGEST_DETECTION_SCRATCH_DIR") or defaults.scratch_dir),
        model=_model(env),
        s3_endpoint_url=endpoint,
        s3_bucket=env.get("S3_BUCKET", defaults.s3_bucket),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or local_credential,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or local_credential,
        aws_region=env.get("AWS_REGION", defaults.aws_region),
    )
