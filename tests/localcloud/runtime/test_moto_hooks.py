"""The local cloud's fixes to moto's Step Functions, in process (no local cloud started)."""

from __future__ import annotations

import json
import re
import time

import boto3
import pytest
from moto import mock_aws
from moto.core import utils as moto_utils
from moto.core.config import default_user_config
from moto.stepfunctions.parser.asl.parse import asl_parser
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from localcloud.runtime import moto_hooks

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def test_an_execution_started_without_a_name_gets_a_uuid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        StepFunctionsParserBackend, "start_execution", StepFunctionsParserBackend.start_execution
    )
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    moto_hooks.install_execution_names()
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


def test_a_definition_is_parsed_once_and_each_execution_gets_its_own_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = asl_parser.AmazonStateLanguageParser
    monkeypatch.setattr(parser, "parse", parser.__dict__["parse"])  # restored afterwards
    monkeypatch.setattr(moto_utils, "create_loader", moto_utils.create_loader)
    lexed: list[str] = []
    monkeypatch.setattr(asl_parser, "ASLLexer", _counting(asl_parser.ASLLexer, lexed))
    moto_hooks.configure()
    definition = json.dumps(PASS)
    (first, tree), (second, same_tree) = parser.parse(definition), parser.parse(definition)
    assert same_tree is tree and first is not second  # fresh evaluation components
    assert len(lexed) == 1
    with pytest.raises(asl_parser.ASLParserException):
        parser.parse('{"StartAt": 1}')
    with pytest.raises(asl_parser.ASLParserException):  # a bad one is never kept
        parser.parse('{"StartAt": 1}')
    assert len(lexed) == 3
    assert moto_utils.create_loader() is moto_utils.create_loader()  # one model loader


def test_state_machines_still_run_with_parsed_definitions_kept() -> None:
    moto_hooks.configure()
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="twice", definition=json.dumps(PASS), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        runs = [
            sfn.start_execution(stateMachineArn=machine, name=f"n{n}", input=json.dumps({"n": n}))
            for n in range(2)
        ]
        outputs = [_finished(sfn, run["executionArn"]).get("output") for run in runs]
    assert [json.loads(out) for out in outputs] == [{"n": 0}, {"n": 1}]


def _counting(lexer: type, calls: list[str]) -> type:
    class Counting(lexer):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object) -> None:
            calls.append("lexed")
            super().__init__(*args)

    return Counting


def _finished(sfn: object, arn: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        description = sfn.describe_execution(executionArn=arn)  # type: ignore[attr-defined]
        if description["status"] != "RUNNING":
            return description
        time.sleep(0.05)
    raise AssertionError(f"{arn} still running after 10 s")
