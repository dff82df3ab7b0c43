"""Summarize: the execution output names the job, metrics, endpoint and smoke accuracy."""

from __future__ import annotations

from tests.conftest import AwsRecorder, load_event, load_handler

FUNCTION = "SummarizeRunFunction"


def test_deployed_run(aws: AwsRecorder) -> None:
    event = load_event("summarize_run/deployed.json")
    summary = aws.invoke(load_handler("summarize_run"), event)
    state = event["state"]
    assert summary["training_job_name"] == state["run"]["training"]["job_name"]
    assert summary["metrics"]["valid_acc"] == 0.842
    assert summary["endpoint_config_name"] == state["run"]["endpoint"]["endpoint_config_name"]
    assert (
        summary["previous_endpoint_config_name"]
        == state["deployment"]["previous_endpoint_config_name"]
    )
    assert summary["smoke_test"] == {
        "accuracy": 0.9583,
        "images": 24,
        "correct": 23,
        "min_accuracy": 0.6,
    }
    assert summary["already_deployed"] is False and summary["deployment_action"] == "update"
    assert summary["model_artifact"].endswith("/output/model.tar.gz")


def test_duplicate_run(aws: AwsRecorder) -> None:
    summary = aws.invoke(
        load_handler("summarize_run"), load_event("summarize_run/already_deployed.json")
    )
    assert summary["already_deployed"] is True
    assert summary["smoke_test"] is None and summary["autoscaling"] is None
    assert summary["message"].startswith("endpoint image-classifier already serves ")


def test_the_output_names_the_registered_version_and_the_rollout(aws: AwsRecorder) -> None:
    event = load_event("summarize_run/deployed.json")
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-models/4"
    event["state"]["registry"] = {"model_package_arn": arn, "approval_status": "Approved"}
    event["state"]["deployment"]["rollout"] = "CANARY"
    summary = aws.invoke(load_handler("summarize_run"), event)
    assert summary["model_package_arn"] == arn
    assert summary["rollout"] == "CANARY"
