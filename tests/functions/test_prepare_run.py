"""PrepareRun: triggers become deterministic run plans; bad triggers a readable rejection."""

from __future__ import annotations

import copy
import re
from types import ModuleType
from typing import Any

import boto3
import pytest

from mlops import registry
from mlops.errors import ConfigurationError
from tests.conftest import AwsRecorder, load_event, load_handler
from tests.functions.pipeline_helpers import registry_as_on_aws
from tests.template_support import BUCKET, set_function_environment

FUNCTION = "PrepareRunFunction"
KEY = "datasets/dogImages.zip"


@pytest.fixture
def app(aws: AwsRecorder, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    set_function_environment(monkeypatch, FUNCTION)
    return load_handler("prepare_run")


@pytest.fixture
def s3(aws: AwsRecorder) -> Any:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


def upload(s3: Any, key: str = KEY, body: bytes = b"PK\x03\x04 archive") -> str:
    return s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]


def s3_event(version_id: str | None, key: str = KEY) -> dict[str, Any]:
    event = copy.deepcopy(load_event("prepare_run/s3_object_created.json"))
    event["trigger"]["detail"]["object"]["key"] = key
    if version_id is None:
        del event["trigger"]["detail"]["object"]["version-id"]
    else:
        event["trigger"]["detail"]["object"]["version-id"] = version_id
    return event


def manual(dataset: str, **extra: Any) -> dict[str, Any]:
    event = load_event("prepare_run/manual.json")
    event["trigger"] = {"dataset": dataset, **extra}
    return event


def test_s3_event_plans_a_run_from_the_template_configuration(app, aws, s3) -> None:
    version = upload(s3)
    result = aws.invoke(app, s3_event(version))

    assert result["accepted"] is True and result["reason"] is None
    run = result["run"]
    assert run["dataset"] == {
        "bucket": BUCKET,
        "key": KEY,
        "uri": f"s3://{BUCKET}/{KEY}",
        "version_id": version,
        "etag": run["dataset"]["etag"],
        "version": version,
        "size": 12,
    }
    training = run["training"]
    assert training["instance_count"] == 2 and training["instance_type"] == "ml.m5.xlarge"
    assert training["hyperparameters"]["arch"] == "resnet50"
    assert training["image"].endswith(
        ".dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-cpu-py313"
    )
    assert run["model"]["image"].startswith(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:"
    )
    for name in (
        training["job_name"],
        run["model"]["model_name"],
        run["endpoint"]["endpoint_config_name"],
    ):
        assert re.fullmatch(r"[a-z0-9](-*[a-z0-9])*", name) and len(name) <= 63
        assert name.startswith("image-classifier-")
    assert run["quality_gate"] == {
        "metric": "valid_acc",
        "min_value": 0.7,
        "champion_margin": 0.02,
        "champion_load_failure": "fail",
    }
    assert run["mode"] == "train"
    assert run["registry"] == {"group": "mlops-models", "approval_mode": "auto"}
    assert run["endpoint"]["rollout"] == {
        "type": "CANARY",
        "wait_seconds": 300,
        "baking_seconds": 300,
        "max_seconds": 7200,  # the run's whole deployment window: a third of the lease
        "alarms": ["mlops-endpoint-5xx", "mlops-model-latency", "mlops-classify-errors"],
    }
    assert run["endpoint"]["data_capture"] is None
    assert run["endpoint"]["variant_name"] == "AllTraffic"
    assert run["autoscaling"]["target_invocations_per_instance"] == 70
    assert aws.operations() == ["HeadObject", "ListObjectsV2"]


def test_the_same_object_version_gives_the_same_run_and_a_new_version_a_new_one(
    app, aws, s3
) -> None:
    first = upload(s3)
    again = aws.invoke(app, s3_event(first))["run"]
    assert aws.invoke(app, s3_event(first))["run"] == again

    second = upload(s3, body=b"PK\x03\x04 new archive")
    newer = aws.invoke(app, s3_event(second))["run"]
    assert newer["run_id"] != again["run_id"]
    assert newer["training"]["job_name"] != again["training"]["job_name"]


def test_manual_input_overrides_hyperparameters_in_one_spelling(app, aws, s3) -> None:
    upload(s3)
    event = load_event("prepare_run/manual.json")
    run = aws.invoke(app, event)["run"]
    hyper = run["training"]["hyperparameters"]
    assert hyper["epochs"] == 5 and hyper["learning-rate"] == 0.0005
    assert "learning_rate" not in hyper and hyper["batch-size"] == 32
    assert run["source"] == "manual"
    default = aws.invoke(app, manual(f"s3://{BUCKET}/{KEY}"))["run"]
    assert default["run_id"] != run["run_id"]
    assert default["dataset"]["version"] == run["dataset"]["version"]


def test_an_earlier_version_can_be_named(app, aws, s3) -> None:
    old = upload(s3)
    upload(s3, body=b"PK\x03\x04 newer")
    run = aws.invoke(app, manual(f"s3://{BUCKET}/{KEY}", version_id=old))["run"]
    assert run["dataset"]["version_id"] == old
    assert ("s3", "HeadObject") in [(c.service, c.operation) for c in aws.calls]


def test_url_encoded_keys_from_notifications_are_accepted(app, aws, s3) -> None:
    version = upload(s3, "datasets/dog images.zip")
    run = aws.invoke(app, s3_event(version, key="datasets/dog+images.zip"))["run"]
    assert run["dataset"]["key"] == "datasets/dog images.zip"


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [
        ("outside_prefix", "is not a data-set archive: expected a .zip, .tar.gz, .tgz file under "),
        ({"dataset": f"s3://{BUCKET}/datasets/notes.txt"}, "is not a data-set archive"),
        ({"dataset": f"s3://{BUCKET}/datasets/missing.zip"}, "does not exist"),
        (
            {"dataset": "s3://someone-elses-bucket/datasets/x.zip"},
            "is outside the pipeline's bucket",
        ),
        ({"dataset": "/local/file.zip"}, "is not an s3:// URI"),
        ({"dataset": f"s3://{BUCKET}/{KEY}", "version_id": "nope"}, "does not exist"),
        ({"dataset": f"s3://{BUCKET}/{KEY}", "epochs": 3}, "unknown input field(s) epochs"),
        (
            {"dataset": f"s3://{BUCKET}/{KEY}", "hyperparameters": {"sagemaker_program": "x.py"}},
            "reserved for SageMaker",
        ),
        (
            {"dataset": f"s3://{BUCKET}/{KEY}", "hyperparameters": {"layers": [1, 2]}},
            "must be a string, number or boolean",
        ),
        ({"bucket": BUCKET}, 'must be an S3 "Object Created" event or'),
        ({"source": "aws.s3", "detail-type": "Object Deleted"}, "unsupported event type"),
    ],
)
def test_bad_triggers_are_rejected_with_a_reason(app, aws, s3, trigger: Any, reason: str) -> None:
    upload(s3)
    event = load_event(f"prepare_run/{trigger}.json") if isinstance(trigger, str) else manual("")
    if not isinstance(trigger, str):
        event["trigger"] = trigger
    result = aws.invoke(app, event)
    assert result["accepted"] is False and result["run"] is None
    assert reason in result["reason"]


def test_empty_archives_and_ambiguous_prefixes_are_rejected(app, aws, s3) -> None:
    upload(s3, "datasets/empty.zip", b"")
    result = aws.invoke(app, manual(f"s3://{BUCKET}/datasets/empty.zip"))
    assert result["reason"] == f"data set s3://{BUCKET}/datasets/empty.zip is empty"

    upload(s3)
    upload(s3, f"{KEY}.tar.gz")
    result = aws.invoke(app, manual(f"s3://{BUCKET}/{KEY}"))
    assert "is also a prefix of" in result["reason"]


def test_a_missing_setting_fails_with_its_name(app, aws, s3, monkeypatch) -> None:
    upload(s3)
    monkeypatch.delenv("ENDPOINT_NAME")
    with pytest.raises(ConfigurationError, match="ENDPOINT_NAME is not set"):
        aws.invoke(app, manual(f"s3://{BUCKET}/{KEY}"))


def registered(mode: str, status: str = "PendingManualApproval") -> str:
    """A version the pipeline registered (as RegisterModel does: Approved in auto mode is
    the pipeline's own approval, marked so); its ARN."""
    sagemaker = boto3.client("sagemaker")
    own = {"approved_by": "pipeline"} if (mode, status) == ("auto", "Approved") else {}
    sagemaker.create_model_package_group(ModelPackageGroupName="mlops-models")
    return sagemaker.create_model_package(
        ModelPackageGroupName="mlops-models",
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {"Image": "inference:2", "ModelDataUrl": f"s3://{BUCKET}/models/j/model.tar.gz"}
            ],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        CustomerMetadataProperties={
            "run_id": "a9ffe2205ad15d12",
            "dataset_uri": f"s3://{BUCKET}/{KEY}",
            "dataset_version": "v1",
            "training_job": "image-classifier-a9ffe2205ad15d12",
            "approval_mode": mode,
            "metric_valid_acc": "0.91",
            **own,
        },
    )["ModelPackageArn"]


def approval_event(arn: str, status: str = "Approved", group: str = "mlops-models") -> dict:
    event = copy.deepcopy(load_event("prepare_run/model_package_approved.json"))
    event["trigger"]["detail"].update(
        ModelPackageArn=arn, ModelApprovalStatus=status, ModelPackageGroupName=group
    )
    return event


def test_an_approved_version_plans_a_deploy_only_run_from_the_package(app, aws) -> None:
    # Registered PendingManualApproval, then approved by a person. (moto's UpdateModelPackage
    # drops the metadata it is not given, unlike SageMaker; the local cloud patches that.)
    arn = registered("manual", "Approved")
    result = aws.invoke(app, approval_event(arn))
    assert (result["accepted"], result["skipped"]) == (True, False)
    run = result["run"]
    assert run["mode"] == "deploy"
    assert run["run_id"] == "a9ffe2205ad15d12"
    assert run["dataset"]["uri"] == f"s3://{BUCKET}/{KEY}"
    assert run["model"]["image"] == "inference:2"
    package = run["package"]
    assert package["registry"]["model_package_arn"] == arn
    assert package["training"] == {
        "training_job_name": "image-classifier-a9ffe2205ad15d12",
        "status": "Completed",
        "metrics": {"valid_acc": 0.91},
        "model_artifact": f"s3://{BUCKET}/models/j/model.tar.gz",
    }
    assert run["model"]["model_name"] == run["endpoint"]["endpoint_config_name"]
    assert aws.operations() == ["DescribeModelPackage"]


@pytest.mark.parametrize(
    ("mode", "event_status", "group", "words"),
    [
        ("auto", "Approved", "mlops-models", "approved by the pipeline run that registered it"),
        ("manual", "Rejected", "mlops-models", "is Rejected: nothing to deploy"),
        ("manual", "Approved", "other-models", "is not this pipeline's 'mlops-models'"),
    ],
)
def test_events_that_ask_for_nothing_end_the_run_quietly(
    app, aws, mode: str, event_status: str, group: str, words: str
) -> None:
    arn = registered(mode, "Approved")
    result = aws.invoke(app, approval_event(arn, event_status, group))
    assert (result["accepted"], result["skipped"]) == (False, True)
    assert words in result["reason"]


def test_a_persons_reapproval_of_a_version_registered_in_auto_mode_deploys_it(
    app, aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Approved by the pipeline, its deployment failed (RejectModel), then approved again by
    # a person: that approval is theirs, so it deploys, whatever mode registered it.
    registry_as_on_aws(monkeypatch)
    arn = registered("auto", "Approved")
    sagemaker = boto3.client("sagemaker")
    registry.reject(sagemaker, arn, "SmokeTestFailed: accuracy 0.1")
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    result = aws.invoke(app, approval_event(arn))
    assert (result["accepted"], result["skipped"]) == (True, False)
    assert result["run"]["package"]["registry"]["model_package_arn"] == arn


def test_a_version_that_is_not_approved_is_not_deployed(app, aws) -> None:
    arn = registered("manual")  # the event says Approved, the registry does not (any more)
    result = aws.invoke(app, approval_event(arn))
    assert (result["accepted"], result["skipped"]) == (False, False)
    assert (
        result["reason"]
        == f"model package {arn} is PendingManualApproval; only Approved versions deploy"
    )


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        ({"ENDPOINT_INITIAL_INSTANCE_COUNT": "1"}, "DeploymentStrategy CANARY shifts one instance"),
        ({"AUTOSCALING_MIN_CAPACITY": "1"}, "AutoscalingMinCapacity is 1"),
        (
            {"DEPLOYMENT_STRATEGY": "LINEAR", "AUTOSCALING_MAX_CAPACITY": "12"},
            "AutoscalingMaxCapacity must be at most 10",
        ),
        ({"DEPLOYMENT_STRATEGY": "BLUE"}, "DEPLOYMENT_STRATEGY='BLUE' must be one of"),
        ({"APPROVAL_MODE": "sometimes"}, "APPROVAL_MODE='sometimes' must be one of auto, manual"),
        (
            {"ROLLBACK_ALARM_NAMES": ",".join(f"a{i}" for i in range(11))},
            "takes at most 10",
        ),
    ],
)
def test_a_rollout_sagemaker_would_refuse_is_named(
    app, aws, s3, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], words: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Exception, match=re.escape(words)) as raised:
        aws.invoke(app, s3_event(upload(s3)))
    assert type(raised.value).__name__ == "ConfigurationError"


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        # the case: SageMaker would still be baking when the run gives up (7200 s)
        (
            {"ROLLOUT_WAIT_SECONDS": "3600", "ROLLOUT_BAKING_SECONDS": "3600"},
            "waits 7200 s (RolloutWaitSeconds 3600 + RolloutBakingSeconds 3600), which leaves "
            "the new fleet less than 900 s to start within the 7200 s the run waits for a "
            "deployment (a third of DeploymentLockLeaseSeconds 21600",
        ),
        # 400 checks a second apart: the run would give up after 400 s
        ({"POLL_INTERVAL_SECONDS": "1"}, "at most 400 checks of PollIntervalSeconds 1"),
        (
            {"DEPLOYMENT_STRATEGY": "LINEAR", "ROLLOUT_WAIT_SECONDS": "3000"},
            "(RolloutWaitSeconds 3000 x 3 steps + RolloutBakingSeconds 300)",
        ),
    ],
)
def test_a_rollout_that_outlasts_the_runs_deployment_window_is_refused(
    app, aws, s3, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], words: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Exception, match=re.escape(words)) as raised:
        aws.invoke(app, s3_event(upload(s3)))
    assert type(raised.value).__name__ == "ConfigurationError"


def test_sagemaker_may_take_as_long_as_the_run_waits_for_the_update(
    app, aws, s3, monkeypatch
) -> None:
    # A longer lease widens the window: the same hour-long canary then fits, and SageMaker's
    # own timeout is the whole window (the new fleet is not cut off after 900 s).
    monkeypatch.setenv("ROLLOUT_WAIT_SECONDS", "3600")
    monkeypatch.setenv("ROLLOUT_BAKING_SECONDS", "3600")
    monkeypatch.setenv("LOCK_LEASE_SECONDS", "36000")
    rollout = aws.invoke(app, s3_event(upload(s3)))["run"]["endpoint"]["rollout"]
    assert rollout["max_seconds"] == 12000


def test_all_at_once_needs_no_second_instance(app, aws, s3, monkeypatch) -> None:
    monkeypatch.setenv("DEPLOYMENT_STRATEGY", "ALL_AT_ONCE")
    monkeypatch.setenv("ENDPOINT_INITIAL_INSTANCE_COUNT", "1")
    monkeypatch.setenv("AUTOSCALING_MIN_CAPACITY", "1")
    run = aws.invoke(app, s3_event(upload(s3)))["run"]
    assert run["endpoint"]["rollout"]["type"] == "ALL_AT_ONCE"
