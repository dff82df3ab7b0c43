"""Template resolution: intrinsics, conditions, parameters and overrides, SAM globals,
layers and the /opt mapping, the state machine definition, events and routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcloud.cloudformation.intrinsics import Pseudo, Resolver, TemplateError, resolve_parameters
from localcloud.cloudformation.template import resolve_stack

FIXTURE = Path(__file__).parents[1] / "fixtures" / "stack"
REPO = Path(__file__).resolve().parents[3]


def fixture_stack(**overrides: object):
    return resolve_stack(
        FIXTURE / "template.yaml", region="eu-west-1", stack_name="fx", overrides=overrides
    )


class _Names:
    def ref(self, logical_id: str) -> str:
        return f"ref:{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        return f"att:{logical_id}.{attribute}"


def resolver(template: dict | None = None, **parameters: object) -> Resolver:
    return Resolver(
        template or {}, parameters, Pseudo(region="eu-west-1", stack_name="s"), _Names()
    )


def test_sub_resolves_pseudo_parameters_refs_attributes_variables_and_escapes() -> None:
    r = resolver(P="p")
    text = "${AWS::StackName}/${AWS::Region}/${AWS::AccountId}/${AWS::Partition}/${P}/${B}/${B.Arn}"
    assert r.value({"Fn::Sub": text}) == "s/eu-west-1/123456789012/aws/p/ref:B/att:B.Arn"
    assert r.value({"Fn::Sub": ["${X}-${!Literal}", {"X": {"Ref": "P"}}]}) == "p-${Literal}"
    assert r.value({"Fn::Sub": "${AWS::URLSuffix}"}) == "amazonaws.com"


def test_conditions_if_and_no_value() -> None:
    template = {
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
            "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
            "Both": {"Fn::And": [{"Condition": "NotProd"}, {"Fn::Equals": ["a", "a"]}]},
        }
    }
    r = resolver(template, Stage="dev")
    assert r.condition("NotProd") and r.condition("Both") and not r.condition("IsProd")
    node = {
        "A": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]},
        "B": [1, {"Ref": "AWS::NoValue"}],
    }
    assert r.value(node) == {"B": [1]}


def test_join_select_split_find_in_map() -> None:
    r = resolver({"Mappings": {"M": {"k": {"v": 42}}}})
    assert (
        r.value({"Fn::Join": ["-", ["a", {"Fn::Select": [1, {"Fn::Split": [",", "x,y"]}]}]]})
        == "a-y"
    )
    assert r.value({"Fn::FindInMap": ["M", "k", "v"]}) == 42
    with pytest.raises(TemplateError, match="FindInMap"):
        r.value({"Fn::FindInMap": ["M", "nope", "v"]})
    with pytest.raises(TemplateError, match="not supported"):
        r.value({"Fn::ImportValue": "x"})


def test_parameters_defaults_overrides_and_constraints() -> None:
    declared = {
        "Stage": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]},
        "Count": {"Type": "Number", "Default": 2, "MinValue": 1},
    }
    assert resolve_parameters(declared, {}) == {"Stage": "dev", "Count": "2"}
    assert resolve_parameters(declared, {"Count": 5})["Count"] == "5"
    with pytest.raises(TemplateError, match=r"Stage.*not one of"):
        resolve_parameters(declared, {"Stage": "qa"})
    with pytest.raises(TemplateError, match="below MinValue"):
        resolve_parameters(declared, {"Count": 0})
    with pytest.raises(TemplateError, match="not a number"):
        resolve_parameters(declared, {"Count": "many"})
    with pytest.raises(TemplateError, match="not declared"):
        resolve_parameters(declared, {"Typo": 1})


def test_function_settings_come_from_the_template_with_globals_merged() -> None:
    stack = fixture_stack()
    worker = stack.function("WorkerFunction")
    assert worker.timeout == 5 and worker.memory_mb == 256  # Ref parameter, FindInMap
    assert worker.handler == "app.lambda_handler" and worker.runtime == "python3.13"
    assert worker.environment["STAGE"] == "dev"  # Globals variables merged in
    assert worker.environment["ROLE"] == "worker"
    assert worker.environment["TOPIC"] == "none"  # condition false
    assert worker.environment["SUB"] == "fx/eu-west-1/123456789012/aws/amazonaws.com"
    bucket = stack.of_type("AWS::S3::Bucket")[0]
    assert worker.environment["BUCKET"] == bucket.name
    assert worker.environment["BUCKET_ARN"] == f"arn:aws:s3:::{bucket.name}"
    assert worker.environment["TABLE_NAME"] == stack.of_type("AWS::DynamoDB::Table")[0].name
    # Globals layers first, then the function's own
    assert [layer.logical_id for layer in worker.layers] == ["SharedLayer", "DataLayer"]
    hello = stack.function("HelloFunction")
    assert hello.reserved_concurrency == 1 and hello.timeout == 10
    assert "DATA_DIR" not in hello.environment


def test_overrides_flow_into_functions_conditions_and_resources() -> None:
    stack = fixture_stack(Stage="prod", WorkerTimeout=7)
    worker = stack.function("WorkerFunction")
    assert worker.timeout == 7 and worker.memory_mb == 1024
    topic = stack.of_type("AWS::SNS::Topic")[0]
    assert worker.environment["TOPIC"] == topic.arn
    assert not fixture_stack().of_type("AWS::SNS::Topic")  # Condition: IsProd


def test_opt_paths_map_to_the_layer_directories() -> None:
    worker = fixture_stack().function("WorkerFunction")
    data = FIXTURE / "layers" / "data"
    assert worker.environment["DATA_DIR"] == str(data)
    assert worker.environment["DATA_FILE"] == str(data / "greeting.txt")
    shared = next(layer for layer in worker.layers if layer.logical_id == "SharedLayer")
    assert shared.python_layer and shared.sys_path == FIXTURE / "layers" / "shared"


def test_state_machine_definition_is_substituted_and_rule_resolved() -> None:
    stack = fixture_stack(DatasetPattern="incoming/*.zip")
    (machine,) = stack.state_machines
    definition = json.loads(machine.definition)
    work = definition["States"]["Work"]
    assert work["Parameters"]["FunctionName"] == stack.function("WorkerFunction").arn
    assert work["Retry"][0]["MaxAttempts"] == 2  # a number placeholder, substituted raw
    (rule,) = stack.rules
    assert rule.target_arn == machine.arn
    assert rule.pattern["detail"]["object"]["key"] == [{"wildcard": "incoming/*.zip"}]
    assert rule.pattern["detail"]["bucket"]["name"] == [stack.of_type("AWS::S3::Bucket")[0].name]


def test_routes_from_http_api_events() -> None:
    routes = fixture_stack().function("HelloFunction").routes
    assert [r.route_key for r in routes] == ["POST /hello", "GET /items/{id}"]
    assert all(r.payload_format == "2.0" and r.timeout_ms == 30000 for r in routes)


def test_names_are_stable_and_follow_cloudformation() -> None:
    first, second = fixture_stack(), fixture_stack()
    assert [f.name for f in first.functions] == [f.name for f in second.functions]
    bucket = first.of_type("AWS::S3::Bucket")[0].name
    assert bucket == bucket.lower() and bucket.startswith("fx-databucket-") and len(bucket) <= 63
    roles = {r.logical_id for r in first.of_type("AWS::IAM::Role")}
    assert {"WorkerFunctionRole", "HelloFunctionRole", "PipelineRole"} <= roles


def _write_template(tmp_path: Path, resources: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"
        f"Resources:\n{resources}"
    )
    return path


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ("  Q:\n    Type: AWS::Kinesis::Stream\n", "AWS::Kinesis::Stream is not supported"),
        (
            "  F:\n    Type: AWS::Serverless::Function\n    Properties:\n"
            "      CodeUri: missing/\n      Handler: app.handler\n      Runtime: python3.13\n",
            "CodeUri.*does not exist",
        ),
        (
            "  F:\n    Type: AWS::Serverless::Function\n    Properties:\n"
            "      CodeUri: .\n      Handler: app.handler\n      Runtime: nodejs20.x\n",
            "nodejs20.x does not run locally",
        ),
        (
            "  F:\n    Type: AWS::Serverless::Function\n    Properties:\n"
            "      CodeUri: .\n      Handler: app.handler\n      Runtime: python3.13\n"
            "      Environment: {Variables: {D: /opt/data}}\n",
            "cannot map /opt/data",
        ),
        (
            "  F:\n    Type: AWS::Serverless::Function\n    Properties:\n"
            "      CodeUri: .\n      Handler: app.handler\n      Runtime: python3.13\n"
            "      Events: {S: {Type: SQS, Properties: {Queue: q}}}\n",
            "event S of type SQS",
        ),
        ("  B:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: !Ref Nope\n", "Nope"),
    ],
)
def test_unsupported_or_broken_templates_name_the_problem(
    tmp_path: Path, resources: str, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        resolve_stack(_write_template(tmp_path, resources), region="us-east-1", stack_name="s")


def test_missing_definition_substitution_is_reported(tmp_path: Path) -> None:
    (tmp_path / "sm.json").write_text('{"StartAt": "A", "States": {"A": {"Type": "Task", '
                                      '"Resource": "${Missing}", "End": true}}}')  # fmt: skip
    resources = (
        "  M:\n    Type: AWS::Serverless::StateMachine\n    Properties:\n"
        "      DefinitionUri: sm.json\n"
    )
    with pytest.raises(TemplateError, match=r"no DefinitionSubstitutions for \['Missing'\]"):
        resolve_stack(_write_template(tmp_path, resources), region="us-east-1", stack_name="s")


def test_the_project_template_resolves_for_local_runs() -> None:
    from localcloud.cloudformation.template import load_overrides
    from localcloud.runtime.settings import DEFAULT_PARAMETERS

    stack = resolve_stack(
        REPO / "template.yaml",
        region="us-east-1",
        stack_name="imgcls",
        overrides=load_overrides(DEFAULT_PARAMETERS),
    )
    start = stack.function("StartTrainingFunction")
    assert start.environment["TRAINING_CODE_DIR"] == str(REPO / "training")
    assert stack.function("ClassifyFunction").routes[0].route_key == "POST /classify"
    (machine,) = stack.state_machines
    assert machine.name == "imgcls-train-deploy"
    assert "${" not in machine.definition
    # the data-set upload and the model package approval both start the state machine
    uploads, approvals = stack.rules
    assert uploads.target_arn == approvals.target_arn == machine.arn
    assert approvals.pattern["detail"]["ModelPackageGroupName"] == ["imgcls-models"]
    assert [r.type for r in stack.resources if r.type.startswith("AWS::SageMaker")] == [
        "AWS::SageMaker::ModelPackageGroup"
    ]
    # the canary's rollback alarms exist locally (UpdateEndpoint checks them)
    alarms = {r.name: r.properties for r in stack.resources if r.type == "AWS::CloudWatch::Alarm"}
    assert {"imgcls-endpoint-5xx", "imgcls-model-latency", "imgcls-classify-errors"} <= set(alarms)
    assert alarms["imgcls-model-latency"]["Threshold"] == "2000000"  # microseconds
    rollback = stack.function("PrepareRunFunction").environment
    assert rollback["ROLLBACK_ALARM_NAMES"].split(",") == [
        "imgcls-endpoint-5xx",
        "imgcls-model-latency",
        "imgcls-classify-errors",
    ]
