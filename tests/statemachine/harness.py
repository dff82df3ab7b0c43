"""Run statemachine/train_deploy.asl.json in moto's Step Functions interpreter with
scripted Lambda results.

moto 5.2.5 parses the Step Functions Local mock-config format but never loads it (its
``load_mock_test_case_for`` always returns None), so the scripts are served at the Lambda
seam instead: each function gets a queue of ``{"Return": payload}`` or
``{"Throw": {"Error": ..., "Cause": ...}}`` results, one per invocation, as Step Functions
Local's MockedResponses give one per attempt. A Throw answers like a Lambda function
error, so Retry and Catch match on the error name exactly as in AWS.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from mlops.failure import caught_states, describe_failure
from tests.conftest import ACCOUNT, REGION, REPO

ASL = REPO / "statemachine" / "train_deploy.asl.json"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{{}}"
WAITS = {"PollIntervalSeconds": "0", "LockWaitSeconds": "0", "LockMaxAttempts": "3"}


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text))


def substitutions(waits: dict[str, str] | None = None) -> dict[str, str]:
    """Every ${...} of the ASL: function ARNs named after the function, short waits."""
    values = {**WAITS, **(waits or {})}
    for name in placeholders(ASL.read_text()):
        if name.endswith("FunctionArn"):
            values[name] = FUNCTION_ARN.format(name.removesuffix("FunctionArn"))
    return values


def definition(waits: dict[str, str] | None = None) -> str:
    values = substitutions(waits)
    return re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: values[m.group(1)], ASL.read_text())


@dataclass
class Scripts:
    """Per function, the results still to give and the inputs received."""

    results: dict[str, list[dict[str, Any]]]
    inputs: dict[str, list[Any]] = field(default_factory=dict)

    def invoke(self, function: str, body: bytes, response_headers: dict[str, str]) -> bytes:
        event = json.loads(body or b"null")
        self.inputs.setdefault(function, []).append(event)
        if function == "DescribeFailure" and function not in self.results:
            # The real logic: what the execution's cause reads like is under test too.
            return json.dumps(describe_failure(event["state"], _caught(event))).encode()
        queue = self.results.get(function)
        if not queue:
            raise AssertionError(f"no scripted result left for {function}")
        result = queue.pop(0)
        if "Throw" in result:
            response_headers["x-amz-function-error"] = "Unhandled"
            error = {  # what the Python runtime sends for an unhandled exception
                "errorMessage": result["Throw"]["Cause"],
                "errorType": result["Throw"]["Error"],
                "requestId": "00000000-0000-0000-0000-000000000000",
                "stackTrace": ['  File "/var/task/app.py", line 1, in lambda_handler\n'],
            }
            return json.dumps(error).encode()
        return json.dumps(result["Return"]).encode()

    def unused(self) -> dict[str, int]:
        return {name: len(queue) for name, queue in self.results.items() if queue}


def _caught(event: dict[str, Any]) -> list[str]:
    """What DescribeFailure reads from the execution's history."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    history = sfn.get_execution_history(executionArn=event["execution_arn"], maxResults=1000)
    return caught_states(history["events"])


@dataclass
class Execution:
    status: str
    output: Any
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]

    def entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history
            if e["type"].endswith("StateEntered")
        ]


@contextmanager
def state_machine(scripts: Scripts, waits: dict[str, str] | None = None) -> Iterator[str]:
    """A moto account running the real ASL; yields the state machine's ARN."""
    original = LambdaSimpleBackend.invoke

    def invoke(
        self: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        return scripts.invoke(function_name.rsplit(":", 1)[-1], body, response_headers)

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        with mock_aws(config=config):  # type: ignore[arg-type]
            sfn = boto3.client("stepfunctions", region_name=REGION)
            arn = sfn.create_state_machine(
                name="mlops-train-deploy",
                definition=definition(waits),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/state-machine",
            )["stateMachineArn"]
            yield arn
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


def run_execution(
    machine_arn: str, execution_input: Any, name: str = "run-1", timeout: float = 60
) -> Execution:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.start_execution(
        stateMachineArn=machine_arn, name=name, input=json.dumps(execution_input)
    )["executionArn"]
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            sfn.stop_execution(executionArn=arn)
            raise AssertionError(f"execution still running after {timeout} s")
        time.sleep(0.05)
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return Execution(
        status=described["status"],
        output=json.loads(described["output"]) if described.get("output") else None,
        error=described.get("error"),
        cause=described.get("cause"),
        history=history,
    )
