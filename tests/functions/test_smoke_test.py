"""SmokeTest: held-out images from the model archive through the inference function."""

from __future__ import annotations

import base64
import io
import json
import random
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY
from PIL import Image

from mlops.s3 import read_tar_members
from tests.conftest import AwsRecorder, load_event, load_handler
from tests.data_helpers import tar_gz
from tests.functions.pipeline_helpers import stubbed
from tests.template_support import BUCKET, set_function_environment

FUNCTION = "SmokeTestFunction"
EVENT = load_event("smoke_test/model.json")
CLASSES = ["cat", "dog", "fox"]


def jpeg(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


ITEMS = [
    {
        "label": label,
        "index": index,
        "content_type": "image/jpeg",
        "image": jpeg((index * 80, 0, 0)),
    }
    for index, label in enumerate(CLASSES)
] * 2


def standard_members(num_classes: int = 3, items: list[dict] | None = None) -> dict[str, bytes]:
    model_json = {"format": 1, "arch": "resnet18", "num_classes": num_classes, "classes": CLASSES}
    return {
        "model.pth": bytes(2_000_000),  # streamed past, never kept
        "model.json": json.dumps(model_json).encode(),
        "smoke_set.json": json.dumps(
            {"format": 1, "items": ITEMS if items is None else items}
        ).encode(),
        "code/inference.py": b"",
    }


@pytest.fixture
def app(aws: AwsRecorder, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    set_function_environment(monkeypatch, FUNCTION)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return load_handler("smoke_test")


def put_model(members: dict[str, bytes]) -> None:
    key = EVENT["model_artifact"].split("/", 3)[3]
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=tar_gz(members))


def reply(predicted: int, width: int = 3, status: int = 200) -> dict[str, Any]:
    body = {
        "predictions": [{"label": CLASSES[predicted % 3], "index": predicted, "probability": 0.9}],
        "logits": [[0.1] * width],
    }
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def payload(value: Any) -> StreamingBody:
    raw = json.dumps(value).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def smoke(
    app: ModuleType, aws: AwsRecorder, replies: list[Any], error: bool = False
) -> dict[str, Any]:
    with stubbed("lambda") as lambda_:
        for answer in replies:
            response: dict[str, Any] = {"StatusCode": 200, "Payload": payload(answer)}
            if error:
                response["FunctionError"] = "Unhandled"
            expected = {
                "FunctionName": "mlops-classify",
                "InvocationType": "RequestResponse",
                "Payload": ANY,
            }
            lambda_.add_response("invoke", response, expected)
        return aws.invoke(app, EVENT)


def test_a_good_model_passes_through_the_users_path(app, aws) -> None:
    put_model(standard_members())
    result = smoke(app, aws, [reply(item["index"]) for item in ITEMS])
    assert result == {
        "passed": True,
        "accuracy": 1.0,
        "images": 6,
        "correct": 6,
        "min_accuracy": 0.6,
        "num_classes": 3,
        "reason": "smoke-test accuracy 1.0000 (6/6 images) reaches the required 0.6000",
    }
    invocations = [c for c in aws.calls if c.operation == "Invoke"]
    event = json.loads(invocations[0].params["Payload"])
    assert (event["version"], event["routeKey"], event["rawPath"]) == (
        "2.0",
        "POST /classify",
        "/classify",
    )
    assert event["headers"]["content-type"] == "image/jpeg" and event["isBase64Encoded"] is True
    assert event["body"] == ITEMS[0]["image"]


def test_low_accuracy_fails(app, aws) -> None:
    put_model(standard_members())
    result = smoke(app, aws, [reply(0)] * len(ITEMS))
    assert (result["passed"], result["correct"]) == (False, 2)
    assert (
        result["reason"] == "smoke-test accuracy 0.3333 (2/6 images) is below the required 0.6000"
    )


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        (reply(0, width=10), False, "the endpoint returned 10 class scores, the model has 3"),
        (reply(0, status=502), False, "the inference function answered 502"),
        (
            {"errorMessage": "boom", "errorType": "RuntimeError"},
            True,
            "the inference function failed: boom",
        ),
        ({"statusCode": 200, "body": "<html>"}, False, "reply body is not JSON"),
        (reply(7), False, "predicted class index 7 is outside 0..2"),
    ],
)
def test_a_wrong_reply_fails_at_once(app, aws, answer: Any, error: bool, reason: str) -> None:
    put_model(standard_members())
    result = smoke(app, aws, [answer], error=error)
    assert result["passed"] is False and result["accuracy"] is None
    assert reason in result["reason"]


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ({"model.pth": b"", "model.json": b"{}"}, "has no smoke_set.json"),
        (standard_members(items=[]), "smoke_set.json holds no images"),
    ],
)
def test_a_model_without_smoke_images_fails(
    app, aws, members: dict[str, bytes], reason: str
) -> None:
    put_model(members)
    result = smoke(app, aws, [])
    assert result["passed"] is False and reason in result["reason"]


class CountingBody(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def test_the_archive_is_read_only_up_to_the_wanted_members() -> None:
    members = {
        "model.json": b"{}",
        "smoke_set.json": b"{}",
        "model.pth": random.Random(0).randbytes(2_000_000),
    }
    archive = tar_gz(members)
    body = CountingBody(archive)

    class FakeS3:
        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            return {"Body": body}

    found = read_tar_members(FakeS3(), "s3://b/model.tar.gz", ["model.json", "smoke_set.json"])
    assert found == {"model.json": b"{}", "smoke_set.json": b"{}"}
    assert body.consumed < len(archive) / 2
