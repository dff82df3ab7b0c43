"""Read template.yaml the way CloudFormation would, for tests: parameter defaults,
intrinsic functions with fixed test values for the account and resources, and the IAM
statements of each function (evaluated by tests/iam.py), so tests can check code against the
real template."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from localcloud.cloudformation import yaml_loader
from tests.conftest import ACCOUNT, REGION, REPO

STACK = "mlops"
BUCKET = "pipeline-data"
LOCK_TABLE = "mlops-locks"
SAGEMAKER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/mlops-sagemaker"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}
# Physical names/ARNs the tests use for the template's resources.
REFS = {
    "DataBucket": BUCKET,
    "DeploymentLockTable": LOCK_TABLE,
    "ClassifyFunction": f"{STACK}-classify",
    "TrainingCodeLayer": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:training-code:1",
}
ATTRS = {
    "DataBucket.Arn": f"arn:aws:s3:::{BUCKET}",
    "DeploymentLockTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{LOCK_TABLE}",
    "SageMakerExecutionRole.Arn": SAGEMAKER_ROLE_ARN,
    "ClassifyFunction.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-classify",
}


@cache
def template() -> dict[str, Any]:
    return yaml_loader.load(REPO / "template.yaml")


def parameters() -> dict[str, str]:
    return {name: str(p.get("Default", "")) for name, p in template()["Parameters"].items()}


def _condition(name: str) -> bool:
    return bool(resolve(template()["Conditions"][name]))


def resolve(value: Any, extra: dict[str, str] | None = None) -> Any:
    """Resolve the intrinsics the template uses (Ref, GetAtt, Sub, If, FindInMap, Equals, Not)."""
    names = {**parameters(), **PSEUDO, **REFS, **ATTRS, **(extra or {})}
    if isinstance(value, list):
        return [resolve(v, extra) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::", "Condition")):
        return {k: resolve(v, extra) for k, v in value.items()}
    ((fn, arg),) = value.items()
    if fn == "Ref":
        return names[arg]
    if fn == "Fn::GetAtt":
        return names[".".join(arg) if isinstance(arg, list) else arg]
    if fn == "Fn::Sub":
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], extra))
        return re.sub(r"\$\{([^}]+)\}", lambda m: str({**names, **local}[m.group(1)]), text)
    if fn == "Fn::If":
        return resolve(arg[1] if _condition(arg[0]) else arg[2], extra)
    if fn == "Fn::FindInMap":
        mapping, key, attr = resolve(arg, extra)
        return template()["Mappings"][mapping][key][attr]
    if fn == "Fn::Equals":
        left, right = resolve(arg, extra)
        return str(left) == str(right)
    if fn == "Fn::Not":
        return not resolve(arg[0], extra)
    raise AssertionError(f"unsupported intrinsic {fn}")


def function_environment(logical_id: str) -> dict[str, str]:
    """Globals plus the function's own variables, resolved with parameter defaults."""
    tpl = template()
    merged = {
        **tpl["Globals"]["Function"]["Environment"]["Variables"],
        **tpl["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    return {k: str(v) for k, v in resolve(merged).items()}


def function_statements(logical_id: str) -> list[dict[str, Any]]:
    policies = template()["Resources"][logical_id]["Properties"].get("Policies", [])
    statements: list[dict[str, Any]] = []
    for policy in policies:
        assert set(policy) == {"Statement"}, f"{logical_id}: only inline statements expected"
        statements.extend(resolve(policy["Statement"]))
    return statements


def set_function_environment(monkeypatch: Any, logical_id: str) -> dict[str, str]:
    """Give the process the function's template environment (Powertools keys excepted)."""
    env = function_environment(logical_id)
    for name, value in env.items():
        if not name.startswith("POWERTOOLS_"):
            monkeypatch.setenv(name, value)
    return env
