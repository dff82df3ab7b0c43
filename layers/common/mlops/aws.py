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
from botocore.exceptions import BotoCoreError

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=70
)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)


def create_at_init(*services: str) -> None:
    """Make these clients now, when the handler's module is imported: in Lambda's init
    phase (which provisioned concurrency, and the local cloud's warm environments, run
    ahead of the first invocation), as AWS advises, rather than in the first invocation,
    which paid 0.1-0.3 s per function for it. Where a client cannot be made yet (no
    region configured: a test importing the module), it is made at first use instead."""
    for service in services:
        try:
            client(service)
        except BotoCoreError:
            continue
