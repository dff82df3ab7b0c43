"""The seams where the local cloud plugs into moto (pinned: these are moto internals).

- Lambda: ``LambdaSimpleBackend.invoke`` runs the real handler in the function's worker
  pool (errors come back as Lambda's ``Unhandled`` function errors, so the state
  machine's Retry/Catch match on ``errorType``).
- S3 -> EventBridge: the bucket's EventBridge notifications are rebuilt like AWS's and
  delivered to rules with Step Functions targets (``localcloud.services.events.s3_events``).
- Step Functions: each finished execution's description and history are written to the
  state directory, so they survive the local cloud; an execution started without a name
  gets a UUID, as on AWS (moto would name it "None", and a second one would clash).
- Lambda quotas: ``PutFunctionConcurrency`` keeps the account profile's unreserved floor.
- Speed, same behaviour: a state machine definition is parsed once, not again at each
  StartExecution; moto reads its own service models through one loader.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import moto
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config
from moto.core.exceptions import JsonRESTError
from moto.events.models import events_backends
from moto.s3 import notifications as s3_notifications
from moto.stepfunctions.parser.backend import execution as sfn_execution
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from localcloud.runtime.account_profiles import AccountProfile, QuotaExceeded
from localcloud.services.events import s3_events
from localcloud.services.lambda_.worker_pool import LambdaRuntime, Throttled, UnknownFunction

MOTO_VERSION = "5.2.5"
log = logging.getLogger(__name__)


class TooManyRequests(JsonRESTError):
    code = 429

    def __init__(self, message: str) -> None:
        super().__init__("TooManyRequestsException", message)


class NotRunnable(JsonRESTError):
    code = 502

    def __init__(self, name: str) -> None:
        message = f"{name} was not deployed from the template: only template functions run locally"
        super().__init__("ResourceNotReadyException", message)


def check_moto_version() -> None:
    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"the local cloud patches moto {MOTO_VERSION} internals; moto {moto.__version__} "
            "is installed (install the pinned requirements)"
        )


def configure() -> None:
    """moto's config for the local cloud: run state machines, Lambda without Docker."""
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    default_user_config["lambda"] = {"use_docker": False}
    _parse_definitions_once()
    _share_model_loader()


def _parse_definitions_once() -> None:
    """moto parses a definition with ANTLR (pure Python: 0.1-0.3 s for the pipeline's) at
    CreateStateMachine, to validate it, and again at each StartExecution, on the run's
    critical path. The parse tree is kept per definition text; each execution still
    builds its own program (evaluation components) from it. A definition that does not
    parse raises as before and is not kept."""
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    parser = asl_parser.AmazonStateLanguageParser
    parse = parser.parse
    if getattr(parse, "keeps_trees", False):
        return
    trees: dict[str, Any] = {}

    def parse_once(definition: str) -> tuple[Any, Any]:
        tree = trees.get(definition)
        if tree is None:
            program, trees[definition] = parse(definition)
            return program, trees[definition]
        return Preprocessor().visit(tree), tree

    parse_once.keeps_trees = True  # type: ignore[attr-defined]
    parser.parse = staticmethod(parse_once)  # type: ignore[method-assign,assignment]


def _share_model_loader() -> None:
    """moto loads each service's model on its first request with a new loader, which
    lists botocore's ~400 service directories again each time (0.2 s at the start)."""
    from moto.core import loaders
    from moto.core import utils as moto_utils

    if getattr(moto_utils.create_loader, "shared", False):
        return
    loader = loaders.create_loader()

    def create_loader() -> loaders.Loader:
        return loader

    create_loader.shared = True  # type: ignore[attr-defined]
    moto_utils.create_loader = create_loader


def install_lambda(runtime: LambdaRuntime) -> None:
    def invoke(
        self: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        fn = self.get_function(function_name, qualifier)  # ResourceNotFound if unknown
        with contextlib.suppress(UnknownFunction):  # PutFunctionConcurrency applies at once
            runtime.pool(fn.function_name).reserve(fn.reserved_concurrency)
        payload = body if isinstance(body, bytes) else (body or "").encode()
        if headers.get("X-Amz-Invocation-Type") == "Event":
            threading.Thread(
                target=_invoke_quietly, args=(runtime, fn.function_name, payload), daemon=True
            ).start()
            return b""
        try:
            result = runtime.invoke(fn.function_name, payload)
        except Throttled as exc:
            raise TooManyRequests(f"Rate Exceeded. {exc}") from exc
        except UnknownFunction as exc:
            raise NotRunnable(fn.function_name) from exc
        if result.failed:
            response_headers["x-amz-function-error"] = "Unhandled"
        return result.payload

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    _name_lambda_service_errors()


def _name_lambda_service_errors() -> None:
    """A Lambda service error (a throttle, say) in a Task reads ``Lambda.<code>``, as on AWS.

    moto names every such error "Exception", so a Retry on
    ``Lambda.TooManyRequestsException`` would never match locally.
    """
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
        StateTaskLambda,
    )

    original = getattr(StateTaskLambda._from_error, "__wrapped__", StateTaskLambda._from_error)

    def from_error(self: Any, env: Any, ex: Exception) -> Any:
        event = original(self, env, ex)
        if isinstance(ex, ClientError):
            name = f"Lambda.{ex.response.get('Error', {}).get('Code', 'ServiceException')}"
            event.error_name = CustomErrorName(name)
            details = (event.event_details or {}).get("lambdaFunctionFailedEventDetails")
            if details is not None:
                details["error"] = name
        return event

    from_error.__wrapped__ = original  # type: ignore[attr-defined]
    StateTaskLambda._from_error = from_error  # type: ignore[method-assign]


def _invoke_quietly(runtime: LambdaRuntime, name: str, payload: bytes) -> None:
    try:
        runtime.invoke(name, payload)
    except Throttled:
        log.warning("asynchronous invocation of %s throttled", name)


def install_trigger() -> None:
    def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        event = s3_events.s3_event(
            detail_type=s3_notifications._detail_type(event_name),
            event_name=event_name,
            bucket=bucket.name,
            key=key.name,
            size=key.size,
            etag=key.etag,
            version_id=key.version_id,
            region=bucket.region_name,
            account_id=account_id,
        )
        backend = events_backends[account_id][bucket.region_name]
        bus = backend.event_buses.get("default")
        if bus is None:
            return
        sfn = stepfunctions_parser_backends[account_id][bucket.region_name]

        def start(state_machine_arn: str, name: str, execution_input: str) -> str:
            return sfn.start_execution(state_machine_arn, name, execution_input).exec_arn

        try:
            started = s3_events.deliver(event, list(bus.rules.values()), start)
        except Exception:  # asynchronous on AWS: never fail the S3 request
            log.exception("delivering the S3 event for s3://%s/%s failed", bucket.name, key.name)
            return
        for arn in started:
            log.info("s3://%s/%s started %s", bucket.name, key.name, arn)

    s3_notifications._send_event_bridge_message = send


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def install_history_archive(directory: Path) -> None:
    """Write ``<directory>/<state machine>/<execution>.json`` when an execution ends."""
    original = sfn_execution.BaseExecutionWorkerCommunication.terminated

    def terminated(self: Any) -> None:
        original(self)
        execution = self.execution
        try:
            target = directory / execution.state_machine.name / f"{execution.name}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            record = {
                "execution": execution.to_describe_output(),
                "events": execution.to_history_output()["events"],
            }
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1, default=_json_default))
            tmp.replace(target)
        except Exception:  # the archive is a convenience: never break the execution
            log.exception("archiving the history of %s failed", execution.exec_arn)

    sfn_execution.BaseExecutionWorkerCommunication.terminated = terminated


def install_execution_names() -> None:
    """StartExecution without ``name``: Step Functions names the execution with a UUID."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = getattr(
        StepFunctionsParserBackend.start_execution,
        "__wrapped__",
        StepFunctionsParserBackend.start_execution,
    )

    def start_execution(
        self: Any, state_machine_arn: str, name: str | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    start_execution.__wrapped__ = original  # type: ignore[attr-defined]
    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]


def install_lambda_quota(profile: AccountProfile) -> None:
    """PutFunctionConcurrency keeps the account profile's unreserved floor, as Lambda does."""
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.awslambda.models import LambdaBackend

    def put_function_concurrency(
        self: LambdaBackend, function_name: str, reserved_concurrency: str
    ) -> str:
        fn = self.get_function(function_name)
        elsewhere = sum(
            int(other.reserved_concurrency)
            for other in self.list_functions()
            if other.reserved_concurrency and other.function_name != fn.function_name
        )
        try:
            profile.check_reserved_concurrency(elsewhere, int(reserved_concurrency))
        except QuotaExceeded as exc:
            raise InvalidParameterValueException(str(exc)) from None
        fn.reserved_concurrency = reserved_concurrency
        return fn.reserved_concurrency

    LambdaBackend.put_function_concurrency = put_function_concurrency  # type: ignore[method-assign]
