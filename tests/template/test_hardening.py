"""What a deployability and security review of template.yaml asks: a security scan with every
finding fixed or justified, log retention on every log group, a reservation that new accounts
can deploy, a Rules check of provisioned against reserved concurrency, and API auth."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
import yaml

from localcloud.cloudformation.intrinsics import TemplateError
from localcloud.cloudformation.template import resolve_stack
from tests.conftest import REPO
from tests.template_support import template

CHECKOV = REPO / ".venv" / "checkov" / "bin" / "checkov"
CHECKOV_CONFIG = REPO / ".checkov.yaml"  # the skips that hold for every resource of a type
OFFLINE_AWS = {
    "SAM_CLI_TELEMETRY": "0",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template()["Resources"].items() if v["Type"] == kind}


def stack(**overrides: str) -> Any:
    return resolve_stack(
        REPO / "template.yaml", region="us-east-1", stack_name="hardening", overrides=overrides
    )


# --- the security scanner -----------------------------------------------------------------


def test_checkov_finds_nothing_unjustified() -> None:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make setup-dev` installs checkov's environment")
    result = subprocess.run(
        [
            str(CHECKOV),
            "--config-file",
            str(CHECKOV_CONFIG),
            "--file",
            "template.yaml",
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
        ],
        cwd=REPO,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [
        f"{f['check_id']} {f['resource']}: {f['check_name']}"
        for f in report.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [], "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0


def test_every_suppression_has_a_one_line_justification() -> None:
    skips = [
        (lid, skip)
        for lid, res in template()["Resources"].items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for lid, skip in skips:
        comment = str(skip.get("comment", ""))
        assert skip["id"].startswith("CKV_"), (lid, skip)
        assert len(comment) >= 30 and "\n" not in comment, (lid, skip)
    # the skips of every resource of a type are stated once, each with its reason beside it
    listed = re.findall(r"^\s*- (CKV_\w+)\s*#\s*(.*)$", CHECKOV_CONFIG.read_text(), re.M)
    assert listed == [(i, r) for i, r in listed if len(r) >= 30]
    assert [i for i, _ in listed] == yaml.safe_load(CHECKOV_CONFIG.read_text())["skip-check"]
    # and a resource's own skips do not repeat them
    assert not {i for i, _ in listed} & {skip["id"] for _, skip in skips}


# --- finding 8: log groups with a retention, owned by the stack ---------------------------


def test_every_function_logs_to_a_stack_log_group_with_the_retention() -> None:
    groups = resources("AWS::Logs::LogGroup")
    functions = resources("AWS::Serverless::Function")
    assert len(functions) >= 13
    for lid, fn in functions.items():
        logging = fn["Properties"].get("LoggingConfig", {})
        assert "Ref" in logging.get("LogGroup", {}), f"{lid} has no LoggingConfig.LogGroup"
        group = groups[logging["LogGroup"]["Ref"]]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, lid
        assert group.get("DeletionPolicy", "Delete") == "Delete", lid
    for lid, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, lid


def test_the_local_cloud_deploys_each_function_log_group_with_the_retention() -> None:
    deployed = stack(LogRetentionDays="7")
    groups = {r.name: r.properties for r in deployed.of_type("AWS::Logs::LogGroup")}
    for fn in deployed.functions:
        assert fn.log_group.startswith("/aws/lambda/hardening/"), fn.logical_id
        assert groups[fn.log_group]["RetentionInDays"] == "7", fn.logical_id


# --- findings 3 and 9: reserved and provisioned concurrency -------------------------------


def test_the_default_reserves_no_concurrency() -> None:
    assert template()["Parameters"]["InferenceReservedConcurrency"]["Default"] == 0
    classify = stack().function("ClassifyFunction")
    assert classify.reserved_concurrency is None
    assert (
        stack(InferenceReservedConcurrency="3").function("ClassifyFunction").reserved_concurrency
        == 3
    )


@pytest.mark.parametrize(
    ("reserved", "provisioned"), [("2", "3"), ("1", "2"), ("9", "10"), ("5", "8")]
)
def test_a_rule_refuses_provisioned_above_reserved_before_deploying(
    reserved: str, provisioned: str
) -> None:
    with pytest.raises(TemplateError, match="rule ProvisionedWithinReserved: Inference"):
        stack(InferenceReservedConcurrency=reserved, InferenceProvisionedConcurrency=provisioned)


@pytest.mark.parametrize(
    ("reserved", "provisioned"), [("0", "5"), ("3", "3"), ("3", "1"), ("12", "10"), ("9", "0")]
)
def test_the_rule_lets_consistent_settings_through(reserved: str, provisioned: str) -> None:
    fn = stack(
        InferenceReservedConcurrency=reserved, InferenceProvisionedConcurrency=provisioned
    ).function("ClassifyFunction")
    assert fn.provisioned_concurrency == (int(provisioned) or None)


# --- finding 4: API auth and the guided deploy's question ---------------------------------


def test_api_auth_selects_the_route_authorization() -> None:
    (route,) = stack().function("ClassifyFunction").routes
    assert route.authorization == "NONE"
    (route,) = stack(ApiAuth="AWS_IAM").function("ClassifyFunction").routes
    assert route.authorization == "AWS_IAM"


def test_the_guided_deploy_asks_about_authentication_only_without_iam(monkeypatch) -> None:
    for name, value in OFFLINE_AWS.items():
        monkeypatch.setenv(name, value)
    from samcli.commands.deploy.auth_utils import auth_per_resource
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    def auth(value: str) -> list[tuple[str, bool]]:
        stacks, _ = SamLocalStackProvider.get_stacks(
            str(REPO / "template.yaml"),
            parameter_overrides={"ApiAuth": value},
            global_parameter_overrides={"AWS::Region": "us-east-1"},
        )
        return auth_per_resource(stacks)

    # (function, has auth): False is "ClassifyFunction has no authentication. Is this okay?"
    assert auth("NONE") == [("ClassifyFunction", False)]
    assert auth("AWS_IAM") == [("ClassifyFunction", True)]
