"""The local cloud's fixes to moto's Step Functions, in process (no local cloud started)."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from moto import mock_aws
from moto.core.config import default_user_config
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from localcloud import moto_patches

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def test_an_execution_started_without_a_name_gets_a_uuid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        StepFunctionsParserBackend, "start_execution", StepFunctionsParserBackend.start_execution
    )
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    moto_patches.install_execution_names()
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="m",
            definition=json.dumps(PASS),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        first, second = (
            sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
            for _ in range(2)
        )  # before the fix: both named "None", and the second refused as already existing
        named = sfn.start_execution(stateMachineArn=machine, name="mine")["executionArn"]
    names = [arn.rsplit(":", 1)[1] for arn in (first, second, named)]
    assert UUID.fullmatch(names[0]) and UUID.fullmatch(names[1]) and names[0] != names[1]
    assert names[2] == "mine"
