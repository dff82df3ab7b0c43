"""Smoke-test a fresh deployment through the same path users take.

The held-out images come from the model itself (smoke_set.json in model.tar.gz, written
by train.py), read by streaming the archive: the data set is never downloaded. Each image
goes to the inference function as an API Gateway HTTP API event, so the test covers the
function, its permissions, the endpoint and the model server together.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from mlops.http_events import build_http_api_event
from mlops.s3 import read_tar_members

MODEL_JSON = "model.json"
SMOKE_SET = "smoke_set.json"
ROUTE_PATH = "/classify"


class SmokeFailure(Exception):
    """The deployment answered wrongly; the message is the execution's failure cause."""


def load_smoke_set(s3: Any, model_artifact: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """model.json and the smoke items from the model archive (one streaming pass)."""
    members = read_tar_members(s3, model_artifact, (MODEL_JSON, SMOKE_SET))
    missing = [name for name in (MODEL_JSON, SMOKE_SET) if name not in members]
    if missing:
        raise SmokeFailure(f"{model_artifact} has no {' or '.join(missing)}")
    try:
        model = json.loads(members[MODEL_JSON])
        items = json.loads(members[SMOKE_SET])["items"]
        int(model["num_classes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SmokeFailure(
            f"{model_artifact}: unreadable {MODEL_JSON}/{SMOKE_SET}: {exc!r}"
        ) from None
    if not items:
        raise SmokeFailure(f"{model_artifact}: {SMOKE_SET} holds no images")
    return model, items


def classify(
    lambda_client: Any, function_name: str, item: Mapping[str, Any], request_id: str
) -> dict:
    """Send one image as a user would; the parsed JSON reply body (SmokeFailure if none)."""
    event = build_http_api_event(
        "POST",
        ROUTE_PATH,
        body=base64.b64decode(item["image"]),
        headers={"content-type": item.get("content_type", "image/jpeg")},
        request_id=request_id,
    )
    response = lambda_client.invoke(
        FunctionName=function_name,
        InvocationType="RequestResponse",
        Payload=json.dumps(event).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise SmokeFailure(f"the inference function failed: {message}")
    if not isinstance(payload, dict) or payload.get("statusCode") != 200:
        status = payload.get("statusCode") if isinstance(payload, dict) else None
        body = payload.get("body") if isinstance(payload, dict) else payload
        raise SmokeFailure(f"the inference function answered {status}: {str(body)[:300]}")
    try:
        return json.loads(payload["body"])
    except (KeyError, TypeError, ValueError):
        raise SmokeFailure("the inference function's reply body is not JSON") from None


def check_reply(reply: Mapping[str, Any], num_classes: int) -> int:
    """The predicted class index, after checking the reply against the inference contract."""
    try:
        logits, best = reply["logits"], reply["predictions"][0]
        width, index = len(logits[0]), int(best["index"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise SmokeFailure(f"reply lacks predictions/logits: {json.dumps(reply)[:300]}") from None
    if width != num_classes:
        raise SmokeFailure(
            f"the endpoint returned {width} class scores, the model has {num_classes}"
        )
    if not 0 <= index < num_classes:
        raise SmokeFailure(f"predicted class index {index} is outside 0..{num_classes - 1}")
    return index


def run_smoke_test(
    s3: Any,
    lambda_client: Any,
    function_name: str,
    model_artifact: str,
    min_accuracy: float,
    request_prefix: str,
) -> dict[str, Any]:
    """``passed`` with the accuracy over the smoke images, or a ``reason`` for failing."""
    result: dict[str, Any] = {
        "passed": False,
        "accuracy": None,
        "images": 0,
        "correct": 0,
        "min_accuracy": min_accuracy,
        "num_classes": None,
    }
    try:
        model, items = load_smoke_set(s3, model_artifact)
        num_classes = int(model["num_classes"])
        result["num_classes"] = num_classes
        for position, item in enumerate(items):
            reply = classify(lambda_client, function_name, item, f"{request_prefix}-{position}")
            result["images"] += 1
            result["correct"] += int(check_reply(reply, num_classes) == int(item["index"]))
    except SmokeFailure as exc:
        return {**result, "reason": f"smoke test failed: {exc}"}
    accuracy = result["correct"] / result["images"]
    result.update(accuracy=accuracy, passed=accuracy >= min_accuracy)
    verb = "reaches" if result["passed"] else "is below"
    result["reason"] = (
        f"smoke-test accuracy {accuracy:.4f} ({result['correct']}/{result['images']} images) "
        f"{verb} the required {min_accuracy:.4f}"
    )
    return result
