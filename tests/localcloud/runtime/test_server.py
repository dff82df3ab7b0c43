"""The local cloud process on a fixture stack: deploy through the AWS APIs, the S3 trigger,
real handlers under the state machine (Retry/Catch on errorType), history archive,
function logs in CloudWatch Logs, and a clean stop."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud.runtime import launcher, processes
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LaunchError, LocalCloudProcess
from localcloud.runtime.settings import Settings
from localcloud.runtime.statefile import read_state
from tests.data_helpers import held_port
from tests.localcloud.cloud_support import start_error, started

FIXTURE = Path(__file__).parents[1] / "fixtures" / "stack"


def settings(state_dir: Path, **parameters: str) -> Settings:
    return Settings(
        template=FIXTURE / "template.yaml",
        parameters_file=None,
        parameter_overrides=tuple(f"{k}={v}" for k, v in parameters.items()),
        state_dir=state_dir,
        stack_name="fx",
    )


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    with started(settings(tmp_path_factory.mktemp("cloud"))) as process:
        yield process


@pytest.fixture(scope="module")
def conn(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


def wait_execution(conn: Connection, arn: str, timeout: float = 60) -> dict[str, Any]:
    sfn = conn.client("stepfunctions")
    assert processes.wait_until(
        lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", timeout
    )
    return sfn.describe_execution(executionArn=arn)


def executions(conn: Connection) -> list[dict[str, Any]]:
    sfn = conn.client("stepfunctions")
    return sfn.list_executions(stateMachineArn=conn.the_state_machine())["executions"]


def test_template_resources_exist_in_the_local_cloud(conn: Connection) -> None:
    names = [f["FunctionName"] for f in conn.client("lambda").list_functions()["Functions"]]
    assert sorted(n.split("-")[1] for n in names) == ["HelloFunction", "WorkerFunction"]
    assert len(conn.client("dynamodb").list_tables()["TableNames"]) == 1
    rules = conn.client("events").list_rules()["Rules"]
    assert len(rules) == 1 and json.loads(rules[0]["EventPattern"])["source"] == ["aws.s3"]
    targets = conn.client("events").list_targets_by_rule(Rule=rules[0]["Name"])["Targets"]
    assert [t["Arn"] for t in targets] == [conn.the_state_machine()]


def test_one_upload_starts_exactly_one_execution_and_others_none(conn: Connection) -> None:
    s3 = conn.client("s3")
    before = len(executions(conn))
    s3.put_object(Bucket=conn.the_bucket(), Key="models/x.tar.gz", Body=b"x")
    s3.put_object(Bucket=conn.the_bucket(), Key="datasets/notes.txt", Body=b"x")
    s3.put_object(Bucket=conn.the_bucket(), Key="datasets/one.tar.gz", Body=b"data")
    # the local S3 delivers to EventBridge within PutObject
    # (localcloud/services/events/s3_events.py): once the puts returned, every execution they start
    # has started
    started = executions(conn)[: len(executions(conn)) - before]
    assert len(started) == 1
    description = wait_execution(conn, started[0]["executionArn"])
    assert description["status"] == "SUCCEEDED"
    event = json.loads(description["input"])
    assert event["detail"]["object"]["key"] == "datasets/one.tar.gz"
    output = json.loads(description["output"])["result"]
    assert output["input"] == event  # the real handler saw the S3 event
    assert output["layer"] == "shared"


def test_handler_errors_drive_retry_and_catch(conn: Connection, cloud: LocalCloudProcess) -> None:
    sfn = conn.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=conn.the_state_machine(), input=json.dumps({"action": "fail"})
    )["executionArn"]
    description = wait_execution(conn, arn)
    assert description["status"] == "SUCCEEDED"  # caught -> Recovered
    events = sfn.get_execution_history(executionArn=arn)["events"]
    failures = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert [f["error"] for f in failures] == ["Flaky"] * 3  # 1 + MaxAttempts 2
    assert json.loads(failures[0]["cause"])["errorMessage"] == "the worker failed on purpose"
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]
    assert entered == ["Work", "Recovered"]
    error = json.loads(description["output"])["error"]
    assert error["Error"] == "Flaky"
    archived = (
        cloud.settings.state_dir / "executions" / arn.split(":")[-2] / f"{arn.split(':')[-1]}.json"
    )
    assert processes.wait_until(archived.exists, timeout=10)
    record = json.loads(archived.read_text())
    assert record["execution"]["status"] == "SUCCEEDED"
    assert [e["type"] for e in record["events"]] == [e["type"] for e in events]


def test_direct_invoke_and_function_logs(conn: Connection, cloud: LocalCloudProcess) -> None:
    lam = conn.client("lambda")
    name = next(
        f["FunctionName"]
        for f in lam.list_functions()["Functions"]
        if "Worker" in f["FunctionName"]
    )
    reply = lam.invoke(FunctionName=name, Payload=json.dumps({"action": "log"}))
    assert "FunctionError" not in reply
    assert json.loads(reply["Payload"].read())["context"]["function_name"] == name
    failed = lam.invoke(FunctionName=name, Payload=json.dumps({"action": "fail"}))
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "Flaky"
    logs = conn.client("logs")

    def logged() -> bool:
        found = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        return any("a line from the handler" in e["message"] for e in found)

    assert processes.wait_until(logged, timeout=10)
    log_file = cloud.settings.state_dir / "logs" / "lambda" / f"{name}.log"
    assert "a line from the handler" in log_file.read_text()


def test_functions_run_as_their_role_and_iam_is_enforced(
    conn: Connection, cloud: LocalCloudProcess
) -> None:
    assert cloud.state["iam"] == "enforced"
    lam = conn.client("lambda")
    worker = next(f for f in lam.list_functions()["Functions"] if "Worker" in f["FunctionName"])
    event = {"env_keys": ["AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"]}
    reply = lam.invoke(FunctionName=worker["FunctionName"], Payload=json.dumps(event))
    env = json.loads(reply["Payload"].read())["env"]
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA") and env["AWS_SESSION_TOKEN"]
    # the worker's role has no permission of its own: its S3 read is denied, as on AWS
    import boto3

    as_worker = boto3.client(
        "s3",
        endpoint_url=conn.endpoint_url,
        region_name=conn.region,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key="any",
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )
    with pytest.raises(ClientError) as denied:
        as_worker.get_object(Bucket=conn.the_bucket(), Key="datasets/one.tar.gz")
    message = denied.value.response["Error"]["Message"]
    role = worker["Role"].rsplit("/", 1)[-1]
    assert message.startswith(f"User: arn:aws:sts::123456789012:assumed-role/{role}/")
    assert "perform: s3:GetObject on resource" in message
    # the roles carry the policies that are enforced (the state machine's LambdaInvokePolicy)
    iam = conn.client("iam")
    role = next(r["RoleName"] for r in iam.list_roles()["Roles"] if "PipelineRole" in r["RoleName"])
    policy = iam.get_role_policy(RoleName=role, PolicyName="PipelineRolePolicy0")
    assert "lambda:InvokeFunction" in json.dumps(policy["PolicyDocument"])


def test_second_cloud_on_the_same_state_dir_is_refused(cloud: LocalCloudProcess) -> None:
    with pytest.raises(LaunchError, match="already running") as refused:
        LocalCloudProcess(cloud.settings).start()
    # it names the process the user started (here: this test), not the server it spawned
    assert f"pid {os.getpid()} started by `" in str(refused.value)
    assert cloud.proc is not None and str(cloud.proc.pid) not in str(refused.value)


def test_template_errors_are_reported_and_nothing_is_left(tmp_path: Path) -> None:
    process = LocalCloudProcess(settings(tmp_path, Stage="qa"))
    with pytest.raises(LaunchError, match="Stage: 'qa' is not one of"):
        process.start()
    assert process.proc is None or process.proc.poll() is not None


def test_stop_leaves_no_process_and_no_state_file(tmp_path: Path) -> None:
    process = LocalCloudProcess(settings(tmp_path))
    conn = process.start()
    try:
        assert process.proc is not None
        lam = conn.client("lambda")
        name = next(f["FunctionName"] for f in lam.list_functions()["Functions"])
        lam.invoke(FunctionName=name, Payload=b"{}")  # starts a worker process
        started = [process.proc.pid, *processes.descendants(process.proc.pid)]
        assert len(started) > 1  # the server and its worker(s)
    finally:
        server = process.proc
        process.stop()
    assert read_state(tmp_path) is None
    assert not (tmp_path / "localcloud.json").exists()
    assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == []
    # a clean exit without the interpreter's teardown, its log written to the end
    assert server is not None and server.returncode == 0
    assert process.log_path.read_text().rstrip().endswith("localcloud stopped")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with held_port() as port:
        yield port


@pytest.mark.parametrize("option", ["--port", "--api-port"])
def test_server_on_a_taken_port_exits_at_once_naming_it(
    option: str, taken_port: int, tmp_path: Path
) -> None:
    # before: moto's server thread died on the bind and the server waited for it forever
    ports = {"port": taken_port} if option == "--port" else {"api_port": taken_port}
    argv = dataclasses.replace(settings(tmp_path), **ports).server_argv()
    proc = processes.spawn(
        [sys.executable, "-m", "localcloud.runtime.server", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],  # the repository
    )
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        processes.stop(proc)
    lines = err.decode(errors="replace").splitlines()
    assert proc.returncode == 2, lines[-20:]
    assert "Traceback" not in "\n".join(lines)
    reasons = [line for line in lines if line.startswith("localcloud: ")]  # what people read
    assert reasons == [
        f"localcloud: {option} {taken_port}: the port is not free (Address already in use); "
        "pick another or leave it out for a free one"
    ]
    assert read_state(tmp_path) is None


def test_launcher_reports_the_servers_port_error(
    taken_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the port taken after the launcher's own check (a race): the server's line comes through
    monkeypatch.setattr(launcher, "_check_port_free", lambda option, port: None)
    message = start_error(dataclasses.replace(settings(tmp_path), port=taken_port), timeout=90)
    assert message.startswith(
        f"the local cloud exited (2): --port {taken_port}: the port is not free"
    )


def test_cloudformation_describes_the_deployed_stack(cloud: LocalCloudProcess) -> None:
    """Scripts written for AWS find the stack as they do there: its outputs and parameters
    with describe-stacks, its resources by logical id (SAM's integration-test way)."""
    conn, state = cloud.connection, cloud.state
    assert conn is not None and state is not None
    cfn = conn.client("cloudformation")
    stack = cfn.describe_stacks(StackName="fx")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert stack["StackId"].startswith("arn:aws:cloudformation:us-east-1:123456789012:stack/fx/")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == state["outputs"]
    assert outputs["BucketName"] == conn.the_bucket()
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters.keys() == state["parameters"].keys()
    assert cfn.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackName"] == "fx"

    listed = cfn.list_stack_resources(StackName="fx")["StackResourceSummaries"]
    by_id = {r["LogicalResourceId"]: r for r in listed}
    assert by_id["Pipeline"]["ResourceType"] == "AWS::StepFunctions::StateMachine"
    assert by_id["Pipeline"]["PhysicalResourceId"] == conn.the_state_machine()
    assert by_id["DataBucket"]["PhysicalResourceId"] == conn.the_bucket()
    assert by_id["HelloFunction"]["ResourceType"] == "AWS::Lambda::Function"
    detail = cfn.describe_stack_resource(StackName="fx", LogicalResourceId="HelloFunction")
    name = detail["StackResourceDetail"]["PhysicalResourceId"]
    assert conn.client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionName"]
    described = cfn.describe_stack_resources(StackName="fx", LogicalResourceId="Pipeline")
    assert [r["LogicalResourceId"] for r in described["StackResources"]] == ["Pipeline"]

    with pytest.raises(ClientError, match="does not exist"):
        cfn.describe_stacks(StackName="not-this-one")


def test_moto_log_records_are_one_line_in_server_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    from localcloud.runtime.server import MOTO_LINE, OneLineFromMoto

    monkeypatch.delenv("LOCALCLOUD_DEBUG", raising=False)
    cause = json.dumps({"errorMessage": "boom", "stackTrace": ["  File x\n    raise\n"] * 200})
    record = logging.LogRecord(
        "moto.stepfunctions.parser", logging.ERROR, __file__, 1,
        "Stepfunctions computation ended with exception '%s'.", (cause,), None,
    )  # fmt: skip
    assert OneLineFromMoto().filter(record)
    line = record.getMessage()
    assert "\n" not in line and len(line) == MOTO_LINE and line.endswith("...")
    ours = logging.LogRecord("localcloud", logging.INFO, __file__, 1, "a\nb", (), None)
    OneLineFromMoto().filter(ours)
    assert ours.getMessage() == "a\nb"  # the local cloud's own lines are left alone
