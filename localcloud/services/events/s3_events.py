"""S3 -> EventBridge -> Step Functions, the way the template wires it on AWS.

moto 5.2.5 sends S3 events to EventBridge rules, but its event differs from AWS's
(``eTag`` instead of ``etag``, a constant ``sequencer``, a float ``time``) and its rules
cannot target a state machine. Here the event is built like AWS's (aws-facts §9) and
every rule of the default bus is evaluated with moto's own pattern matcher (prefix,
suffix, wildcard, anything-but, ...); a matching rule's Step Functions targets each start
one execution with the event as input, as EventBridge does.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from moto.events.models import EventPattern

log = logging.getLogger(__name__)
# Set by the local cloud when IAM is enforced: (target's role ARN, state machine ARN) ->
# None if the role may start executions of it, else AWS's AccessDenied message.
AUTHORIZE_START: Callable[[str, str], str | None] | None = None
# Likewise: (dead-letter queue ARN, rule ARN) -> None if the queue's policy lets EventBridge
# send the rule's failed events to it, else why not.
AUTHORIZE_DEAD_LETTER: Callable[[str, str], str | None] | None = None

# s3:ObjectCreated:Put -> the API call AWS names as the event's reason
_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "PostObject",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}

_sequencer_lock = threading.Lock()
_last_sequencer = 0


def next_sequencer() -> str:
    """A strictly increasing hex sequencer, like S3's per-key ordering token."""
    global _last_sequencer
    with _sequencer_lock:
        _last_sequencer = max(_last_sequencer + 1, time.time_ns())
        return f"{_last_sequencer:016X}"


def envelope(
    *,
    detail_type: str,
    source: str,
    account_id: str,
    region: str,
    resources: list[str],
    detail: dict[str, Any],
) -> dict[str, Any]:
    """An event as EventBridge delivers it to a rule's target (its envelope around ``detail``)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account_id,
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def s3_event(
    *,
    detail_type: str,
    event_name: str,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    version_id: str | None,
    region: str,
    account_id: str,
) -> dict[str, Any]:
    """An S3 event as EventBridge delivers it (docs: S3 user guide, EventBridge events)."""
    obj: dict[str, Any] = {"key": key, "size": size, "etag": etag.strip('"')}
    if version_id and version_id != "null":
        obj["version-id"] = version_id
    obj["sequencer"] = next_sequencer()
    return envelope(
        detail_type=detail_type,
        source="aws.s3",
        account_id=account_id,
        region=region,
        resources=[f"arn:aws:s3:::{bucket}"],
        detail={
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
            "reason": _REASONS.get(event_name, event_name.split(":")[1]),
        },
    )


class RuleLike(Protocol):
    """What is read from a rule (moto's ``moto.events.models.Rule`` has these)."""

    name: str
    arn: str
    state: str
    event_pattern: EventPattern
    targets: list[dict[str, Any]]


# Starts an execution: (state machine ARN, execution name, input JSON) -> execution ARN
StartExecution = Callable[[str, str, str], str]


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """EventBridge's pattern matching, as moto implements it."""
    return EventPattern.load(json.dumps(pattern)).matches_event(dict(event))


def deliver(
    event: Mapping[str, Any], rules: Iterable[RuleLike], start: StartExecution
) -> list[str]:
    """Send ``event`` to every enabled matching rule; returns the executions started."""
    started = []
    for rule in rules:
        if rule.state != "ENABLED" or not rule.event_pattern.matches_event(dict(event)):
            continue
        for target in rule.targets:
            if ":states:" in target["Arn"]:
                denied = _start_denied(target)
                if denied:
                    # a permission error is not retried: dropped, or sent to the DLQ at once
                    log.warning("rule %s could not start %s: %s", rule.name, target["Arn"], denied)
                    dead_letter(rule.arn, target, event, "NO_PERMISSIONS", denied)
                    continue
                started.append(start(target["Arn"], str(uuid.uuid4()), json.dumps(event)))
    return started


def dead_letter(
    rule_arn: str, target: Mapping[str, Any], event: Mapping[str, Any], code: str, message: str
) -> bool:
    """Send an event a target failed to the target's dead-letter queue, as EventBridge does
    (the event as body; RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE attributes), if the
    queue's policy allows it. False if the event is dropped."""
    from moto.sqs.models import sqs_backends

    queue_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
    if not queue_arn:
        return False
    denied = AUTHORIZE_DEAD_LETTER(queue_arn, rule_arn) if AUTHORIZE_DEAD_LETTER else None
    if denied:
        log.warning(
            "rule %s could not dead-letter the event to %s: %s", rule_arn, queue_arn, denied
        )
        return False
    _, _, _, region, account, queue = queue_arn.split(":", 5)
    attributes = {
        "RULE_ARN": rule_arn,
        "TARGET_ARN": str(target["Arn"]),
        "ERROR_CODE": code,
        "ERROR_MESSAGE": message,
    }
    sqs_backends[account][region].send_message(
        queue,
        json.dumps(event),
        message_attributes={
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        },
    )
    return True


def _start_denied(target: Mapping[str, Any]) -> str | None:
    role = target.get("RoleArn")
    if AUTHORIZE_START is None or not role:
        return None
    return AUTHORIZE_START(str(role), str(target["Arn"]))
