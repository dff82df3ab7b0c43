"""Shared test helpers: load a function's handler by path, sample events, a Lambda
context, and a mocked AWS account whose API calls are recorded (see tests/iam.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Powertools objects are module-level singletons configured when first imported; give
# them a namespace and no X-Ray whichever test imports them first.
for _name, _value in {
    "POWERTOOLS_METRICS_NAMESPACE": "Tests",
    "POWERTOOLS_SERVICE_NAME": "tests",
    "POWERTOOLS_TRACE_DISABLED": "1",
}.items():
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ACCOUNT = "123456789012"


def load_handler(name: str) -> ModuleType:
    """functions/<name>/app.py as a fresh module with a unique name (no clashes between apps)."""
    path = REPO / "functions" / name / "app.py"
    module_name = f"fn_{name}_app_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_event(path: str) -> Any:
    """events/<path> (``"deploy_model/update.json"``, ``"s3_object_created.json"``)."""
    return json.loads((REPO / "events" / path).read_text(encoding="utf-8"))


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2026/11/24/[$LATEST]test"
    remaining_millis: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fake account and Powertools settings; boto3 clients are rebuilt for each test."""
    from mlops.aws import client

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Tests")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    client.cache_clear()
    yield
    client.cache_clear()


class AwsRecorder:
    """Records the AWS calls a handler makes (not the test's own set-up calls)."""

    def __init__(self) -> None:
        from tests.iam import Call

        self._call = Call
        self.calls: list[Call] = []
        self.recording = False

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if self.recording:
            self.calls.append(self._call(service, operation, dict(params)))

    def invoke(self, app: ModuleType, event: Any, context: Any | None = None) -> Any:
        self.recording = True
        try:
            return app.lambda_handler(event, context or FakeLambdaContext())
        finally:
            self.recording = False

    def operations(self) -> list[str]:
        return [call.operation for call in self.calls]


@pytest.fixture
def aws(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[AwsRecorder]:
    """A moto account; calls made through ``aws.invoke`` are recorded and, when the test
    module names its template resource in ``FUNCTION``, checked against that function's
    IAM statements at teardown."""
    from botocore.client import BaseClient
    from moto import mock_aws

    from tests.iam import denied_calls, reference_gaps
    from tests.template_support import function_statements

    recorder = AwsRecorder()
    original = BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        recorder.record(self.meta.service_model.service_name, operation_name, api_params)
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    with mock_aws():
        yield recorder
    function = getattr(request.module, "FUNCTION", None)
    if function:
        denied = denied_calls(function, recorder.calls)
        assert not denied, f"{function}'s role lacks: " + "; ".join(denied)
        # and, independently of the request mapping, what the reference says the calls need
        gaps = reference_gaps(function_statements(function), recorder.calls)
        assert not gaps, f"{function}'s statements lack: " + "; ".join(gaps)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (``make test TEST_WORKERS=2``): a test file runs on one worker, so
    its module-scoped fixtures (a local cloud, a training run) are set up once, and the files
    sharing the session's local cloud (tests/localcloud/conftest.py) run on one worker,
    together."""
    from xdist.scheduler import LoadFileScheduling

    from tests.localcloud.pipeline_support import SHARED_CLOUD_MODULES

    class FileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "shared local cloud" if Path(path).name in SHARED_CLOUD_MODULES else path

    return FileScheduling(config, log)
