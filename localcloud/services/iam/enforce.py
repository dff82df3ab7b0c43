"""IAM enforcement in the local cloud's server process.

Every role session the stack's code runs as gets credentials of its own (an ``ASIA...``
access key that names it): each Lambda function's workers run as the function's role
(session = function name, as on Lambda), the state machine's interpreter calls AWS as the
state machine's role, the EventBridge rule starts executions as its role, and the local
SageMaker acts as the job's or model's execution role (S3, ECR pulls, CloudWatch Logs, the
auto-rollback alarms: ``sagemaker/execution_role.py``). The moto server's
WSGI app is wrapped: a request signed with one of these keys is parsed back into its API
call (``protocol.py``), evaluated against the role's policies (``authorize.py``) and, when
denied, answered the way that service answers AccessDenied. Requests signed with any
other key (the local cloud deploying the stack, a user's AWS CLI) are not restricted.

S3's permission-dependent answer is emulated too: HeadObject/GetObject of a missing key
answers 404 only to a caller allowed ``s3:ListBucket`` on the bucket (with no condition the
request does not meet), otherwise 403 AccessDenied. Services acting on a resource are held to
its policy (CloudWatch publishing an alarm to a topic, EventBridge dead-lettering to a
queue), and Application Auto Scaling creates its service-linked role as the caller.
"""

from __future__ import annotations

import collections
import http
import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from localcloud.services.iam.authorize import Authorizer, Denial, Principal
from localcloud.services.iam.evaluator import EvaluatorError
from localcloud.services.iam.policies import role_policies
from localcloud.services.iam.protocol import (
    CALL_KEY,
    ApiCall,
    ErrorReply,
    UnreadableRequest,
    access_denied,
    error_reply,
    parse_request,
    read_request,
    signature,
)
from localcloud.services.iam.request_context import Check, UnknownAction

log = logging.getLogger("localcloud.services.iam")
SECRET_KEY = "localcloud-role-session-secret"
SESSION_TOKEN = "localcloud-role-session-token"
SAGEMAKER_SESSION = "SageMaker"
STATES_SESSION = "StepFunctions"

# Application Auto Scaling's service-linked role per namespace: (service, role name).
SERVICE_LINKED_ROLES = {
    "sagemaker": (
        "sagemaker.application-autoscaling.amazonaws.com",
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
    )
}
_REGISTER_TARGET = ("application-autoscaling", "RegisterScalableTarget")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_active: Enforcer | None = None  # the enforcer installed in this process


class Enforcer:
    """The role sessions of one stack and the checks of their calls."""

    def __init__(self, stack: Any, authorizer: Authorizer | None = None) -> None:
        self.stack = stack
        self.authorizer = authorizer or Authorizer()
        self.policies = role_policies(stack)
        self._by_key: dict[str, Principal] = {}
        self._by_role: dict[str, Principal] = {}
        # the latest AccessDenied messages (a HEAD's 403 has no body to carry one)
        self.denials: collections.deque[str] = collections.deque(maxlen=100)

    def session(self, role_arn: str, session: str) -> Principal:
        """The principal of a session of ``role_arn`` (registered, so its key is known)."""
        principal = Principal(role_arn, session, self.policies.get(role_arn, ()))
        self._by_key[principal.access_key] = principal
        self._by_role[role_arn] = principal
        return principal

    def credentials(self, role_arn: str, session: str) -> dict[str, str]:
        """The environment variables of a process running as this role session."""
        principal = self.session(role_arn, session)
        return {
            "AWS_ACCESS_KEY_ID": principal.access_key,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
        }

    def function_credentials(self, fn: Any) -> dict[str, str]:
        """A Lambda function's: its role, session named after the function (as on AWS)."""
        return self.credentials(fn.role_arn, fn.name)

    def warm_up(self) -> None:
        try:
            self.authorizer.reference.action("s3", "GetObject")
        except EvaluatorError:
            log.exception("IAM: the evaluator does not start")

    def principal_for_key(self, access_key: str) -> Principal | None:
        return self._by_key.get(access_key)

    def principal_for_role(self, role_arn: str, session: str) -> Principal:
        return self._by_role.get(role_arn) or self.session(role_arn, session)

    def check(self, principal: Principal, call: ApiCall, region: str) -> Denial | None:
        try:
            denial = self.authorizer.authorize_call(
                principal, call.service, call.operation, call.params, region=region
            )
        except UnknownAction as exc:
            log.warning("IAM: no action in the reference for %s: denied", exc)
            return Denial(principal.arn, f"{call.service}:{call.operation}", "*")
        if denial is None and (call.service, call.operation) == _REGISTER_TARGET:
            return self._service_linked_role(principal, str(call.params.get("ServiceNamespace")))
        return denial

    def _service_linked_role(self, principal: Principal, namespace: str) -> Denial | None:
        """Application Auto Scaling creates its service-linked role for the namespace at the
        first registration in the account, as the caller (``iam:CreateServiceLinkedRole``,
        ``iam:AWSServiceName``); from then on the role exists and nothing is asked."""
        from moto.iam.models import iam_backends

        if namespace not in SERVICE_LINKED_ROLES:
            return None
        service, name = SERVICE_LINKED_ROLES[namespace]
        backend = iam_backends[principal.account]["aws"]
        if any(role.name == name for role in backend.roles.values()):
            return None
        path = f"/aws-service-role/{service}/"
        arn = f"arn:aws:iam::{principal.account}:role{path}{name}"
        context = {"iam:AWSServiceName": service}
        denial = self.allowed(principal, "iam:CreateServiceLinkedRole", arn, **context)
        if denial is None:
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": [service]},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
            backend.create_role(name, json.dumps(trust), path, None, "", [], None, service)
        return denial

    def allowed(
        self, principal: Principal, action: str, resource: str, **context: Any
    ) -> Denial | None:
        return self.authorizer.first_denial(principal, [Check(action, resource, context)])

    def alarm_publish_denied(self, topic_arn: str, alarm_arn: str) -> str | None:
        """Why CloudWatch may not publish an alarm to the topic (its access policy must allow
        ``cloudwatch.amazonaws.com`` ``sns:Publish``), or None. SNS's default policy (the
        owner account) lets the account's own alarms publish."""
        from moto.sns.models import sns_backends

        account, region = topic_arn.split(":")[4], topic_arn.split(":")[3]
        topic = sns_backends[account][region].topics.get(topic_arn)
        if topic is None:  # publishing fails on its own (NotFound)
            return None
        policy = topic._policy_json
        if all(st.get("Sid") == "__default_statement_ID" for st in policy.get("Statement", [])):
            return None
        context = {"aws:SourceArn": alarm_arn, "aws:SourceAccount": account}
        check = Check("sns:Publish", topic_arn, context)
        if self.authorizer.service_allowed("cloudwatch.amazonaws.com", account, check, policy):
            return None
        return (
            f'"CloudWatch Alarms is not authorized to perform: SNS:Publish on resource:{topic_arn}"'
        )

    def dead_letter_denied(self, queue_arn: str, rule_arn: str) -> str | None:
        """Why EventBridge may not send a rule's failed event to the queue (its policy must
        let ``events.amazonaws.com`` ``sqs:SendMessage``; a queue without one does not), or
        None."""
        from moto.sqs.models import sqs_backends

        _, _, _, region, account, name = queue_arn.split(":", 5)
        queue = sqs_backends[account][region].queues.get(name)
        policy = json.loads(queue.policy) if queue is not None and queue.policy else None
        context = {"aws:SourceArn": rule_arn, "aws:SourceAccount": account}
        check = Check("sqs:SendMessage", queue_arn, context)
        if policy and self.authorizer.service_allowed(
            "events.amazonaws.com", account, check, policy
        ):
            return None
        return (
            f"EventBridge (events.amazonaws.com) is not authorized to perform: sqs:SendMessage "
            f"on resource: {queue_arn} for rule {rule_arn} (the queue's policy does not allow it)"
        )

    # --- the WSGI middleware ------------------------------------------------------------

    def wrap(self, app: WsgiApp) -> WsgiApp:
        def enforced(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            headers, query, method, path, body = read_request(environ)
            sig = signature(headers, query)
            principal = self._by_key.get(sig.access_key) if sig else None
            if sig is None or principal is None:
                return app(environ, start_response)
            try:
                call = parse_request(sig, method, path, query, headers, body)
                environ[CALL_KEY] = call  # validation reads the same call
                denial = self.check(principal, call, sig.region)
            except (UnreadableRequest, EvaluatorError) as exc:
                log.warning("IAM: %s: denied", exc)
                return _plain_denial(start_response, f"{exc}")
            if denial is not None:
                text = denial.s3_message if call.service == "s3" else denial.message
                log.warning("IAM: AccessDenied: %s", text)
                self.denials.append(text)
                if denial.validation:  # the service's own check of the caller
                    return _reply(
                        start_response, error_reply(call, 400, "ValidationException", text)
                    )
                return _reply(start_response, access_denied(call, text, head=method == "HEAD"))
            if call.service == "s3" and call.operation in ("HeadObject", "GetObject"):
                return self._missing_key(app, environ, start_response, principal, call, method)
            return app(environ, start_response)

        return enforced

    def _missing_key(
        self,
        app: WsgiApp,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        principal: Principal,
        call: ApiCall,
        method: str,
    ) -> Any:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = app(environ, capture)
        try:
            chunks = list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if str(captured.get("status", "")).startswith("404"):
            bucket = f"arn:aws:s3:::{call.params.get('Bucket', '')}"
            denial = self.allowed(principal, "s3:ListBucket", bucket)
            if denial is not None:
                log.info("IAM: missing key answered 403: %s", denial.s3_message)
                self.denials.append(denial.s3_message)
                return _reply(
                    start_response, access_denied(call, denial.s3_message, head=method == "HEAD")
                )
        start_response(captured["status"], captured["headers"])
        return chunks


def _status_line(status: int) -> str:
    return f"{status} {http.HTTPStatus(status).phrase}"


def _reply(start_response: Callable[..., Any], reply: ErrorReply) -> list[bytes]:
    headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
    start_response(_status_line(reply.status), headers)
    return [reply.body]


def _plain_denial(start_response: Callable[..., Any], message: str) -> list[bytes]:
    body = f"AccessDenied: {message}".encode()
    start_response(
        _status_line(403), [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


def install(enforcer: Enforcer) -> None:
    """Enforce IAM in this process: wrap the moto server's app (call before it starts), make
    the state-machine interpreter call AWS as the state machine's role, check the rule's
    role before it starts an execution and SageMaker's execution role on what SageMaker does
    as it (moto internals: moto is pinned)."""
    from moto.moto_server import threaded_moto_server

    from localcloud import validation
    from localcloud.services.cloudwatch import alarms
    from localcloud.services.events import s3_events
    from localcloud.services.sagemaker import execution_role

    def start_denied(role_arn: str, state_machine_arn: str) -> str | None:
        principal = enforcer.principal_for_role(role_arn, "EventBridge")
        denial = enforcer.allowed(principal, "states:StartExecution", state_machine_arn)
        return denial.message if denial else None

    def execution_role_denied(
        role_arn: str, action: str, resource: str, context: dict[str, Any]
    ) -> str | None:
        principal = enforcer.principal_for_role(role_arn, SAGEMAKER_SESSION)
        denial = enforcer.allowed(principal, action, resource, **context)
        if denial is None:
            return None
        text = denial.s3_message if action.startswith("s3:") else denial.message
        log.warning("IAM: SageMaker AccessDenied: %s", text)
        enforcer.denials.append(text)
        return text

    s3_events.AUTHORIZE_START = start_denied
    execution_role.AUTHORIZE = execution_role_denied
    alarms.AUTHORIZE_PUBLISH = enforcer.alarm_publish_denied
    s3_events.AUTHORIZE_DEAD_LETTER = enforcer.dead_letter_denied

    global _active
    _active = enforcer
    validation.install()  # and the requests it allows validated, as AWS does
    original = threaded_moto_server.DomainDispatcherApplication
    if not getattr(original, "_localcloud_iam", False):

        def dispatcher(create_app: Any, *args: Any, **kwargs: Any) -> Any:
            return _middleware(original(create_app, *args, **kwargs))

        dispatcher._localcloud_iam = True  # type: ignore[attr-defined]
        threaded_moto_server.DomainDispatcherApplication = dispatcher  # type: ignore[misc]
    _patch_state_machine_clients()


def _middleware(app: WsgiApp) -> WsgiApp:
    """The moto app, enforced by whichever enforcer is installed at request time."""
    enforced_apps: dict[int, WsgiApp] = {}

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        enforcer = _active
        if enforcer is None:
            return app(environ, start_response)
        if id(enforcer) not in enforced_apps:
            enforced_apps.clear()
            enforced_apps[id(enforcer)] = enforcer.wrap(app)
        return enforced_apps[id(enforcer)](environ, start_response)

    return middleware


def _patch_state_machine_clients() -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client as module

    original = getattr(module, "_localcloud_original", module.boto_client_for)
    module._localcloud_original = original  # type: ignore[attr-defined]

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region=region, service=service, state_credentials=state_credentials)
        role = getattr(state_credentials, "role_arn", None)
        enforcer = _active
        if not role or enforcer is None:
            return client
        principal = enforcer.principal_for_role(role, STATES_SESSION)
        credentials = client._request_signer._credentials
        credentials.access_key = principal.access_key
        return client

    for name, loaded in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and hasattr(loaded, "boto_client_for"):
            loaded.boto_client_for = boto_client_for


def uninstall() -> None:
    """No enforcement in this process (the patches stay, and let everything through)."""
    from localcloud.services.cloudwatch import alarms
    from localcloud.services.events import s3_events
    from localcloud.services.sagemaker import execution_role

    global _active
    _active = None
    alarms.AUTHORIZE_PUBLISH = None
    s3_events.AUTHORIZE_START = None
    s3_events.AUTHORIZE_DEAD_LETTER = None
    execution_role.AUTHORIZE = None
