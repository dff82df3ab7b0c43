"""Check recorded botocore calls against a function's statements in template.yaml with the
real IAM evaluator (``localcloud.iam``: iam-simulate over the Service Authorization
Reference). Each call's request context (action, resource ARNs, condition keys) is built
from its real parameters, with only the condition keys the reference lists for the action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localcloud.iam.authorize import Authorizer, Principal
from localcloud.iam.requests import required_checks
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
