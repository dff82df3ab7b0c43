"""The Lambda runtime: real handlers in warm worker processes, Lambda's error shapes,
timeouts, per-function environments and reserved concurrency."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from localcloud.cloudformation.stack import Function, Stack
from localcloud.cloudformation.template import resolve_stack
from localcloud.runtime import processes
from localcloud.runtime.server import pipeline_order
from localcloud.services.lambda_.worker_pool import LambdaRuntime, Throttled

FIXTURE = Path(__file__).parents[2] / "fixtures" / "stack"


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, fn: Function, stream: str, line: str) -> None:
        with self._lock:
            self.lines.append((fn.name, stream, line))

    def of(self, fn: Function) -> list[str]:
        with self._lock:
            return [line for name, _, line in self.lines if name == fn.name]


@pytest.fixture(scope="module")
def stack() -> Stack:
    return resolve_stack(FIXTURE / "template.yaml", region="eu-west-1", stack_name="fx")


@pytest.fixture
def logs() -> Lines:
    return Lines()


@pytest.fixture
def runtime(stack: Stack, logs: Lines) -> Iterator[LambdaRuntime]:
    # Only the runtime's own workers must be gone: other helpers of the test session (the
    # IAM evaluator's node process, say) may run for the whole session.
    before = set(processes.descendants(os.getpid()))
    rt = LambdaRuntime(
        stack.functions, region="eu-west-1", endpoint_url="http://127.0.0.1:9", sink=logs
    )
    try:
        yield rt
    finally:
        rt.close()
        assert set(processes.descendants(os.getpid())) - before == set()


def invoke(rt: LambdaRuntime, fn: Function, event: object) -> tuple[object, str | None]:
    result = rt.invoke(fn.name, json.dumps(event).encode())
    return result.json(), result.error_type


def test_handler_runs_with_its_environment_layers_and_context(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    worker = stack.function("WorkerFunction")
    keys = ["ROLE", "STAGE", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME",
            "PYTHONPATH", "VIRTUAL_ENV"]  # fmt: skip
    reply, error = invoke(runtime, worker, {"action": "env", "env_keys": keys})
    assert error is None
    assert reply["env"] == {
        "ROLE": "worker",
        "STAGE": "dev",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_LAMBDA_FUNCTION_NAME": worker.name,
        "PYTHONPATH": None,  # nothing leaks from the host
        "VIRTUAL_ENV": None,
    }
    assert reply["layer"] == "shared"  # python layer on sys.path
    assert reply["data"] == "hello from the data layer"  # /opt mapped to the layer
    context = reply["context"]
    assert context["function_name"] == worker.name
    assert context["invoked_function_arn"] == worker.arn
    assert context["memory_limit_in_mb"] == 256
    assert context["log_group_name"] == f"/aws/lambda/{worker.name}"
    assert 0 < context["remaining_ms"] <= 5000


def test_warm_worker_is_reused_and_functions_are_isolated(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    worker = stack.function("WorkerFunction")
    first, _ = invoke(runtime, worker, {"action": "env"})
    second, _ = invoke(runtime, worker, {"action": "env"})
    assert first["cold_start"] == second["cold_start"]  # one module import, two invokes
    assert first["context"]["aws_request_id"] != second["context"]["aws_request_id"]
    hello = runtime.invoke(stack.function("HelloFunction").name, b'{"rawPath": "/"}').json()
    assert json.loads(hello["body"])["rawPath"] == "/"
    assert hello["headers"]["x-role"] == "hello"  # its own ROLE, not the worker's


def test_prewarm_starts_one_environment_that_the_first_invoke_uses(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    worker = stack.function("WorkerFunction")
    runtime.prewarm()
    runtime.prewarm()  # idempotent: one environment per function
    assert runtime.pool(worker.name).size == 1
    assert runtime.pool(stack.function("HelloFunction").name).size == 1
    first, error = invoke(runtime, worker, {"action": "env"})
    assert error is None
    assert runtime.pool(worker.name).size == 1  # the warm one served it
    assert invoke(runtime, worker, {"action": "env"})[0]["cold_start"] == first["cold_start"]


def _process_start(pid: int) -> float:
    """When process ``pid`` started (epoch seconds, 10 ms resolution), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def test_prewarm_starts_the_named_functions_first_and_bounds_the_inits_at_once(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    worker, hello = stack.function("WorkerFunction"), stack.function("HelloFunction")
    assert runtime.prewarm(first=[hello.name, worker.name], parallel=1) == [
        hello.name,
        worker.name,
    ]
    runtime.close()
    rt = LambdaRuntime(
        stack.functions, region="eu-west-1", endpoint_url="http://127.0.0.1:9", sink=Lines()
    )
    try:
        assert rt.prewarm(first=[worker.name], parallel=1) == [worker.name, hello.name]
        reply, error = invoke(rt, worker, {"action": "env"})
        assert error is None
        (hello_pid,) = rt.pool(hello.name).pids
        # one init at a time: hello's environment started after the worker's had imported
        # its handler (its module-level clock), not alongside it
        assert _process_start(hello_pid) >= reply["cold_start"] - 0.02
    finally:
        rt.close()


def test_prewarm_of_the_first_only_and_the_state_machine_order(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    worker, hello = stack.function("WorkerFunction"), stack.function("HelloFunction")
    # the fixture's state machine runs the worker; the HTTP function comes after
    assert pipeline_order(stack) == [worker.name, hello.name]
    assert runtime.prewarm(first=[worker.name], rest=False) == [worker.name]
    assert runtime.pool(hello.name).size == 0
    assert runtime.prewarm(first=pipeline_order(stack)) == [hello.name]  # worker's is warm
    assert runtime.pool(worker.name).size == runtime.pool(hello.name).size == 1


def test_close_ends_every_environment_of_every_function(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    runtime.prewarm(parallel=2)
    pids = [pid for fn in stack.functions for pid in runtime.pool(fn.name).pids]
    assert len(pids) == len(stack.functions)
    runtime.close()
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []  # killed and reaped
    with pytest.raises(Throttled):
        runtime.invoke(stack.function("WorkerFunction").name, b"{}")


def test_exception_surfaces_as_lambda_function_error(
    runtime: LambdaRuntime, stack: Stack, logs: Lines
) -> None:
    worker = stack.function("WorkerFunction")
    reply, error = invoke(runtime, worker, {"action": "fail"})
    assert error == "Flaky"
    assert reply["errorType"] == "Flaky"
    assert reply["errorMessage"] == "the worker failed on purpose"
    assert any("app.py" in frame for frame in reply["stackTrace"])
    assert not any("lambda_/worker.py" in frame for frame in reply["stackTrace"])
    # the environment survives a handler error
    assert invoke(runtime, worker, {"action": "env"})[1] is None
    expected = (
        "[ERROR] Flaky: the worker failed on purpose",
        "START RequestId:",
        "REPORT RequestId:",
    )

    def logged() -> bool:  # the log lines reach the sink asynchronously, as in CloudWatch
        lines = logs.of(worker)
        return all(any(line.startswith(start) for line in lines) for start in expected)

    processes.wait_until(logged, timeout=5)
    lines = logs.of(worker)
    assert any(line.startswith("[ERROR] Flaky: the worker failed on purpose") for line in lines)
    assert any(line.startswith("START RequestId:") for line in lines)
    assert any(line.startswith("REPORT RequestId:") for line in lines)


def test_handler_output_lines_reach_the_log_sink(
    runtime: LambdaRuntime, stack: Stack, logs: Lines
) -> None:
    worker = stack.function("WorkerFunction")
    invoke(runtime, worker, {"action": "log"})
    processes.wait_until(lambda: "a line from the handler" in logs.of(worker), timeout=5)
    assert "a line from the handler" in logs.of(worker)


def test_timeout_kills_the_worker_and_reports_sandbox_timedout(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    worker = stack.function("WorkerFunction")
    reply, error = invoke(runtime, worker, {"action": "sleep", "seconds": 30})
    assert error == "Sandbox.Timedout"
    assert "Task timed out after 5.00 seconds" in reply["errorMessage"]
    reply, error = invoke(runtime, worker, {"action": "env"})  # a fresh environment
    assert error is None


def test_exit_and_unserialisable_results(runtime: LambdaRuntime, stack: Stack) -> None:
    worker = stack.function("WorkerFunction")
    reply, error = invoke(runtime, worker, {"action": "exit"})
    assert error == "Runtime.ExitError" and "exit status 3" in reply["errorMessage"]
    reply, error = invoke(runtime, worker, {"action": "unmarshallable"})
    assert error == "Runtime.MarshalError"
    assert reply["errorMessage"].startswith("Unable to marshal response")


def test_import_errors_use_the_runtime_error_types(stack: Stack, logs: Lines) -> None:
    worker = stack.function("WorkerFunction")
    broken = [
        replace(worker, name="missing-module", handler="nope.lambda_handler"),
        replace(worker, name="missing-function", handler="app.nope"),
    ]
    rt = LambdaRuntime(broken, region="eu-west-1", endpoint_url="http://127.0.0.1:9", sink=logs)
    try:
        assert rt.invoke("missing-module", b"{}").error_type == "Runtime.ImportModuleError"
        result = rt.invoke("missing-function", b"{}")
        assert result.error_type == "Runtime.HandlerNotFound"
        assert "Handler 'nope' missing on module 'app'" in result.json()["errorMessage"]
    finally:
        rt.close()


def test_reserved_concurrency_caps_the_pool(runtime: LambdaRuntime, stack: Stack) -> None:
    hello = stack.function("HelloFunction")  # ReservedConcurrentExecutions: 1
    event = json.dumps({"queryStringParameters": {"sleep": "2"}}).encode()
    busy = threading.Thread(target=runtime.invoke, args=(hello.name, event))
    busy.start()
    try:
        pool = runtime.pool(hello.name)
        assert processes.wait_until(lambda: pool.size == 1, timeout=5)
        with pytest.raises(Throttled):
            runtime.invoke(hello.name, b"{}")
    finally:
        busy.join(timeout=30)
    assert runtime.invoke(hello.name, b"{}").error_type is None  # free again


def test_reserved_concurrency_zero_throttles_even_a_warm_environment(
    runtime: LambdaRuntime, stack: Stack
) -> None:
    # PutFunctionConcurrency 0 (how a user rehearses throttling) applies at once.
    hello = stack.function("HelloFunction")
    assert runtime.invoke(hello.name, b"{}").error_type is None  # leaves a warm worker
    pool = runtime.pool(hello.name)
    pool.reserve(0)
    with pytest.raises(Throttled):
        runtime.invoke(hello.name, b"{}")
    pool.reserve(None)  # DeleteFunctionConcurrency
    assert runtime.invoke(hello.name, b"{}").error_type is None
