"""boto3 clients, built one way for every function.

Standard retries with a small budget: Step Functions' Retry blocks own the long backoff,
so a throttled call surfaces quickly as its error name instead of sleeping inside the
Lambda. The embedded local mode points clients at its endpoint through the standard
``AWS_ENDPOINT_URL`` variable, so nothing here knows about it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=70
)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)
