"""The state machine's control flow, executed for real by moto's ASL interpreter.

Each scenario scripts what the functions answer (one result per invocation, retries
included) and asserts what AWS would show: status, output or error and cause, which
states ran and what each function was given.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import load_event
from tests.statemachine.harness import Execution, Scripts, run_execution, state_machine

TRIGGER = load_event("s3_object_created.json")
RUN = load_event("start_training/run.json")["run"]
JOB = RUN["training"]["job_name"]
ENDPOINT = RUN["endpoint"]["endpoint_name"]
CONFIG = RUN["endpoint"]["endpoint_config_name"]
ARTIFACT = f"s3://pipeline-data/models/{JOB}/output/model.tar.gz"
DEADLINES = {"deploy": 4102444800, "rollback": 4102448400}
STARTED = {
    "training_job_name": JOB,
    "tuning_job_name": None,  # a run with TuningMaxJobs names its tuning job here
    "status": "InProgress",
    "adopted": False,
    "next_poll_seconds": 0,
}
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/image-classifier/3"
SUMMARY = {"run_id": RUN["run_id"], "endpoint_name": ENDPOINT, "already_deployed": False}


def ok(payload: Any) -> dict[str, Any]:
    return {"Return": payload}


def throw(error: str, cause: str) -> dict[str, Any]:
    return {"Throw": {"Error": error, "Cause": cause}}


def training(status: str, **extra: Any) -> dict[str, Any]:
    return ok(
        {
            "training_job_name": JOB,
            "tuning_job_name": None,
            "status": status,
            "secondary_status": status,
            "failure_reason": None,
            "metrics": {"valid_acc": 0.84} if status == "Completed" else {},
            "model_artifact": ARTIFACT,
            "training_seconds": 100,
            "billable_seconds": 200,
            "next_poll_seconds": 0,
            "champion": None,
            **extra,
        }
    )


def deployment(action: str) -> dict[str, Any]:
    return ok(
        {
            "action": action,
            "endpoint_name": ENDPOINT,
            "endpoint_config_name": CONFIG,
            "model_name": CONFIG,
            "variant_name": "AllTraffic",
            "previous_endpoint_config_name": None,
            "created_endpoint": action == "create",
            "reason": None,
        }
    )


def endpoint(state: str, reason: str | None = None) -> dict[str, Any]:
    return ok(
        {"state": state, "status": "InService", "endpoint_config_name": CONFIG, "reason": reason}
    )


def lock(acquired: bool, attempts: int, exhausted: bool = False, reason: str | None = None) -> dict:
    holder = "arn:aws:states:us-east-1:123456789012:execution:mlops-train-deploy:other"
    return ok(
        {
            "acquired": acquired,
            "holder": None if acquired else holder,
            "taken_over_from": None,
            "attempts": attempts,
            "exhausted": exhausted,
            "reason": reason,
            "deadlines": DEADLINES,
        }
    )


def smoke(passed: bool, reason: str = "smoke-test accuracy 1 reaches the required 0.6") -> dict:
    return ok({"passed": passed, "accuracy": 1.0 if passed else 0.25, "reason": reason})


def prepared(run: dict[str, Any] | None = None) -> dict[str, Any]:
    return ok(
        {"accepted": True, "skipped": False, "reason": None, "run": run or copy.deepcopy(RUN)}
    )


def registered(status: str = "Approved") -> dict[str, Any]:
    return ok(
        {
            "model_package_arn": PACKAGE,
            "model_package_group": "image-classifier",
            "approval_status": status,
            "created": True,
            "model_artifact": ARTIFACT,
            "approval_mode": "manual" if status == "PendingManualApproval" else "auto",
            "message": f"registered {PACKAGE} as {status}",
        }
    )


REJECTED = ok({"model_package_arn": PACKAGE, "approval_status": "Rejected"})


def happy_path(**changes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    script = {
        "PrepareRun": [prepared()],
        "StartTraining": [ok(STARTED)],
        "CheckTraining": [training("InProgress"), training("Completed")],
        "QualityGate": [ok({"passed": True, "reason": "validation accuracy 0.84 reaches 0.7"})],
        "RegisterModel": [registered()],
        "AcquireLock": [lock(True, 1)],
        "DeployModel": [deployment("create")],
        "CheckEndpoint": [endpoint("pending"), endpoint("in_service")],
        "AttachAutoscaling": [ok({"resource_id": f"endpoint/{ENDPOINT}/variant/AllTraffic"})],
        "SmokeTest": [smoke(True)],
        "ReleaseLock": [ok({"released": True})],
        "SummarizeRun": [ok(SUMMARY)],
    }
    script.update(changes)
    return script


def execute(
    results: dict[str, list[dict[str, Any]]], execution_input: Any = TRIGGER
) -> tuple[Execution, Scripts]:
    scripts = Scripts(results)
    with state_machine(scripts) as machine:
        execution = run_execution(machine, execution_input)
    assert scripts.unused() == {}, "scripted results left over"
    return execution, scripts


def test_happy_path_trains_deploys_scales_smoke_tests_and_releases_the_lock() -> None:
    execution, scripts = execute(happy_path())

    assert (execution.status, execution.output) == ("SUCCEEDED", SUMMARY)
    assert execution.entered() == [
        "PrepareRun", "IsRunAccepted", "IsDeployOnly", "StartTraining",
        "WaitForTraining", "CheckTraining", "IsTrainingFinished",
        "WaitForTraining", "CheckTraining", "IsTrainingFinished",
        "QualityGate", "RegisterModel", "DidQualityGatePass", "IsApprovalPending",
        "AcquireDeploymentLock", "IsLockAcquired", "DeployModel", "DeploymentAction",
        "WaitForEndpoint", "CheckEndpoint", "IsEndpointInService",
        "WaitForEndpoint", "CheckEndpoint", "IsEndpointInService",
        "SmokeTest", "DidSmokeTestPass", "AttachAutoscaling",
        "ReleaseLock", "Summarize",
    ]  # fmt: skip
    prepare = scripts.inputs["PrepareRun"][0]
    assert prepare["trigger"] == TRIGGER
    assert prepare["execution_arn"].endswith(":execution:mlops-train-deploy:run-1")
    assert scripts.inputs["StartTraining"][0]["run"] == RUN
    assert scripts.inputs["CheckTraining"][0]["training_job_name"] == JOB
    assert scripts.inputs["QualityGate"][0]["metrics"] == {"valid_acc": 0.84}
    assert scripts.inputs["QualityGate"][0]["gate"] == RUN["quality_gate"]
    assert scripts.inputs["AcquireLock"][0] == {
        "endpoint_name": ENDPOINT,
        "attempts": 0,
        "max_attempts": 3,
        "poll_seconds": 0,
        "run_id": RUN["run_id"],
        "execution_arn": prepare["execution_arn"],
    }
    assert scripts.inputs["DeployModel"][0]["model_artifact"] == ARTIFACT
    assert scripts.inputs["DeployModel"][0]["model_package_arn"] == PACKAGE
    assert scripts.inputs["RegisterModel"][0]["gate"]["passed"] is True
    assert scripts.inputs["AttachAutoscaling"][0]["autoscaling"] == RUN["autoscaling"]
    assert scripts.inputs["SmokeTest"][0]["smoke_test"] == RUN["smoke_test"]
    state = scripts.inputs["SummarizeRun"][0]["state"]
    assert {"run", "training", "gate", "deployment", "endpoint", "autoscaling", "smoke"} <= set(
        state
    )
    assert state["config"] == {"poll_seconds": 0, "lock_wait_seconds": 0, "lock_max_attempts": 3}


def test_manual_input_reaches_prepare_run_unchanged() -> None:
    manual = {
        "dataset": "s3://pipeline-data/datasets/dogImages.zip",
        "hyperparameters": {"epochs": 2},
    }
    _, scripts = execute(happy_path(), manual)
    assert scripts.inputs["PrepareRun"][0]["trigger"] == manual


def test_a_rejected_trigger_fails_with_the_reason() -> None:
    reason = "s3://pipeline-data/uploads/x.zip is not a data-set archive"
    results = {
        "PrepareRun": [ok({"accepted": False, "skipped": False, "reason": reason, "run": None})]
    }
    execution, _ = execute(results)
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "RunRejected", reason)


def test_a_failed_training_job_fails_the_run_with_its_reason() -> None:
    reason = f"training job {JOB} failed: AlgorithmError: out of memory"
    results = happy_path(CheckTraining=[training("Failed", failure_reason=reason)])
    for name in ("QualityGate", "RegisterModel", "AcquireLock", "DeployModel", "CheckEndpoint",
                 "AttachAutoscaling", "SmokeTest", "ReleaseLock", "SummarizeRun"):  # fmt: skip
        del results[name]
    execution, _ = execute(results)
    assert (execution.status, execution.error, execution.cause) == (
        "FAILED",
        "TrainingJobFailed",
        reason,
    )
    assert "DeployModel" not in execution.entered()


def test_a_model_below_the_quality_gate_is_not_deployed() -> None:
    reason = "validation accuracy 0.62 is below the required 0.8"
    results = happy_path(
        QualityGate=[ok({"passed": False, "reason": reason})],
        RegisterModel=[registered("Rejected")],
    )
    for name in ("AcquireLock", "DeployModel", "CheckEndpoint", "AttachAutoscaling", "SmokeTest",
                 "ReleaseLock", "SummarizeRun"):  # fmt: skip
        del results[name]
    execution, _ = execute(results)
    assert (execution.status, execution.error, execution.cause) == (
        "FAILED",
        "QualityGateFailed",
        reason,
    )


def rollback_then_release(
    results: dict[str, list[dict[str, Any]]],
) -> dict[str, list[dict[str, Any]]]:
    results["Rollback"] = [
        ok({"done": False, "action": "deleting", "status": "InService"}),
        ok({"done": True, "action": "deleted", "status": None}),
    ]
    results["RejectModel"] = [REJECTED]
    del results["SummarizeRun"]
    return results


def test_a_failed_endpoint_is_rolled_back_then_the_run_fails_with_its_reason() -> None:
    reason = "endpoint image-classifier is Failed: The primary container did not pass the ping"
    results = happy_path(CheckEndpoint=[endpoint("pending"), endpoint("failed", reason)])
    del results["AttachAutoscaling"], results["SmokeTest"]
    execution, scripts = execute(rollback_then_release(results))
    assert (execution.status, execution.error, execution.cause) == (
        "FAILED",
        "EndpointDeploymentFailed",
        f"{reason} (rolled back)",
    )
    entered = execution.entered()
    assert entered[entered.index("RollBack") :] == [
        "RollBack", "IsRollbackDone", "WaitForRollback", "RollBack", "IsRollbackDone",
        "ReleaseLockAfterFailure", "DescribeFailure", "WasModelRegistered", "RejectModel",
        "RunFailed",
    ]  # fmt: skip
    assert scripts.inputs["Rollback"][0]["deployment"]["created_endpoint"] is True
    rejected = scripts.inputs["RejectModel"][0]
    assert rejected["model_package_arn"] == PACKAGE
    assert rejected["failure"]["error"] == "EndpointDeploymentFailed"


def test_a_failed_smoke_test_rolls_back_releases_the_lock_and_fails_with_its_reason() -> None:
    reason = "smoke-test accuracy 0.25 (1/4 images) is below the required 0.6"
    results = happy_path(SmokeTest=[smoke(False, reason)])
    del results["AttachAutoscaling"]  # autoscaling comes after the smoke test
    execution, scripts = execute(rollback_then_release(results))
    assert (execution.status, execution.error, execution.cause) == (
        "FAILED",
        "SmokeTestFailed",
        f"{reason} (rolled back)",
    )
    entered = execution.entered()
    assert entered.index("RollBack") < entered.index("ReleaseLockAfterFailure")
    assert len(scripts.inputs["ReleaseLock"]) == 1


def test_an_error_after_the_deploy_rolls_back_and_keeps_the_original_error() -> None:
    results = happy_path(AttachAutoscaling=[throw("ValidationException", "variant not found")])
    execution, _ = execute(rollback_then_release(results))
    assert (execution.status, execution.error) == ("FAILED", "ValidationException")
    assert execution.cause.startswith("AttachAutoscaling failed: variant not found")
    assert "RollBack" in execution.entered()


def test_a_failed_rollback_still_releases_the_lock() -> None:
    results = happy_path(SmokeTest=[smoke(False, "below")], RejectModel=[REJECTED])
    del results["SummarizeRun"], results["AttachAutoscaling"]
    results["Rollback"] = [throw("EndpointConflictError", "endpoint was deleted by hand")]
    execution, scripts = execute(results)
    assert (execution.status, execution.error) == ("FAILED", "RollbackFailed")
    assert "; then RollBack failed: endpoint was deleted by hand" in execution.cause
    assert len(scripts.inputs["ReleaseLock"]) == 1


def test_a_lock_that_cannot_be_released_after_a_verified_deploy_still_succeeds() -> None:
    """The model is live and verified; the next run takes over a lock whose holder ended."""
    failed = throw("ResourceNotFoundException", "Requested resource not found")
    execution, scripts = execute(happy_path(ReleaseLock=[failed, failed, failed]))
    assert execution.status == "SUCCEEDED"
    assert len(scripts.inputs["ReleaseLock"]) == 3
    assert scripts.inputs["SummarizeRun"][0]["state"]["release_error"]["Error"] == (
        "ResourceNotFoundException"
    )


def test_throttling_and_lambda_service_errors_are_retried() -> None:
    results = happy_path(
        StartTraining=[
            throw("AwsThrottlingError", "start_training: AWS throttled the call"),
            throw("Lambda.TooManyRequestsException", "Rate exceeded"),
            # the invoke's own client-side timeout (audit finding 6): retried too
            throw("Lambda.ClientExecutionTimeoutException", "Client execution timed out"),
            ok({**STARTED, "adopted": True}),
        ]
    )
    execution, scripts = execute(results)
    assert execution.status == "SUCCEEDED"
    assert len(scripts.inputs["StartTraining"]) == 4
    failed = [e for e in execution.history if e["type"] == "LambdaFunctionFailed"]
    assert [e["lambdaFunctionFailedEventDetails"]["error"] for e in failed] == [
        "AwsThrottlingError",
        "Lambda.TooManyRequestsException",
        "Lambda.ClientExecutionTimeoutException",
    ]


def test_other_errors_are_not_retried() -> None:
    results = {
        "PrepareRun": [prepared()],
        "StartTraining": [
            throw("ConfigurationError", "environment variable DATA_BUCKET is not set")
        ],
    }
    execution, _ = execute(results)
    assert (execution.status, execution.error, execution.cause) == (
        "FAILED",
        "ConfigurationError",
        "StartTraining failed: environment variable DATA_BUCKET is not set",
    )
    assert execution.entered()[-3:] == ["DescribeFailure", "WasModelRegistered", "RunFailed"]


FAILURES = {
    "StartTraining": happy_path(StartTraining=[throw("TrainingRetriesExhausted", "no more")]),
    "DeployModel": {
        **happy_path(
            DeployModel=[throw("DeploymentError", "window closed")], RejectModel=[REJECTED]
        ),
        "Rollback": [ok({"done": True, "action": "untouched", "status": "InService"})],
    },
    "AttachAutoscaling": rollback_then_release(
        happy_path(AttachAutoscaling=[throw("ValidationException", "no variant")])
    ),
    "Rollback": {
        **happy_path(SmokeTest=[smoke(False, "below")], RejectModel=[REJECTED]),
        "Rollback": [throw("RollbackError", "endpoint gone")],
    },
}


def test_a_deploy_that_failed_after_sagemaker_took_it_is_rolled_back_before_the_lock_goes() -> None:
    # DeployModel timed out (Lambda's error) after UpdateEndpoint was accepted: the
    # unchecked model must not stay live with the lock released and its version Rejected.
    results = happy_path(
        DeployModel=[throw("Sandbox.Timedout", "Task timed out after 60.00 seconds")],
        Rollback=[
            ok({"done": False, "action": "restoring", "status": "InService"}),
            ok({"done": True, "action": "restored", "status": "InService"}),
        ],
        RejectModel=[REJECTED],
    )
    for name in ("CheckEndpoint", "AttachAutoscaling", "SmokeTest", "SummarizeRun"):
        del results[name]
    execution, scripts = execute(results)
    assert (execution.status, execution.error) == ("FAILED", "Sandbox.Timedout")
    assert execution.cause.endswith("(rolled back)")
    entered = execution.entered()
    assert entered[entered.index("DeployModel") :][:4] == [
        "DeployModel", "DeployModelFailed", "RollBack", "IsRollbackDone",
    ]  # fmt: skip
    assert entered.index("RollBack") < entered.index("ReleaseLockAfterFailure")
    handed = scripts.inputs["Rollback"][0]["deployment"]
    assert (handed["action"], handed["endpoint_config_name"]) == ("uncertain", CONFIG)
    assert handed["endpoint_name"] == ENDPOINT


@pytest.mark.parametrize("where", sorted(FAILURES))
def test_every_failure_cause_is_one_readable_sentence(where: str) -> None:
    results = copy.deepcopy(FAILURES[where])
    for name in list(results):  # only what runs up to the failure and its cleanup
        if name in {"SummarizeRun"} or (where == "StartTraining" and name != "PrepareRun"):
            results.pop(name)
    if where == "StartTraining":
        results["StartTraining"] = FAILURES[where]["StartTraining"]
    if where == "DeployModel":
        for name in ("CheckEndpoint", "AttachAutoscaling", "SmokeTest"):
            results.pop(name)
    if where == "Rollback":
        results.pop("AttachAutoscaling")
    execution, _ = execute(results)
    assert execution.status == "FAILED"
    for marker in ("Traceback", "stackTrace", 'File "', "errorType", "{"):
        assert marker not in execution.cause


def test_a_run_whose_model_is_already_live_is_still_checked_scaled_and_smoke_tested() -> None:
    # A re-run after an execution that stopped mid-deploy: nothing is deployed twice, but
    # nothing is reported SUCCEEDED without its endpoint check, autoscaling and smoke test.
    execution, scripts = execute(happy_path(DeployModel=[deployment("already_deployed")]))
    assert execution.status == "SUCCEEDED"
    assert scripts.inputs["SummarizeRun"][0]["state"]["deployment"]["action"] == "already_deployed"
    assert {"CheckEndpoint", "AttachAutoscaling", "SmokeTest"} <= set(execution.entered())
    assert len(scripts.inputs["ReleaseLock"]) == 1


def test_a_busy_endpoint_is_waited_for_before_deploying() -> None:
    results = happy_path(DeployModel=[deployment("wait"), deployment("create")])
    execution, _ = execute(results)
    assert execution.status == "SUCCEEDED"
    assert execution.entered().count("WaitBeforeDeploy") == 1


@pytest.mark.parametrize("freed_after", [1, None])
def test_a_held_lock_is_waited_for_a_bounded_number_of_attempts(freed_after: int | None) -> None:
    reason = "the deployment lock of endpoint image-classifier is still held by x after 3 attempts"
    if freed_after:
        results = happy_path(AcquireLock=[lock(False, 1), lock(True, 2)])
    else:
        results = {
            **{
                k: v
                for k, v in happy_path().items()
                if k
                in {"PrepareRun", "StartTraining", "CheckTraining", "QualityGate", "RegisterModel"}
            },
            "AcquireLock": [
                lock(False, 1),
                lock(False, 2),
                lock(False, 3, exhausted=True, reason=reason),
            ],
        }
    execution, scripts = execute(results)
    attempts = [call["attempts"] for call in scripts.inputs["AcquireLock"]]
    if freed_after:
        assert execution.status == "SUCCEEDED" and attempts == [0, 1]
    else:
        assert (execution.status, execution.error, execution.cause) == (
            "FAILED",
            "DeploymentLockHeld",
            reason,
        )
        assert attempts == [0, 1, 2]
        assert "DeployModel" not in execution.entered()


def test_manual_approval_registers_the_model_pending_and_ends_succeeded() -> None:
    results = happy_path(RegisterModel=[registered("PendingManualApproval")])
    for name in ("AcquireLock", "DeployModel", "CheckEndpoint", "AttachAutoscaling", "SmokeTest",
                 "ReleaseLock", "SummarizeRun"):  # fmt: skip
        del results[name]
    execution, _ = execute(results)
    assert execution.status == "SUCCEEDED"
    assert execution.output["status"] == "PendingManualApproval"
    assert execution.output["model_package_arn"] == PACKAGE
    assert execution.entered()[-2:] == ["IsApprovalPending", "AwaitingManualApproval"]
    assert "DeployModel" not in execution.entered()


def test_a_gate_pass_registered_as_rejected_is_never_deployed() -> None:
    # Only an Approved version deploys, whatever RegisterModel reports (a reused version
    # rejected since, say): CreateModel would refuse it and the trigger could never deploy.
    results = happy_path(RegisterModel=[registered("Rejected")])
    for name in ("AcquireLock", "DeployModel", "CheckEndpoint", "AttachAutoscaling", "SmokeTest",
                 "ReleaseLock", "SummarizeRun"):  # fmt: skip
        del results[name]
    execution, _ = execute(results)
    assert (execution.status, execution.error) == ("FAILED", "ModelNotApproved")
    assert execution.cause == f"registered {PACKAGE} as Rejected"
    assert execution.entered()[-2:] == ["IsApprovalPending", "ModelNotApproved"]


def test_a_candidate_worse_than_the_champion_is_registered_rejected_and_not_deployed() -> None:
    reason = (
        "worse than the live model: test accuracy 0.71 against the live model's 0.9 "
        "on the same test split (margin 0.01)"
    )
    results = happy_path(
        QualityGate=[ok({"passed": False, "reason": reason})],
        RegisterModel=[registered("Rejected")],
    )
    for name in ("AcquireLock", "DeployModel", "CheckEndpoint", "AttachAutoscaling", "SmokeTest",
                 "ReleaseLock", "SummarizeRun"):  # fmt: skip
        del results[name]
    champion = "s3://pipeline-data/models/old/output/model.tar.gz"
    results["CheckTraining"][-1]["Return"]["champion"] = champion
    execution, scripts = execute(results)
    assert (execution.status, execution.error, execution.cause) == (
        "FAILED",
        "QualityGateFailed",
        reason,
    )
    assert scripts.inputs["QualityGate"][0]["champion"] == champion
    assert "DeployModel" not in execution.entered()


def test_the_canary_is_probed_then_the_model_is_judged_once_it_takes_all_traffic() -> None:
    results = happy_path(
        DeployModel=[deployment("update")],
        CheckEndpoint=[endpoint("canary"), endpoint("canary"), endpoint("in_service")],
        SmokeTest=[smoke(True), smoke(True)],
    )
    execution, scripts = execute(results)
    assert execution.status == "SUCCEEDED"
    entered = execution.entered()
    # once while the canary takes its share (so its failures trip the rollback alarms), then
    # the shift is awaited, then once more on the new model alone, before autoscaling
    assert entered.count("CanarySmokeTest") == 1
    assert entered[entered.index("CanarySmokeTest") :].count("CheckEndpoint") == 2
    assert entered.index("CanarySmokeTest") < entered.index("SmokeTest")
    assert entered.index("SmokeTest") < entered.index("AttachAutoscaling")
    assert len(scripts.inputs["SmokeTest"]) == 2
    assert {"canary_smoke", "smoke"} <= set(scripts.inputs["SummarizeRun"][0]["state"])


def test_a_model_that_passes_only_beside_the_champion_is_rolled_back() -> None:
    # During the canary about half the smoke images reach the old fleet: a new model at 40%
    # beside a 90% champion reaches 0.6 together. Only its own answers decide.
    alone = "smoke-test accuracy 0.4000 (10/25 images) is below the required 0.6000"
    results = happy_path(
        DeployModel=[deployment("update")],
        CheckEndpoint=[endpoint("canary"), endpoint("in_service")],
        SmokeTest=[smoke(True, "smoke-test accuracy 0.6400 reaches"), smoke(False, alone)],
        RejectModel=[REJECTED],
    )
    del results["AttachAutoscaling"], results["SummarizeRun"]
    results["Rollback"] = [ok({"done": True, "action": "restored", "status": "InService"})]
    execution, scripts = execute(results)
    assert (execution.status, execution.error) == ("FAILED", "SmokeTestFailed")
    assert alone in execution.cause
    assert "AttachAutoscaling" not in execution.entered()
    assert scripts.inputs["Rollback"][0]["deployment"]["action"] == "update"


def test_a_canary_rolled_back_by_an_alarm_fails_naming_the_alarm_and_rejects_the_model() -> None:
    reason = (
        f"endpoint {ENDPOINT} is serving old-config instead of {CONFIG}: rolled back by alarm "
        "image-classifier-endpoint-5xx (Deployment failed: alarm in ALARM)"
    )
    results = happy_path(
        DeployModel=[deployment("update")],
        CheckEndpoint=[endpoint("canary"), endpoint("failed", reason)],
    )
    del results["AttachAutoscaling"], results["SummarizeRun"], results["ReleaseLock"]
    results["ReleaseLock"] = [ok({"released": True})]
    results["Rollback"] = [ok({"done": True, "action": "restored", "status": "InService"})]
    results["RejectModel"] = [REJECTED]
    execution, scripts = execute(results)
    assert (execution.status, execution.error) == ("FAILED", "EndpointDeploymentFailed")
    assert execution.cause == f"{reason} (rolled back)"
    assert "image-classifier-endpoint-5xx" in scripts.inputs["RejectModel"][0]["failure"]["cause"]


def test_a_deploy_refused_for_a_better_live_model_releases_the_lock_and_rejects() -> None:
    """DeployModel found, under the lock, that a better model went live after this one was
    gated (issue 18, never-worse): nothing was deployed, so no rollback."""
    reason = f"the live model {ARTIFACT}-live is better: test accuracy 0.9 against this model's 0.6"
    refused = deployment("refused")
    refused["Return"]["reason"] = reason
    results = happy_path(DeployModel=[refused], RejectModel=[REJECTED])
    for done in ("CheckEndpoint", "AttachAutoscaling", "SmokeTest", "SummarizeRun"):
        del results[done]
    execution, scripts = execute(results)
    assert (execution.status, execution.error, execution.cause) == (
        "FAILED",
        "QualityGateFailed",
        reason,
    )
    assert "RollBack" not in execution.entered()
    assert "ReleaseLockAfterFailure" in execution.entered()
    assert scripts.inputs["RejectModel"][0]["failure"]["cause"] == reason


def test_an_approved_package_deploys_without_training() -> None:
    run = copy.deepcopy(RUN)
    run["mode"] = "deploy"
    run["package"] = {
        "training": {
            "training_job_name": JOB,
            "status": "Completed",
            "metrics": {"valid_acc": 0.9},
            "model_artifact": ARTIFACT,
        },
        "registry": {
            "model_package_arn": PACKAGE,
            "model_package_group": "image-classifier",
            "approval_status": "Approved",
            "created": False,
            "model_artifact": ARTIFACT,
        },
    }
    results = happy_path(PrepareRun=[prepared(run)])
    for name in ("StartTraining", "CheckTraining", "QualityGate", "RegisterModel"):
        del results[name]
    event = {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change"}
    execution, scripts = execute(results, event)
    assert execution.status == "SUCCEEDED"
    assert "StartTraining" not in execution.entered()
    assert scripts.inputs["DeployModel"][0]["model_package_arn"] == PACKAGE
    assert scripts.inputs["SmokeTest"][0]["model_artifact"] == ARTIFACT


def test_an_event_with_nothing_to_deploy_succeeds_without_doing_anything() -> None:
    reason = "the package was approved by the pipeline run that registered it"
    results = {
        "PrepareRun": [ok({"accepted": False, "skipped": True, "reason": reason, "run": None})]
    }
    execution, _ = execute(results)
    assert execution.status == "SUCCEEDED"
    assert execution.entered() == ["PrepareRun", "IsRunAccepted", "NothingToDeploy"]
