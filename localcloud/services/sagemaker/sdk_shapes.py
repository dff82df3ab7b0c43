"""Responses moto shapes differently from SageMaker, in ways the SageMaker Python SDK rejects.

sagemaker-core validates every Describe* response with pydantic. moto returns empty
structures for settings a resource does not have (DescribeModel ``VpcConfig: {}``,
DescribeEndpointConfig ``DataCaptureConfig: {}``), which SageMaker omits: an empty one
misses its required members. These handlers drop them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker.responses import SageMakerResponse

ACTIONS = ("describe_model", "describe_endpoint_config", "describe_endpoint")


def _without_empty(shape: Any) -> Any:
    if not isinstance(shape, dict):
        return shape
    return {key: value for key, value in shape.items() if value not in ({}, None)}


def wrap(original: Callable[[SageMakerResponse], Any]) -> Callable[[SageMakerResponse], Any]:
    def handler(self: SageMakerResponse) -> Any:
        result = original(self)
        if isinstance(result, ActionResult):
            return ActionResult(_without_empty(result.result))
        return result

    handler.__name__ = original.__name__
    return handler
