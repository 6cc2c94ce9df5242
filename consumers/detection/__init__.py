"""The detection consumer: is each stored upload really a video, and what is in it.

`app` is the ConsumerApp (download, reuse or analyse, publish); `pool` runs
analyses in worker processes with a time limit; `analysis`, `validation`,
`measurements` and `model` are the plain synchronous OpenCV code a worker
runs on a local file; `outcomes` keeps the results as documents; `reports`
builds the events; `settings` reads the environment.
"""

from consumers.detection.app import DetectionApp, DetectionGaveUp, open_detection
from consumers.detection.model import ModelNotUsable
from consumers.detection.settings import DetectionSettings, detection_settings_from_env

__all__ = [
    "DetectionApp",
    "DetectionGaveUp",
    "DetectionSettings",
    "ModelNotUsable",
    "detection_settings_from_env",
    "open_detection",
]
