"""An endpoint's data capture, as SageMaker keeps it across UpdateEndpoint.

SageMaker's API reference lists ``DataCaptureConfig`` among the variant properties an
update retains (``VariantProperty``: DesiredInstanceCount, DesiredWeight,
DataCaptureConfig), and overriding it from the new endpoint config through
``ExcludeRetainedVariantProperties`` is "not currently supported". So an update with
``RetainAllVariantProperties`` keeps the endpoint's capture (the new config's is not used,
whatever it excludes); without it the new config's capture takes effect, once the update
completes. DescribeEndpoint shows the capture in effect as a ``DataCaptureConfigSummary``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summary(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """DescribeEndpoint's DataCaptureConfig for an endpoint config's DataCaptureConfig
    (empty when there is none: SageMaker then omits it)."""
    if not raw:
        return {}
    enabled = bool(raw.get("EnableCapture", True))
    shown: dict[str, Any] = {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": int(raw["InitialSamplingPercentage"]),
        "DestinationS3Uri": raw["DestinationS3Uri"],
    }
    if raw.get("KmsKeyId"):
        shown["KmsKeyId"] = raw["KmsKeyId"]
    return shown


def after_update(
    current: Mapping[str, Any] | None, config: Mapping[str, Any] | None, retain: bool
) -> dict[str, Any]:
    """The capture (an endpoint config's DataCaptureConfig) an update leaves in effect:
    the endpoint's own with RetainAllVariantProperties, else the new config's."""
    return dict((current if retain else config) or {})


def apply(endpoint: Any, raw: Mapping[str, Any] | None) -> None:
    """Put ``raw`` in effect on moto's endpoint (``capture_config``: what an update retains)."""
    endpoint.capture_config = dict(raw or {})
    endpoint.data_capture_config = summary(raw)


def in_effect(endpoint: Any) -> dict[str, Any]:
    return dict(getattr(endpoint, "capture_config", None) or {})
