"""The whole deployment in this process, cheap enough to run hundreds of times: helpers of
test_invariants.py and bench/invariants.py.

The real template is resolved and deployed into ``mock_aws`` (bucket, lock table, model
package group, alarms, the state machine with the real ASL, its EventBridge rules); moto's
Step Functions interpreter runs the state machine; the Lambda functions are the real
handlers, called in this process by ``InProcessLambda`` (which can inject one fault into a
function's next invocation); the local SageMaker runs training jobs and endpoints for
real, but the training job is ``FAKE_TRAIN`` (it writes the model described by the data
set's ``spec.json`` at once, no learning) and the model servers are ``FAKE_CLASSIFIER``
(the serving contract in a few lines). An upload to S3 starts a run through the real
trigger; approving a version starts a deploy-only run through the real approval rule.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.s3 import notifications as s3_notifications
from moto.sagemaker.models import SageMakerModelBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
    StateTaskLambda,
)

import localcloud.services.sagemaker as local_sagemaker
from localcloud.cloudformation.deployer import deploy
from localcloud.cloudformation.stack import Function, Stack
from localcloud.cloudformation.template import resolve_stack
from localcloud.runtime import moto_hooks
from localcloud.services.lambda_.worker_pool import InvokeResult, Throttled
from localcloud.services.sagemaker import model_registry
from localcloud.services.stepfunctions import wait_wakeup
from mlops.aws import client as aws_client
from tests.conftest import REGION, REPO, FakeLambdaContext, load_handler

STACK = "inv"
# Real seconds per second of the local SageMaker's clock: a 60 s canary wait is 0.3 s.
TIME_SCALE = 0.005
# The longest a Wait state waits here (real seconds). The state machine's Waits are polls
# (training job, endpoint, lock) and its deadlines are minutes away, so shorter polls change
# no outcome, only how soon it is seen: the 1 s minimum poll made most of a run's time.
WAIT_CAP_S = 0.1
PARAMETERS = {
    "TrainingInstanceCount": "1",
    "MinValidationAccuracy": "0.5",
    "SmokeTestMinAccuracy": "0.5",
    "PollIntervalSeconds": "3",  # the least that fits a canary (mlops/run_plan.py)
    "DeploymentLockWaitSeconds": "1",
    "DeploymentLockMaxAttempts": "3",
    "RolloutWaitSeconds": "60",
    "RolloutBakingSeconds": "60",
    "EndpointInitialInstanceCount": "2",
    "AutoscalingMinCapacity": "2",
    "AutoscalingMaxCapacity": "3",
}
# How one invocation of a function goes wrong (InProcessLambda.inject):
# error: the handler raises before doing anything; timeout: the function is killed before
# it does anything (Sandbox.Timedout); lost: the handler does all its work, then the
# response is lost (Sandbox.Timedout: the AWS calls it made stand); throttle: Lambda
# refuses the invocation (TooManyRequestsException, which the ASL retries); stop: the
# handler does its work, then the execution is stopped (StopExecution mid-state).
FAULTS = ("error", "timeout", "lost", "throttle", "stop")

# A training job that learns nothing: the data set's spec.json says what model it makes.
FAKE_TRAIN = r"""
import glob, json, os, tarfile
channel = os.environ["SM_CHANNEL_TRAINING"]
archive = sorted(glob.glob(os.path.join(channel, "**", "*.tar.gz"), recursive=True))[0]
with tarfile.open(archive) as tar:
    spec = json.load(tar.extractfile("spec.json"))
model_dir = os.environ["SM_MODEL_DIR"]
model = {"version": spec["version"], "num_classes": 2, "classes": ["cat", "dog"],
         "answers": spec.get("answers", "right"), "fail_every": spec.get("fail_every", 0),
         "test_acc": spec["test_acc"]}
if spec.get("corrupt"):
    model["broken"] = True
png = b"\x89PNG\r\n\x1a\n"
items = [{"image": __import__("base64").b64encode(png + bytes([i])).decode(), "index": i,
          "content_type": "image/png"} for i in (0, 1)]
with open(os.path.join(model_dir, "model.json"), "w") as f:
    json.dump(model, f)
os.makedirs(os.path.join(model_dir, "code"), exist_ok=True)
open(os.path.join(model_dir, "code", "inference.py"), "w").close()
with open(os.path.join(model_dir, "smoke_set.json"), "w") as f:
    json.dump({"items": items}, f)
champion = os.environ.get("SM_CHANNEL_CHAMPION")
if champion:
    try:
        with tarfile.open(sorted(glob.glob(os.path.join(champion, "*.tar.gz")))[0]) as tar:
            live = json.load(tar.extractfile("model.json"))
        if live.get("broken"):
            raise ValueError("unexpected EOF in model.pth")
        print(f"[champion] champion_acc={live['test_acc']:.6f} images=2", flush=True)
    except (OSError, IndexError, KeyError, ValueError, tarfile.TarError) as exc:
        print(f"[champion] not scored: the champion cannot be loaded ({exc})", flush=True)
print(f"[metrics] epoch=1 valid_acc={spec['valid_acc']:.4f} test_acc={spec['test_acc']:.4f}",
      flush=True)
"""

# A model server with serve.py's contract; the image's last byte is its class, which the
# model answers (``answers: right``) or not (``wrong``); ``fail_every``: HTTP 500 on every
# n-th request; ``broken``: it cannot load its model and exits.
FAKE_CLASSIFIER = r"""
import argparse, itertools, json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
parser = argparse.ArgumentParser()
for flag in ("--model-dir", "--host", "--port"):
    parser.add_argument(flag)
args = parser.parse_args()
with open(os.path.join(args.model_dir, "model.json")) as f:
    model = json.load(f)
if model.get("broken"):
    print("cannot load model.pth: unexpected EOF", file=sys.stderr)
    sys.exit(3)
counter = itertools.count(1)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        label = body[-1] % 2 if body else 0
        index = label if model["answers"] == "right" else 1 - label
        logits = [1.0 if i == index else 0.0 for i in range(2)]
        reply = {"version": model["version"], "logits": [logits],
                 "predictions": [{"index": index, "label": model["classes"][index],
                                  "probability": 0.9}]}
        every = model.get("fail_every", 0)
        status = 500 if every and next(counter) % every == 0 else 200
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
"""


@dataclass(frozen=True)
class DataSet:
    """What a data set's fake training makes: a model named ``version`` with these scores."""

    version: str
    valid_acc: float = 0.9
    test_acc: float = 0.9
    answers: str = "right"  # "wrong": the smoke test fails
    fail_every: int = 0  # 1: every request 500s (the canary's 5xx alarm)
    corrupt: bool = False  # the model server cannot load the artifact

    @property
    def deployable(self) -> bool:
        """Passes the absolute gate and would pass its smoke test and canary."""
        return (
            self.valid_acc >= 0.5
            and self.answers == "right"
            and not (self.fail_every or self.corrupt)
        )

    def archive(self) -> bytes:
        spec = json.dumps(self.__dict__).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo("spec.json")
            info.size = len(spec)
            tar.addfile(info, io.BytesIO(spec))
        return buffer.getvalue()


class InProcessLambda:
    """The stack's functions as their real handlers, invoked in this process; the runtime
    ``moto_patches.install_lambda`` expects. ``inject`` makes one function's next
    invocation fail in one of the ``FAULTS`` ways."""

    def __init__(self, stack: Stack, on_stop: Callable[[str], None]) -> None:
        self._functions = {fn.name: fn for fn in stack.functions}
        self._modules: dict[str, ModuleType] = {}
        self._faults: dict[str, str] = {}
        self._lock = threading.Lock()
        self._on_stop = on_stop
        self.injected: list[tuple[str, str]] = []  # (function, fault) that happened

    def inject(self, function: str, fault: str) -> None:
        """``function``: its code folder's name (deploy_model)."""
        with self._lock:
            self._faults[function] = fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pool(self, name: str) -> Any:
        class _Pool:
            def reserve(self, concurrency: Any) -> None:
                pass

        return _Pool()

    def _handler(self, fn: Function) -> ModuleType:
        with self._lock:
            if fn.name not in self._modules:
                self._modules[fn.name] = load_handler(fn.code_dir.name)
            return self._modules[fn.name]

    def invoke(self, name: str, payload: bytes) -> InvokeResult:
        fn = self._functions[name]
        short = fn.code_dir.name
        with self._lock:
            fault = self._faults.pop(short, None)
        if fault:
            self.injected.append((short, fault))
        if fault == "throttle":
            raise Throttled(f"{name} is at its concurrency limit (injected)")
        if fault == "error":
            return _error("InjectedFault", f"{short} failed (injected fault)")
        if fault == "timeout":
            return _error("Sandbox.Timedout", f"Task timed out after {fn.timeout:.2f} seconds")
        result = self._call(fn, payload)
        if fault == "lost":
            return _error("Sandbox.Timedout", f"Task timed out after {fn.timeout:.2f} seconds")
        if fault == "stop":  # the execution whose state this is (its input names it)
            execution = json.loads(payload or b"{}").get("execution_arn")
            if execution:
                self._on_stop(execution)
        return result

    def _call(self, fn: Function, payload: bytes) -> InvokeResult:
        module = self._handler(fn)
        context = FakeLambdaContext(
            function_name=fn.name,
            invoked_function_arn=fn.arn,
            remaining_millis=int(fn.timeout * 1000),
        )
        try:
            reply = module.lambda_handler(json.loads(payload or b"{}"), context)
        except Exception as exc:  # what the Python runtime reports for an unhandled error
            return _error(type(exc).__name__, str(exc))
        return InvokeResult(json.dumps(reply).encode())


def _error(error_type: str, message: str) -> InvokeResult:
    body = {"errorMessage": message, "errorType": error_type}
    return InvokeResult(json.dumps(body).encode(), error_type)


@contextlib.contextmanager
def _restored(*targets: tuple[Any, str]) -> Iterator[None]:
    """Put each (owner, attribute) back as it was on exit: the local cloud's moto patches
    are process-wide, and other tests in this process run stock moto."""
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name in targets]
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def fake_code_dir(root: Path) -> Path:
    """The training code StartTraining uploads: FAKE_TRAIN as train.py, the real metric
    definitions (the regexes the champion and quality gates read)."""
    code = root / "training-code"
    (code / "imgcls").mkdir(parents=True, exist_ok=True)
    (code / "train.py").write_text(FAKE_TRAIN)
    (code / "inference.py").write_text("")
    (code / "imgcls" / "__init__.py").write_text("")
    shutil.copy(REPO / "training" / "metric_definitions.json", code)
    return code


@dataclass
class Cloud:
    """A deployed stack in this process, and what a test does to it and reads from it."""

    stack: Stack
    runtime: InProcessLambda
    root: Path
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=REGION)
        return self.clients[service]

    @property
    def machine(self) -> str:
        return self.stack.state_machines[0].arn

    @property
    def bucket(self) -> str:
        return next(r.name for r in self.stack.of_type("AWS::S3::Bucket"))

    @property
    def endpoint(self) -> str:
        return str(self.stack.parameters["EndpointName"])

    @property
    def group(self) -> str:
        return next(r.name for r in self.stack.of_type("AWS::SageMaker::ModelPackageGroup"))

    @property
    def lock_table(self) -> str:
        return next(r.name for r in self.stack.of_type("AWS::DynamoDB::Table"))


def executions(cloud: Cloud, status: str | None = None) -> list[dict[str, Any]]:
    kwargs = {"statusFilter": status} if status else {}
    sfn = cloud.client("stepfunctions")
    return sfn.list_executions(stateMachineArn=cloud.machine, maxResults=1000, **kwargs)[
        "executions"
    ]


def stop(cloud: Cloud, execution: str) -> None:
    """StopExecution (the ``stop`` fault); nothing if it has ended (or, moto's
    AttributeError, has not begun to run yet: it then runs to its end)."""
    with contextlib.suppress(ClientError, AttributeError):
        cloud.client("stepfunctions").stop_execution(
            executionArn=execution, cause="stopped by the test"
        )


def stop_running(cloud: Cloud) -> None:
    """StopExecution of every running execution (the end of a sequence)."""
    for execution in executions(cloud, "RUNNING"):
        stop(cloud, execution["executionArn"])


@contextlib.contextmanager
def in_process_cloud(root: Path, **overrides: str) -> Iterator[Cloud]:
    """The stack deployed under ``mock_aws`` with the local SageMaker; on exit every
    training and model-server process is stopped and the patches are reverted."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    serve = root / "fake_classifier.py"
    serve.write_text(FAKE_CLASSIFIER)
    stack = resolve_stack(
        REPO / "template.yaml",
        region=REGION,
        stack_name=STACK,
        overrides={**PARAMETERS, **overrides},
    )
    code = fake_code_dir(root)
    holder: dict[str, Cloud] = {}
    runtime = InProcessLambda(stack, lambda execution: stop(holder["cloud"], execution))
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    environment = {k: v for fn in stack.functions for k, v in fn.environment.items()}
    environment.update(
        TRAINING_CODE_DIR=str(code),
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        POWERTOOLS_SERVICE_NAME="train-deploy",
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_METRICS_DISABLED="true",
    )
    # credentials of the fake account; no endpoint of a running local cloud (moto would
    # not intercept calls sent there)
    environment.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing"
    )
    saved_env = {k: os.environ.get(k) for k in (*environment, "AWS_ENDPOINT_URL", "AWS_PROFILE")}
    patched = (
        (LambdaSimpleBackend, "invoke"),
        (StateTaskLambda, "_from_error"),
        (s3_notifications, "_send_event_bridge_message"),
        (SageMakerModelBackend, "create_model"),
        (SageMakerModelBackend, "create_model_package"),
        (SageMakerModelBackend, "update_model_package"),
        (StepFunctionsParserBackend, "start_execution"),
        (wait_wakeup, "wait"),
    )
    try:
        with _restored(*patched), mock_aws(config=config):  # type: ignore[arg-type]
            os.environ.update(environment)
            for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
                os.environ.pop(name, None)
            aws_client.cache_clear()  # the handlers' clients, made for this account
            moto_hooks.install_lambda(runtime)  # type: ignore[arg-type]
            moto_hooks.install_trigger()
            moto_hooks.install_execution_names()
            model_registry.install()
            wait_wakeup.install()
            wake_wait = wait_wakeup.wait
            wait_wakeup.wait = lambda env, seconds: wake_wait(env, min(seconds, WAIT_CAP_S))
            local_sagemaker.install(
                root / "sagemaker", serve_command=(str(serve),), time_scale=TIME_SCALE
            )
            cloud = holder["cloud"] = Cloud(stack, runtime, root)
            deploy(stack, cloud.client)
            try:
                yield cloud
            finally:
                stop_running(cloud)
                wait_quiet(cloud, timeout=30)
    finally:
        local_sagemaker.uninstall()
        wait_wakeup.uninstall()
        aws_client.cache_clear()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_quiet(cloud: Cloud, timeout: float = 60) -> None:
    """Every execution has ended (bounded)."""
    deadline = time.monotonic() + timeout
    while executions(cloud, "RUNNING"):
        assert time.monotonic() < deadline, f"executions still running after {timeout} s"
        time.sleep(0.05)


def upload(cloud: Cloud, data: DataSet, key: str) -> None:
    cloud.client("s3").put_object(Bucket=cloud.bucket, Key=key, Body=data.archive())


def model_of(cloud: Cloud, artifact: str) -> dict[str, Any]:
    """model.json of a model.tar.gz in S3 (``{}`` if unreadable)."""
    bucket, key = artifact.removeprefix("s3://").split("/", 1)
    body = cloud.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            member = tar.extractfile("model.json")
            return json.load(member) if member else {}
    except (tarfile.TarError, KeyError, ValueError):
        return {}
