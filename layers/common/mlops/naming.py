"""Deterministic run ids, SageMaker resource names and tags.

A run id is a hash of everything that decides what gets trained, so the same data-set
version with the same configuration always maps to the same training job name: a
duplicated trigger adopts the existing job instead of training twice. The deployment id
adds what decides what gets served, and names the model and endpoint config.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

# SageMaker names: 1-63 characters of [a-zA-Z0-9-], no leading/trailing hyphen. Lower
# case only, because SageMaker lower-cases resource ARNs and IAM matches them exactly.
NAME_MAX = 63
_NAME = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
ID_LENGTH = 16
# The longest endpoint name that still leaves room for "-<id>" within NAME_MAX.
ENDPOINT_NAME_MAX = NAME_MAX - ID_LENGTH - 1

# SageMaker tag values: at most 256 of these characters.
_TAG_UNSAFE = re.compile(r"[^\w\s.:/=+\-@]")
TAG_VALUE_MAX = 256
TAG_PREFIX = "mlops:"


def content_id(identity: Mapping[str, Any]) -> str:
    """A short, stable hash of a JSON-serialisable description."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:ID_LENGTH]


def check_endpoint_name(name: str) -> str:
    if not _NAME.match(name) or len(name) > ENDPOINT_NAME_MAX:
        raise ValueError(
            f"endpoint name {name!r} must be 1-{ENDPOINT_NAME_MAX} lower-case letters, digits "
            "and hyphens, starting and ending with a letter or digit"
        )
    return name


def resource_name(endpoint_name: str, ident: str) -> str:
    """``<endpoint>-<id>``: valid as a training job, model and endpoint config name."""
    name = f"{check_endpoint_name(endpoint_name)}-{ident}"
    if not _NAME.match(name) or len(name) > NAME_MAX:
        raise ValueError(f"{name!r} is not a valid SageMaker resource name")
    return name


def tag_value(value: str) -> str:
    return _TAG_UNSAFE.sub("_", value)[:TAG_VALUE_MAX]


def resource_tags(run: Mapping[str, Any], execution_arn: str) -> list[dict[str, str]]:
    """Tags linking a SageMaker resource to the run and the execution that made it."""
    return [
        {"Key": f"{TAG_PREFIX}run-id", "Value": tag_value(run["run_id"])},
        {"Key": f"{TAG_PREFIX}execution", "Value": tag_value(execution_arn)},
        {"Key": f"{TAG_PREFIX}dataset", "Value": tag_value(run["dataset"]["uri"])},
        {"Key": f"{TAG_PREFIX}dataset-version", "Value": tag_value(run["dataset"]["version"])},
    ]
