"""inference.py under the real SageMaker PyTorch inference toolkit, on a model from train.py.

The toolkit's HandlerService runs in a child interpreter that sees only the model's
``code/`` directory (as in the serving container), driven with a fake TorchServe context.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import boto3
import inference
import pytest
import torch
from botocore.stub import Stubber

from mlops import endpoint_client
from mlops.http_events import build_http_api_event
from tests.functions.classify_helpers import ENV, FakeContext, load_classify_app
from tests.training.conftest import FAST_FLAGS
from tests.training.serving_helpers import image_bytes

DRIVER = Path(__file__).with_name("toolkit_driver.py")


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory, tiny_data):
    model_dir = tmp_path_factory.mktemp("trained") / "model"
    result = subprocess.run(
        [
            sys.executable, "-m", "training.train", *FAST_FLAGS, "--epochs", "1",
            "--data-dir", str(tiny_data), "--model-dir", str(model_dir),
            "--output-dir", str(model_dir.parent / "output"),
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def run_toolkit(model_dir: Path, requests: list[dict], tmp_path: Path) -> list[dict]:
    requests_file = tmp_path / "requests.json"
    requests_file.write_text(json.dumps(requests))
    result = subprocess.run(
        [sys.executable, "-I", str(DRIVER), str(model_dir), str(requests_file)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    *responses, origin = lines
    # the handlers imported the model's own copy of imgcls, not the repository's
    assert Path(origin["imgcls"]).is_relative_to(model_dir / "code")
    return responses


def request(body: bytes, content_type: str, accept: str | None = None) -> dict:
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    return {"headers": headers, "body": base64.b64encode(body).decode()}


def test_toolkit_serves_a_trained_model(trained_model, tmp_path):
    smoke = json.loads((trained_model / "smoke_set.json").read_text())["items"]
    known = [base64.b64decode(item["image"]) for item in smoke]
    as_json = json.dumps({"image": smoke[1]["image"], "top_k": 2}).encode()
    responses = run_toolkit(
        trained_model,
        [
            *(request(raw, "image/jpeg") for raw in known),
            request(as_json, "application/json", accept="application/json"),
            request(as_json, "application/json; charset=utf-8"),
        ],
        tmp_path,
    )
    model = inference.model_fn(str(trained_model))
    meta = json.loads((trained_model / "model.json").read_text())
    for raw, response in zip(known, responses, strict=False):
        assert response["status"] is None  # success: the toolkit leaves the status alone
        assert response["content_type"] == "application/json"
        body = json.loads(response["body"])
        probabilities = [p["probability"] for p in body["predictions"]]
        assert len(probabilities) == min(5, meta["num_classes"])
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)  # k covers all 3 classes
        assert {p["label"] for p in body["predictions"]} <= set(meta["classes"])
        local = inference.predict_fn(inference.input_fn(raw, "image/jpeg"), model)
        assert torch.allclose(torch.tensor(body["logits"][0]), local.logits, atol=1e-4)
        assert body["predictions"][0]["index"] == int(local.logits.argmax())
    for response in responses[len(known) :]:
        body = json.loads(response["body"])
        assert len(body["predictions"]) == 2
        local = inference.predict_fn(inference.input_fn(known[1], "image/jpeg"), model)
        assert body["predictions"][0]["label"] == meta["classes"][int(local.logits.argmax())]


def test_toolkit_answers_bad_input_with_its_status(trained_model, tmp_path):
    responses = run_toolkit(
        trained_model,
        [
            request(b"not an image", "image/jpeg"),
            request(json.dumps({"url": "http://example.com/a.jpg"}).encode(), "application/json"),
            request(image_bytes(), "text/plain"),
            request(image_bytes(), "image/jpeg", accept="text/csv"),
        ],
        tmp_path,
    )
    statuses = [response["status"] for response in responses]
    assert statuses == [
        [400, "Bad Request"],
        [400, "Bad Request"],
        [415, "Unsupported Media Type"],
        [406, "Not Acceptable"],
    ]
    # the toolkit's error body is the message followed by a traceback
    assert responses[0]["body"].startswith("the body is not an image")
    assert "does not download URLs" in responses[1]["body"]


def test_the_api_passes_on_the_toolkits_message_without_its_traceback(
    trained_model, tmp_path, monkeypatch
):
    """The toolkit's real error bodies, as SageMaker hands them to the classify function
    (``ModelError`` with ``OriginalStatusCode``/``OriginalMessage``)."""
    jpeg = image_bytes(size=(64, 64))
    cases = [
        request(jpeg[: len(jpeg) // 2], "image/jpeg"),  # truncated
        request(b"\xff\xd8\xff" + b"\x00" * 64, "image/jpeg"),  # JPEG magic, no image
        request(jpeg, "text/plain"),
    ]
    responses = run_toolkit(trained_model, cases, tmp_path)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    app = load_classify_app()
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    monkeypatch.setattr(endpoint_client, "runtime_client", lambda _: client)
    for case, response in zip(cases, responses, strict=True):
        status, phrase = response["status"]
        toolkit_body = response["body"]
        assert "Traceback (most recent call last)" in toolkit_body  # what AWS callers got
        with Stubber(client) as stubber:
            stubber.add_client_error(
                "invoke_endpoint",
                service_error_code="ModelError",
                service_message=f"Received client error ({status}) from primary with message "
                f'"{toolkit_body}". See https://console.aws.amazon.com/cloudwatch/home',
                http_status_code=424,
                modeled_fields={
                    "OriginalStatusCode": status,
                    "OriginalMessage": toolkit_body,
                    "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:x",
                },
            )
            # every case's bytes start as a JPEG: the function forwards them
            raw = base64.b64decode(case["body"])
            event = build_http_api_event("POST", "/classify", raw, {"content-type": "image/jpeg"})
            reply = app.lambda_handler(event, FakeContext())
        body = json.loads(reply["body"])
        assert reply["statusCode"] == status, (phrase, body)
        first_line = toolkit_body.split("\n", 1)[0].strip()
        assert body["message"] == f"the model could not use the image: {first_line}"[:300]
        for leak in ("Traceback", 'File "', "\n", "imgcls/", "123456789012"):
            assert leak not in body["message"]
