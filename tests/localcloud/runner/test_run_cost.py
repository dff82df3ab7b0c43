"""What a run would cost on AWS, from the usage its history and training job show."""

from __future__ import annotations

import datetime
import json
from typing import Any

from localcloud.runner.run_cost import cost_lines, lambda_usage, transitions
from tools.costs import Prices

T0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
PRICES = Prices(
    {
        "region": "us-east-1",
        "currency": "USD",
        "recorded": "2026-12-08",
        "sagemaker_training_per_hour": {"ml.m5.xlarge": 0.23},
        "sagemaker_hosting_per_hour": {"ml.m5.large": 0.115},
        "lambda_per_gb_second": 0.0000166667,
        "lambda_per_million_requests": 0.2,
        "stepfunctions_per_thousand_transitions": 0.025,
    }
)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def event(kind: str, t: float, **details: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": at(t), **details}


ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
HISTORY = [
    event("TaskStateEntered", 0, stateEnteredEventDetails={"name": "PrepareRun"}),
    event(
        "LambdaFunctionScheduled",
        0,
        lambdaFunctionScheduledEventDetails={"resource": ARN + "prepare"},
    ),
    event("LambdaFunctionStarted", 0.5),
    event("LambdaFunctionSucceeded", 2.5),  # 2 s at 512 MB: 1 GB-s
    event("TaskStateEntered", 3, stateEnteredEventDetails={"name": "Check"}),
    event(
        "TaskScheduled",
        3,
        taskScheduledEventDetails={
            "resourceType": "lambda",
            "resource": "invoke",
            "parameters": json.dumps({"FunctionName": ARN + "check:live", "Payload": {}}),
        },
    ),
    event("TaskStarted", 3),
    event("TaskFailed", 4),  # 1 s at 1024 MB: 1 GB-s; retried
    event("TaskScheduled", 5, taskScheduledEventDetails={"resourceType": "sagemaker"}),
    event("TaskStarted", 5),
    event("TaskSucceeded", 9),  # not a Lambda: not billed as one
    event("ChoiceStateEntered", 9, stateEnteredEventDetails={"name": "Done?"}),
]
MEMORY = {"prepare": 512, "check": 1024}


def test_lambda_invocations_are_billed_by_duration_and_memory() -> None:
    requests, gb_seconds = lambda_usage(HISTORY, MEMORY.__getitem__)
    assert requests == 2
    assert round(gb_seconds, 6) == 2.0


def test_every_state_entered_is_a_transition() -> None:
    assert transitions(HISTORY) == 3


def test_the_cost_counts_billable_training_and_prices_the_endpoint_by_the_hour() -> None:
    job = {
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2},
        "TrainingTimeInSeconds": 600,
        "BillableTimeInSeconds": 120,  # spot: billed for a fifth of its run time
    }
    endpoint = {"ProductionVariants": [{"CurrentInstanceCount": 2}]}
    lines = cost_lines(HISTORY, job, endpoint, "ml.m5.large", MEMORY.__getitem__, PRICES)
    text = "\n".join(lines)
    assert "training: 2 x ml.m5.xlarge x 2 min at $0.23/h  $0.02" in text  # 2 x 2/60 x 0.23
    assert "Lambda: 2 requests, 2 GB-s" in text
    assert "Step Functions: 3 state transitions" in text
    assert "  endpoint: " not in text  # not a run cost: it serves until deleted
    assert lines[-1].endswith("2 x ml.m5.large at $0.230/h ($166 a month) until it is deleted")


def test_an_instance_type_the_table_lacks_is_one_line() -> None:
    job = {"ResourceConfig": {"InstanceType": "ml.p5.48xlarge", "InstanceCount": 1}}
    [line] = cost_lines([], job, None, None, MEMORY.__getitem__, PRICES)
    assert "no training price for ml.p5.48xlarge" in line
