"""S3 "Object Created" events and the rule matching that starts the state machine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto.events.models import EventPattern

from localcloud.services.events import s3_events

PATTERN = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {
        "bucket": {"name": ["data"]},
        "object": {"key": [{"wildcard": "datasets/*.zip"}, {"wildcard": "datasets/*.tar.gz"}]},
    },
}


def event(bucket: str = "data", key: str = "datasets/a.tar.gz", **kwargs: Any) -> dict[str, Any]:
    fields = {
        "detail_type": "Object Created",
        "event_name": "s3:ObjectCreated:Put",
        "bucket": bucket,
        "key": key,
        "size": 5,
        "etag": '"b1946ac92492d2347c6235b4d2611184"',
        "version_id": "v1",
        "region": "us-east-1",
        "account_id": "123456789012",
    }
    return s3_events.s3_event(**{**fields, **kwargs})


def test_event_has_the_aws_shape() -> None:
    e = event()
    assert e["source"] == "aws.s3" and e["detail-type"] == "Object Created"
    assert e["resources"] == ["arn:aws:s3:::data"]
    assert e["time"].endswith("Z") and "T" in e["time"]
    obj = e["detail"]["object"]
    assert obj["key"] == "datasets/a.tar.gz" and obj["size"] == 5
    assert obj["etag"] == "b1946ac92492d2347c6235b4d2611184"  # lower-case key, no quotes
    assert obj["version-id"] == "v1"
    assert e["detail"]["reason"] == "PutObject" and e["detail"]["bucket"] == {"name": "data"}
    multipart = event(event_name="s3:ObjectCreated:CompleteMultipartUpload", version_id="null")
    assert multipart["detail"]["reason"] == "CompleteMultipartUpload"
    assert "version-id" not in multipart["detail"]["object"]


def test_sequencers_increase_and_ids_differ() -> None:
    first, second = event(), event()
    assert second["detail"]["object"]["sequencer"] > first["detail"]["object"]["sequencer"]
    assert first["id"] != second["id"]


@pytest.mark.parametrize(
    ("bucket", "key", "matched"),
    [
        ("data", "datasets/a.tar.gz", True),
        ("data", "datasets/sub/dir/b.zip", True),
        ("data", "datasets/a.tgz", False),  # not in this pattern
        ("data", "datasets/a.tar.gz.part", False),
        ("data", "models/a.tar.gz", False),
        ("data", "datasets-old/a.zip", False),
        ("other", "datasets/a.tar.gz", False),
    ],
)
def test_pattern_matching_of_keys_and_buckets(bucket: str, key: str, matched: bool) -> None:
    assert s3_events.matches(PATTERN, event(bucket=bucket, key=key)) is matched


def test_deleted_objects_do_not_match() -> None:
    deleted = event(detail_type="Object Deleted", event_name="s3:ObjectRemoved:Delete")
    assert not s3_events.matches(PATTERN, deleted)


@dataclass
class Rule:
    name: str
    pattern: dict[str, Any]
    targets: list[dict[str, Any]]
    state: str = "ENABLED"
    event_pattern: EventPattern = field(init=False)

    def __post_init__(self) -> None:
        self.event_pattern = EventPattern.load(json.dumps(self.pattern))


def test_each_matching_rule_starts_each_state_machine_target_once() -> None:
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
    rules = [
        Rule("ours", PATTERN, [{"Id": "t", "Arn": machine}]),
        Rule("disabled", PATTERN, [{"Id": "t", "Arn": machine}], state="DISABLED"),
        Rule(
            "other-bucket",
            {**PATTERN, "detail": {"bucket": {"name": ["x"]}}},
            [{"Id": "t", "Arn": machine}],
        ),
    ]
    started: list[tuple[str, str, dict[str, Any]]] = []

    def start(arn: str, name: str, execution_input: str) -> str:
        started.append((arn, name, json.loads(execution_input)))
        return f"{arn}:{name}"

    e = event()
    assert len(s3_events.deliver(e, rules, start)) == 1
    ((arn, name, payload),) = started
    assert arn == machine and payload == e and len(name) == 36
    assert s3_events.deliver(event(key="models/x.zip"), rules, start) == []
