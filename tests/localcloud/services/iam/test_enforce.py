"""IAM enforced in the local cloud: each role's calls are evaluated by iam-simulate against
the template's policies, and a denied call fails as AWS fails it; audit findings 1, 2, 5
and 7; removing any one permission the pipeline needs makes its call fail, naming it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from botocore.exceptions import ClientError
from moto.sagemaker.exceptions import ValidationError

from localcloud.services.iam.policies import MANAGED_POLICIES, role_policies
from localcloud.services.sagemaker import guardrails
from localcloud.services.sagemaker.metric_definitions import HostMetrics
from localcloud.services.sagemaker.moto_backends import S3, LogStream, StorageError
from localcloud.services.sagemaker.training import LOG_GROUP
from tests.iam import Call, reference_gaps
from tests.localcloud.iam_support import (
    NOT_EXERCISED,
    REGION,
    SAGEMAKER_ROLE,
    STATE_MACHINE,
    EnforcedCloud,
    bucket,
    enforced_cloud,
    pipeline_calls,
    pipeline_stack,
    service_linked_role,
)
from tests.template_support import function_statements


@pytest.fixture(scope="module")
def cloud() -> Iterator[EnforcedCloud]:
    with enforced_cloud() as running:
        yield running


def call(cloud: EnforcedCloud, owner: str, service: str, operation: str, params: Any) -> Any:
    client = cloud.client(owner, service)
    method = getattr(client, xform_name(operation))
    return method(**params)


def denial(cloud: EnforcedCloud, owner: str, service: str, op: str, params: Any) -> str | None:
    """AWS's AccessDenied message for the call, or None if IAM let it through. A HEAD's
    403 has no body (as on AWS): its message is the one the local cloud logged. Application
    Auto Scaling's own validation of the caller's permissions answers ValidationException."""
    try:
        call(cloud, owner, service, op, params)
    except ClientError as exc:
        error = exc.response["Error"]
        message = str(error.get("Message"))
        if error.get("Code") in ("AccessDenied", "AccessDeniedException"):
            return message
        if error.get("Code") == "ValidationException" and "not authorized" in message:
            return message
        if op == "HeadObject" and error.get("Code") == "403":
            return cloud.enforcer.denials[-1]
    return None


# --------------------------------------------------------------------- AWS's answers
def _principal(cloud: EnforcedCloud, owner: str) -> str:
    role_arn, session = cloud.role_of(owner)
    name = role_arn.rsplit("/", 1)[-1]
    return f"arn:aws:sts::{cloud.stack.account_id}:assumed-role/{name}/{session}"


@pytest.mark.parametrize(
    ("service", "operation", "status", "code", "action"),
    [
        ("s3", "GetObject", 403, "AccessDenied", "s3:GetObject"),
        ("sagemaker", "DescribeTrainingJob", 400, "AccessDeniedException", None),
        ("dynamodb", "GetItem", 400, "AccessDeniedException", None),
        ("stepfunctions", "DescribeExecution", 400, "AccessDeniedException", "states:"),
        ("lambda", "Invoke", 403, "AccessDeniedException", "lambda:InvokeFunction"),
        ("application-autoscaling", "DescribeScalableTargets", 400, "AccessDeniedException", None),
        ("sagemaker-runtime", "InvokeEndpoint", 403, "AccessDeniedException", "sagemaker:"),
    ],
)
def test_a_denied_call_fails_as_aws_fails_it(
    cloud: EnforcedCloud, service: str, operation: str, status: int, code: str, action: str | None
) -> None:
    # The parameters the pipeline uses, sent by QualityGate: its role has no permission.
    params = next(
        c[2] for calls in cloud.calls().values() for c in calls if c[:2] == (service, operation)
    )
    with pytest.raises(ClientError) as caught:
        call(cloud, "QualityGateFunction", service, operation, params)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["Error"]["Code"] == code
    if action is None or action.endswith(":"):
        action = f"{action or service + ':'}{operation}"
    message = response["Error"]["Message"]
    resource = "" if action.startswith("application-autoscaling") else " on resource: "
    expected = (
        f"User: {_principal(cloud, 'QualityGateFunction')} is not authorized to perform: "
        f"{action}{resource}"
    )
    assert message.startswith(expected), message
    assert message.endswith(f"because no identity-based policy allows the {action} action")


def test_the_local_cloud_itself_and_other_callers_are_not_restricted(
    cloud: EnforcedCloud,
) -> None:
    s3 = cloud.admin("s3")
    s3.put_object(Bucket=bucket(cloud.stack), Key="anything/at-all.txt", Body=b"x")
    assert s3.get_object(Bucket=bucket(cloud.stack), Key="anything/at-all.txt")["Body"].read()


def test_a_missing_key_answers_404_only_to_a_caller_allowed_to_list_the_bucket(
    cloud: EnforcedCloud,
) -> None:
    b = bucket(cloud.stack)
    missing = {"Bucket": b, "Key": "datasets/missing.tar.gz"}
    # PrepareRun may read datasets/* but lists only under a prefix: HEAD carries no prefix
    for operation, code in (("HeadObject", "403"), ("GetObject", "AccessDenied")):
        with pytest.raises(ClientError) as caught:
            call(cloud, "PrepareRunFunction", "s3", operation, missing)
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "s3:ListBucket" in str(caught.value)
    # the same role allowed ListBucket without a condition gets 404
    role_arn, _ = cloud.role_of("PrepareRunFunction")
    may_list = [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]
    cloud.enforcer.policies["arn:aws:iam::123456789012:role/lister"] = (
        {"name": "p", "policy": {"Version": "2012-10-17", "Statement": may_list}},
    )
    keys = cloud.enforcer.credentials("arn:aws:iam::123456789012:role/lister", "lister")
    import boto3

    lister = boto3.client(
        "s3",
        endpoint_url=cloud.endpoint_url,
        region_name=REGION,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys["AWS_SESSION_TOKEN"],
    )
    with pytest.raises(ClientError) as caught:
        lister.head_object(**missing)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as caught:
        lister.get_object(**missing)
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    assert role_arn  # PrepareRun's own role was not changed


# --------------------------------------------------------------------- audit findings
@pytest.mark.parametrize("owner", ["DeployModelFunction", "RollbackFunction"])
def test_finding_1_describe_scalable_targets_is_allowed(cloud: EnforcedCloud, owner: str) -> None:
    # the action supports no condition key: a statement conditioned on one never matches
    params = {"ServiceNamespace": "sagemaker"}
    assert (
        denial(cloud, owner, "application-autoscaling", "DescribeScalableTargets", params) is None
    )


def test_finding_2_start_training_uploads_missing_training_code(cloud: EnforcedCloud) -> None:
    from mlops.s3 import put_if_absent

    s3 = cloud.client("StartTrainingFunction", "s3")
    b, key = bucket(cloud.stack), "training-code/finding-2/sourcedir.tar.gz"
    assert put_if_absent(s3, b, key, b"code") is True
    assert put_if_absent(s3, b, key, b"code") is False
    assert cloud.admin("s3").get_object(Bucket=b, Key=key)["Body"].read() == b"code"


def test_finding_2_a_missing_data_set_is_rejected_with_a_reason(
    cloud: EnforcedCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops.run_plan import PlanSettings, prepare_run

    for name, value in cloud.stack.function("PrepareRunFunction").environment.items():
        monkeypatch.setenv(name, value)
    b = bucket(cloud.stack)
    trigger = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": b}, "object": {"key": "datasets/gone.tar.gz", "size": 1}},
    }
    result = prepare_run(trigger, cloud.client("PrepareRunFunction", "s3"), PlanSettings.from_env())
    assert result["accepted"] is False
    assert "does not exist" in result["reason"]


def test_finding_5_deploy_model_may_delete_target_tracking_alarms(cloud: EnforcedCloud) -> None:
    target = next(
        c[2] for c in cloud.calls()["DeployModelFunction"] if c[1] == "DeregisterScalableTarget"
    )
    owner = "DeployModelFunction"
    assert (
        denial(cloud, owner, "application-autoscaling", "DeregisterScalableTarget", target) is None
    )


def test_finding_7_images_are_pulled_only_from_the_dlc_registry_and_the_account(
    cloud: EnforcedCloud,
) -> None:
    role_arn, _ = cloud.role_of(SAGEMAKER_ROLE)
    s3 = S3(cloud.stack.account_id, REGION, role_arn)
    image = cloud.stack.function("PrepareRunFunction").environment["TRAINING_IMAGE"]
    assert image.startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/")
    s3.pull_image(image)
    s3.pull_image(f"{cloud.stack.account_id}.dkr.ecr.{REGION}.amazonaws.com/mine:1")
    with pytest.raises(StorageError, match="ecr:BatchCheckLayerAvailability"):
        s3.pull_image(f"111122223333.dkr.ecr.{REGION}.amazonaws.com/someone-elses:1")


# --------------------------------------------------------------------- least privilege
def sagemaker_denials(cloud: EnforcedCloud, tmp: Path) -> list[str]:
    """What the local SageMaker does as the execution role for a run (see
    sagemaker/moto_backends.py)."""
    role_arn, _ = cloud.role_of(SAGEMAKER_ROLE)
    b = bucket(cloud.stack)
    admin = cloud.admin("s3")
    for key in ("training-input/r/digits.tar.gz", "training-code/c/sourcedir.tar.gz",
                "models/j/output/model.tar.gz", "checkpoints/j/epoch.pt"):  # fmt: skip
        admin.put_object(Bucket=b, Key=key, Body=b"x")
    s3 = S3(cloud.stack.account_id, REGION, role_arn)
    env = cloud.stack.function("PrepareRunFunction").environment
    alarms = env["ROLLBACK_ALARM_NAMES"].split(",")
    (tmp / "upload.bin").write_bytes(b"x")
    operations = [
        lambda: s3.pull_image(env["TRAINING_IMAGE"]),
        lambda: s3.download_prefix(f"s3://{b}/training-input/r/digits.tar.gz", tmp / "in"),
        lambda: s3.download(f"s3://{b}/training-code/c/sourcedir.tar.gz", tmp / "code"),
        lambda: s3.download_prefix(f"s3://{b}/checkpoints/j/", tmp / "ckpt"),
        # the champion channel: the live model's artifact, for the champion gate
        lambda: s3.download_prefix(f"s3://{b}/models/j/output/model.tar.gz", tmp / "champion"),
        lambda: s3.upload(tmp / "upload.bin", f"s3://{b}/checkpoints/j/epoch.pt"),
        lambda: s3.upload(tmp / "upload.bin", f"s3://{b}/models/j/output/model.tar.gz"),
        lambda: s3.pull_image(env["INFERENCE_IMAGE"]),
        lambda: s3.download(f"s3://{b}/models/j/output/model.tar.gz", tmp / "model"),
        # the canary update's AutoRollbackConfiguration, read as the model's role
        lambda: guardrails.check_alarm_access([role_arn], alarms, cloud.stack.account_id, REGION),
    ]
    denied = []
    for operation in operations:
        try:
            operation()
        except (StorageError, ValidationError) as exc:
            denied.append(str(exc))
    # the job's logs: written as the role (none when it may not; the job runs on)
    logs = cloud.admin("logs")
    with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
        logs.delete_log_group(logGroupName=LOG_GROUP)  # so creating it is checked too
    stream = LogStream(cloud.stack.account_id, REGION, LOG_GROUP, "j/algo-1-1", role_arn)
    # the job's metrics (MetricDefinitions) in CloudWatch, also as the role
    loss = [{"Name": "loss", "Regex": "loss=([0-9.]+)"}]
    metrics = HostMetrics(cloud.stack.account_id, REGION, loss, "j/algo-1", role_arn)
    return denied + [d for d in (stream.denied, metrics.denied) if d]


def owner_denials(cloud: EnforcedCloud, owner: str, tmp: Path) -> list[str]:
    if owner == SAGEMAKER_ROLE:
        return sagemaker_denials(cloud, tmp)
    # the account's first registration (AttachAutoscaling's) creates the service-linked role
    service_linked_role(cloud, exists=owner != "AttachAutoscalingFunction")
    messages = [denial(cloud, owner, *c) for c in cloud.calls()[owner]]
    return [m for m in messages if m]


def _exercised(owner: str, statement: dict[str, Any], action: str) -> bool:
    service = action.split(":")[0]
    keys = {(owner, action), (owner, f"{service}:*"), (owner, statement.get("Sid"), action)}
    return not keys & set(NOT_EXERCISED)


def permissions() -> list[tuple[str, str, str]]:
    """(owner, statement, action) for every permission the template grants the pipeline
    (the AWS managed policies SAM attaches excepted)."""
    stack = pipeline_stack()
    owners = {fn.role_arn: fn.logical_id for fn in stack.functions}
    owners.update({m.role_arn: STATE_MACHINE for m in stack.state_machines})
    owners.update({r.arn: r.logical_id for r in stack.resources if r.logical_id == SAGEMAKER_ROLE})
    found = []
    for role_arn, entries in role_policies(stack).items():
        owner = owners.get(role_arn)
        for entry in entries if owner else ():
            if entry["name"] in MANAGED_POLICIES:
                continue
            for index, st in enumerate(entry["policy"]["Statement"]):
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                sid = st.get("Sid") or f"{entry['name']}#{index}"
                found += [(owner, sid, a) for a in actions if _exercised(owner, st, a)]
    return found


def test_every_call_of_the_pipeline_is_allowed_by_the_template(
    cloud: EnforcedCloud, tmp_path: Path
) -> None:
    for owner in [*cloud.calls(), SAGEMAKER_ROLE]:
        assert owner_denials(cloud, owner, tmp_path) == [], owner


@pytest.mark.parametrize(("owner", "statement", "action"), permissions())
def test_removing_a_permission_makes_its_call_fail_naming_it(
    cloud: EnforcedCloud, tmp_path: Path, owner: str, statement: str, action: str
) -> None:
    with cloud.without(owner, statement, action):
        denied = owner_denials(cloud, owner, tmp_path)
    named = [m for m in denied if re.search(rf"perform: {re.escape(action)}\b", m)]
    assert named, f"without {action} in {owner}'s {statement}, no call was denied: {denied}"


def test_no_iam_turns_enforcement_off() -> None:
    import argparse

    from localcloud.runtime.settings import add_settings_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    assert settings_from_args(parser.parse_args([])).enforce_iam is True
    settings = settings_from_args(parser.parse_args(["--no-iam"]))
    assert settings.enforce_iam is False
    assert "--no-iam" in settings.server_argv()


def test_without_the_npm_packages_the_start_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from localcloud.services.iam import evaluator

    monkeypatch.setattr(evaluator, "REPO_ROOT", tmp_path)
    with pytest.raises(evaluator.EvaluatorError, match=r"iam-simulate.*run `make setup`"):
        evaluator.check_installed()


def test_the_reference_finds_every_action_the_pipelines_calls_need_granted() -> None:
    """The same calls, read by the Service Authorization Reference oracle (tests/iam.py),
    which does not use localcloud.services.iam.request_context: each action and required resource
    type."""
    calls = pipeline_calls(pipeline_stack())
    gaps = {
        owner: reference_gaps(function_statements(owner), [Call(*call) for call in owned])
        for owner, owned in calls.items()
        if owner != STATE_MACHINE
    }
    assert {owner: found for owner, found in gaps.items() if found} == {}
