"""The classify function end to end: real handler, every request form, every error.

The endpoint is botocore's Stubber on a real sagemaker-runtime client (moto's
invoke_endpoint only returns canned bodies); URLs are served by a local HTTPS server
reached through a fake public DNS (see classify_helpers).
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from mlops import endpoint_client
from mlops.api_errors import ApiError
from mlops.classify import Services, Settings, live_services
from mlops.errors import ConfigurationError
from mlops.http_events import build_http_api_event
from tests.functions.classify_helpers import (
    ENV,
    PUBLIC_IP,
    ROOT,
    FakeContext,
    FakeNetwork,
    ImageServer,
    client_tls,
    declaring,
    image_bytes,
    image_server,
    load_classify_app,
    redirect,
    self_signed_certificate,
    serve_bytes,
    server_tls,
)

EVENTS = ROOT / "events" / "classify"
SAMPLE_URL_HOST = "raw.githubusercontent.com"  # the host of the sample url events
REPLY = {
    "predictions": [
        {"label": "7", "index": 7, "probability": 0.93},
        {"label": "1", "index": 1, "probability": 0.05},
    ],
    "logits": [[0.1, 2.0, 0.3, 0.0, 0.0, 0.0, 0.0, 4.9, 0.0, 0.0]],
}
JPEG = image_bytes("JPEG")
PNG = image_bytes("PNG")
ACCOUNT_ID = "123456789012"


def load_event(name: str) -> Any:
    return json.loads((EVENTS / f"{name}.json").read_text())


def event_image(name: str) -> bytes:
    """The image a sample event carries."""
    event = load_event(name)
    body = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"]
    if event["headers"]["content-type"] == "application/json":
        return base64.b64decode(json.loads(body)["image"])
    return body


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return load_classify_app()


@dataclass
class Endpoint:
    stubber: Stubber
    read_timeouts: list[int] = field(default_factory=list)

    def replies(self, reply: Any = REPLY, **expected: Any) -> None:
        raw = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
        params = {
            "EndpointName": ENV["ENDPOINT_NAME"],
            "Body": ANY,
            "ContentType": ANY,
            "Accept": "application/json",
            **expected,
        }
        body = StreamingBody(io.BytesIO(raw), len(raw))
        self.stubber.add_response(
            "invoke_endpoint", {"Body": body, "ContentType": "application/json"}, params
        )

    def fails(self, code: str, message: str, status: int, **fields: Any) -> None:
        self.stubber.add_client_error(
            "invoke_endpoint",
            service_error_code=code,
            service_message=message,
            http_status_code=status,
            modeled_fields=fields or None,
        )


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    stub = Endpoint(Stubber(client))

    def runtime_client(read_timeout: int) -> Any:
        stub.read_timeouts.append(read_timeout)
        return client

    monkeypatch.setattr(endpoint_client, "runtime_client", runtime_client)
    with stub.stubber:
        yield stub
        stub.stubber.assert_no_pending_responses()


def call(app: ModuleType, event: Any, remaining_ms: int = 29_000) -> tuple[int, dict[str, Any]]:
    response = app.lambda_handler(event, FakeContext(remaining_ms=remaining_ms))
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def http(body: bytes | str, content_type: str | None, query: str = "") -> dict[str, Any]:
    headers = {"content-type": content_type} if content_type else {}
    return build_http_api_event("POST", "/classify", body, headers, query=query)


def as_json(doc: Any) -> dict[str, Any]:
    return http(json.dumps(doc), "application/json")


# --- the request forms ---


def test_raw_jpeg_sample_event(app: ModuleType, endpoint: Endpoint) -> None:
    endpoint.replies(Body=event_image("http_raw_jpeg"), ContentType="image/jpeg")
    assert call(app, load_event("http_raw_jpeg")) == (200, REPLY)
    assert endpoint.read_timeouts == [25]


def test_json_image_sample_event_sends_top_k_in_the_endpoints_json_form(
    app: ModuleType, endpoint: Endpoint
) -> None:
    image = event_image("http_json_image")
    sent = json.dumps({"image": base64.b64encode(image).decode(), "top_k": 3}).encode()
    endpoint.replies(Body=sent, ContentType="application/json")
    assert call(app, load_event("http_json_image")) == (200, REPLY)


@pytest.mark.parametrize(
    ("image", "content_type", "sent_as"),
    [
        (PNG, "image/png", "image/png"),
        (PNG, "application/octet-stream", "image/png"),  # sniffed, not trusted
        (image_bytes("GIF"), "image/gif", "application/x-image"),
        (image_bytes("WEBP"), "image/webp", "image/webp"),
        (image_bytes("BMP"), "image/bmp", "application/x-image"),
        (image_bytes("TIFF"), "Image/TIFF; name=a.tif", "application/x-image"),
    ],
)
def test_raw_image_types(
    app: ModuleType, endpoint: Endpoint, image: bytes, content_type: str, sent_as: str
) -> None:
    endpoint.replies(Body=image, ContentType=sent_as)
    assert call(app, http(image, content_type)) == (200, REPLY)


def test_raw_image_with_top_k_in_the_query(app: ModuleType, endpoint: Endpoint) -> None:
    sent = json.dumps({"image": base64.b64encode(JPEG).decode(), "top_k": 2}).encode()
    endpoint.replies(Body=sent, ContentType="application/json")
    assert call(app, http(JPEG, "image/jpeg", query="top_k=2"))[0] == 200


def test_base64_with_line_breaks_and_data_url(app: ModuleType, endpoint: Endpoint) -> None:
    encoded = base64.encodebytes(JPEG).decode()  # wrapped at 76 characters
    endpoint.replies(Body=JPEG, ContentType="image/jpeg")
    assert call(app, as_json({"image": f"data:image/jpeg;base64,{encoded}"}))[0] == 200


def test_direct_invoke_with_an_image(app: ModuleType, endpoint: Endpoint) -> None:
    endpoint.replies(Body=JPEG, ContentType="image/jpeg")
    response = app.lambda_handler({"image": base64.b64encode(JPEG).decode()}, FakeContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == REPLY


# --- url form: the sample events against a local HTTPS server for the sample's host ---


@pytest.fixture
def sample_host(
    app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ImageServer]:
    cert, key = self_signed_certificate(tmp_path, SAMPLE_URL_HOST)
    with image_server(tls=server_tls(cert, key)) as server:
        network = FakeNetwork(server, {SAMPLE_URL_HOST: [PUBLIC_IP]})
        policy = network.policy(tls=lambda: client_tls(cert))
        monkeypatch.setattr(app, "services", live_services(app.settings, policy))
        yield server


@pytest.mark.parametrize("name", ["http_url", "direct_url"])
def test_url_sample_events(
    app: ModuleType, endpoint: Endpoint, sample_host: ImageServer, name: str
) -> None:
    sample_host.routes["/pytorch/hub/master/images/dog.jpg"] = serve_bytes(PNG, "image/jpeg")
    endpoint.replies(Body=PNG, ContentType="image/png")
    assert call(app, load_event(name)) == (200, REPLY)
    assert sample_host.requests == [(SAMPLE_URL_HOST, "/pytorch/hub/master/images/dog.jpg")]


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", 422, "url_refused"),
        ("file:///etc/passwd", 422, "url_refused"),
        ("http://[abc]/x.jpg", 422, "url_refused"),  # malformed: was a 500
        ("http://[::1/x", 422, "url_refused"),
        (f"https://{SAMPLE_URL_HOST}/bad-redirect", 422, "url_refused"),
        ("https://internal.example.test/a.jpg", 422, "url_unusable"),  # unknown to our DNS
        (f"https://{SAMPLE_URL_HOST}/missing.jpg", 422, "url_unusable"),
        (f"https://{SAMPLE_URL_HOST}/page.html", 422, "url_unusable"),
        (f"https://{SAMPLE_URL_HOST}/huge.jpg", 413, "payload_too_large"),
        (f"https://{SAMPLE_URL_HOST}/superscript.jpg", 422, "url_unusable"),  # was a 500
    ],
)
def test_url_errors(
    app: ModuleType, sample_host: ImageServer, url: str, status: int, code: str
) -> None:
    sample_host.routes["/page.html"] = serve_bytes(b"<!doctype html>", "text/html")
    sample_host.routes["/bad-redirect"] = redirect("http://[::1/x")
    sample_host.routes["/superscript.jpg"] = declaring("\u00b2", JPEG)  # "²".isdigit()
    sample_host.routes["/huge.jpg"] = serve_bytes(JPEG + b"\0" * int(ENV["MAX_IMAGE_BYTES"]))
    got_status, body = call(app, as_json({"url": url}))
    assert (got_status, body["error"]) == (status, code)


def test_no_time_left_for_the_url(app: ModuleType) -> None:
    status, body = call(app, as_json({"url": "https://example.com/a.jpg"}), remaining_ms=2000)
    assert (status, body["error"]) == (504, "url_timeout")


# --- bad requests ---


@pytest.mark.parametrize(
    ("event", "status", "message"),
    [
        (http("{not json", "application/json"), 400, "not valid JSON"),
        (http("", "application/json"), 400, "body is empty"),
        (as_json([1, 2]), 400, "must be object"),
        (as_json({}), 400, 'exactly one of "url" or "image"'),
        (as_json({"url": "https://a.example/x.jpg", "image": "AAAA"}), 400, "exactly one"),
        (as_json({"image": "AAAA", "topk": 3}), 400, "must not contain {'topk'}"),
        (as_json({"image": "AAAA", "top_k": 0}), 400, "top_k must be bigger than or equal"),
        (as_json({"image": "AAAA", "top_k": "3"}), 400, "top_k must be integer"),
        (as_json({"image": "AAAA", "top_k": True}), 400, "top_k must be integer"),
        (as_json({"image": 42}), 400, "image must be string"),
        (as_json({"image": "not base64!"}), 400, "not valid base64"),
        (as_json({"url": "x" * 3000}), 400, "url must be shorter"),
        (http(JPEG, "image/jpeg", query="top_k=abc"), 400, "top_k must be an integer"),
        (http(JPEG, "image/jpeg", query="top_k=0"), 400, "top_k must be an integer"),
        (http(JPEG, "image/jpeg", query="top_k=%C2%B2"), 400, "top_k must be an integer"),
        (http(JPEG, "image/jpeg", query="top_k=%2B3"), 400, "top_k must be an integer"),
        (http(JPEG, "image/jpeg", query="top_k=1_0"), 400, "top_k must be an integer"),
        (http(JPEG, "image/jpeg", query="top_k=" + "9" * 5000), 400, "top_k must be an integer"),
        (http(b"", "image/jpeg"), 400, "empty"),
        (http(b"hello", "text/plain"), 415, "unsupported Content-Type 'text/plain'"),
        (http(JPEG, None), 415, "unsupported Content-Type 'none'"),
        (http(b"%PDF-1.7 ...", "image/jpeg"), 415, "not an image"),
        (as_json({"image": base64.b64encode(b"GIF00 nope").decode()}), 415, "not an image"),
        (http(JPEG + b"\0" * 200_000, "image/jpeg"), 413, "the limit is 200000 bytes"),
        (as_json({"image": base64.b64encode(b"\0" * 300_000).decode()}), 413, "more than"),
    ],
)
def test_bad_requests(app: ModuleType, event: Any, status: int, message: str) -> None:
    got_status, body = call(app, event)
    assert got_status == status
    assert set(body) == {"error", "message"}
    assert message in body["message"]


def test_body_marked_base64_that_is_not(app: ModuleType) -> None:
    event = http(JPEG, "image/jpeg")
    event["body"] = "@@not base64@@"
    assert call(app, event) == (
        400,
        {"error": "bad_request", "message": "the request body is marked base64-encoded but is not"},
    )


def test_top_k_too_large_for_the_endpoint_body(app: ModuleType, monkeypatch: Any) -> None:
    monkeypatch.setattr("mlops.classify.INVOKE_BODY_LIMIT", 1000)
    status, body = call(app, http(JPEG + b"\0" * 1000, "image/jpeg", query="top_k=3"))
    assert (status, body["error"]) == (413, "payload_too_large")
    assert "leave out top_k" in body["message"]


def test_other_routes_and_methods(app: ModuleType) -> None:
    response = app.lambda_handler(build_http_api_event("GET", "/classify"), FakeContext())
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST"
    assert json.loads(response["body"])["error"] == "method_not_allowed"
    status, body = call(app, build_http_api_event("POST", "/predict", "{}"))
    assert (status, body["error"]) == (404, "not_found")


# --- endpoint failures ---

MODEL_LOG = f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/imgcls-test"


@pytest.mark.parametrize(
    ("original_status", "original_message", "status", "code", "message"),
    [
        (
            400,
            '{"error": "bad_request", "message": "cannot decode the image: truncated"}',
            400,
            "bad_request",
            "the model could not use the image: cannot decode the image: truncated",
        ),
        (413, "image too large", 413, "payload_too_large", "image too large"),
        (415, '{"message": "unsupported"}', 415, "unsupported_media_type", "unsupported"),
        (406, '{"message": "cannot answer"}', 502, "model_error", "model failed"),
        (500, "CUDA error: out of memory", 502, "model_error", "model failed"),
    ],
)
def test_model_errors(
    app: ModuleType,
    endpoint: Endpoint,
    original_status: int,
    original_message: str,
    status: int,
    code: str,
    message: str,
) -> None:
    endpoint.fails(
        "ModelError",
        f"Received client error ({original_status}) from primary with message ...",
        424,
        OriginalStatusCode=original_status,
        OriginalMessage=original_message,
        LogStreamArn=MODEL_LOG,
    )
    got_status, body = call(app, http(JPEG, "image/jpeg"))
    assert (got_status, body["error"]) == (status, code)
    assert message in body["message"]
    assert "CUDA" not in body["message"]


TIMED_OUT = (
    "Your invocation timed out while waiting for a response from container primary. Review "
    "the latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)


@pytest.mark.parametrize(
    ("fields", "retry_after"),
    [
        ({"OriginalStatusCode": 503, "OriginalMessage": '{"message": "busy"}'}, "1"),
        ({"OriginalStatusCode": 429, "OriginalMessage": "Too Many Requests"}, "1"),
        ({"OriginalStatusCode": 504, "OriginalMessage": '{"message": "took > 60 s"}'}, "5"),
        # SageMaker's own timeout: "Received server error (0)", or no status at all
        ({"OriginalStatusCode": 0, "OriginalMessage": TIMED_OUT}, "5"),
        ({}, "5"),
    ],
)
def test_a_busy_or_timed_out_model_is_503_with_retry_after(
    app: ModuleType, endpoint: Endpoint, fields: dict[str, Any], retry_after: str
) -> None:
    status = fields.get("OriginalStatusCode", 0)
    endpoint.fails(
        "ModelError",
        f'Received server error ({status}) from primary with message "{TIMED_OUT}". See '
        f"https://us-east-1.console.aws.amazon.com/cloudwatch in account {ACCOUNT_ID}",
        424,
        LogStreamArn=MODEL_LOG,
        **fields,
    )
    response = app.lambda_handler(http(JPEG, "image/jpeg"), FakeContext())
    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]) == (503, "endpoint_unavailable")
    assert response["headers"]["Retry-After"] == retry_after
    assert "try again" in body["message"]
    assert ACCOUNT_ID not in response["body"] and "CloudWatch" not in response["body"]


@pytest.mark.parametrize(
    ("code", "message", "http_status", "status", "error", "retry_after"),
    [
        (
            "ValidationError",
            f"Endpoint imgcls-test of account {ACCOUNT_ID} not found.",
            400,
            503,
            "endpoint_unavailable",
            "60",
        ),
        ("ThrottlingException", "Rate exceeded", 400, 503, "endpoint_unavailable", "1"),
        ("ModelNotReadyException", "not ready", 429, 503, "endpoint_unavailable", "1"),
        ("ServiceUnavailable", "unavailable", 503, 503, "endpoint_unavailable", "1"),
        ("InternalFailure", "internal", 500, 502, "model_error", None),
        (
            "AccessDeniedException",
            f"User arn:aws:sts::{ACCOUNT_ID}:assumed-role/x is not authorized",
            403,
            502,
            "model_error",
            None,
        ),
    ],
)
def test_endpoint_errors(
    app: ModuleType,
    endpoint: Endpoint,
    code: str,
    message: str,
    http_status: int,
    status: int,
    error: str,
    retry_after: str | None,
) -> None:
    endpoint.fails(code, message, http_status)
    response = app.lambda_handler(http(JPEG, "image/jpeg"), FakeContext())
    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]) == (status, error)
    assert response["headers"].get("Retry-After") == retry_after
    assert ACCOUNT_ID not in response["body"]


@pytest.mark.parametrize("error", ApiError.__subclasses__())
def test_every_api_error_has_one_shape(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch, error: type[ApiError]
) -> None:
    def invoke(body: bytes, content_type: str, read_timeout: int) -> dict[str, Any]:
        raise error("what happened")

    monkeypatch.setattr(app, "services", Services(fetch=app.services.fetch, invoke=invoke))
    response = app.lambda_handler(http(JPEG, "image/jpeg"), FakeContext())
    assert response["statusCode"] == error.status
    assert json.loads(response["body"]) == {"error": error.code, "message": "what happened"}
    if error.status == 503:  # always a hint when to come back
        assert int(response["headers"]["Retry-After"]) > 0


@dataclass
class RaisingClient:
    """Raises ``error`` from invoke_endpoint, or (``streaming``) while its body is read."""

    error: Exception
    streaming: bool = False

    def invoke_endpoint(self, **_: Any) -> Any:
        if self.streaming:
            return {"Body": self}
        raise self.error

    def read(self) -> bytes:
        raise self.error


RUNTIME_URL = "https://runtime.sagemaker"
UNAVAILABLE = (503, "endpoint_unavailable")


@pytest.mark.parametrize(
    ("error", "streaming", "answer"),
    [
        (ReadTimeoutError(endpoint_url=RUNTIME_URL), False, (504, "endpoint_timeout")),
        (EndpointConnectionError(endpoint_url=RUNTIME_URL), False, UNAVAILABLE),
        (ConnectionClosedError(endpoint_url=RUNTIME_URL), False, UNAVAILABLE),
        (SSLError(endpoint_url=RUNTIME_URL, error="certificate verify failed"), False, UNAVAILABLE),
        (ProxyConnectionError(proxy_url="http://proxy:3128", error="refused"), False, UNAVAILABLE),
        (ResponseStreamingError(error="connection reset"), True, UNAVAILABLE),
        (IncompleteReadError(actual_bytes=10, expected_bytes=90), True, UNAVAILABLE),
        (ReadTimeoutError(endpoint_url=RUNTIME_URL), True, (504, "endpoint_timeout")),
        (RuntimeError(f"bug with context {FakeContext()}"), False, (500, "internal_error")),
    ],
)
def test_endpoint_exceptions(
    app: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    streaming: bool,
    answer: tuple[int, str],
) -> None:
    client = RaisingClient(error, streaming)
    monkeypatch.setattr(endpoint_client, "runtime_client", lambda _: client)
    response = app.lambda_handler(http(JPEG, "image/jpeg"), FakeContext())
    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]) == answer
    assert body["message"]
    if answer[0] == 503:
        assert int(response["headers"]["Retry-After"]) > 0
    assert "Traceback" not in response["body"]
    assert ACCOUNT_ID not in response["body"]


@pytest.mark.parametrize("reply", [b"not json", b'{"logits": [[1.0]]}', b"[1, 2]"])
def test_a_reply_that_is_not_a_classification(
    app: ModuleType, endpoint: Endpoint, reply: bytes
) -> None:
    endpoint.replies(reply)
    status, body = call(app, http(JPEG, "image/jpeg"))
    assert (status, body["error"]) == (502, "model_error")


def test_the_endpoint_read_timeout_fits_the_time_left(app: ModuleType, endpoint: Endpoint) -> None:
    endpoint.replies()
    call(app, http(JPEG, "image/jpeg"), remaining_ms=10_000)
    assert endpoint.read_timeouts == [8]  # 10 s left, less the 1.5 s answer margin


# --- observability ---


def test_logs_and_metrics(
    app: ModuleType, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    # the service's logging handler outlives app reloads: point it at this test's stdout
    app.logger.registered_handler.setStream(sys.stdout)
    endpoint.replies()
    event = load_event("http_raw_jpeg")
    call(app, event)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    log = next(line for line in lines if line.get("message") == "classified")
    assert log["correlation_id"] == event["requestContext"]["requestId"]
    assert (log["form"], log["media_type"], log["top_label"]) == ("binary", "image/jpeg", "7")
    names = {
        metric["Name"]
        for line in lines
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", [])
        for metric in directive["Metrics"]
    }
    assert names == {"DecodeLatency", "EndpointLatency", "ImageBytes", "Responses2xx"}


# --- configuration ---


def test_settings_from_env() -> None:
    settings = Settings.from_env(ENV)
    assert settings == Settings("imgcls-test", 25.0, 5.0, 200_000)
    with pytest.raises(ConfigurationError, match="ENDPOINT_NAME is not set"):
        Settings.from_env({})
    with pytest.raises(ConfigurationError, match="MAX_IMAGE_BYTES='lots' is not an integer"):
        Settings.from_env({"ENDPOINT_NAME": "e", "MAX_IMAGE_BYTES": "lots"})
    with pytest.raises(ConfigurationError, match="URL_FETCH_TIMEOUT_SECONDS"):
        Settings.from_env({"ENDPOINT_NAME": "e", "URL_FETCH_TIMEOUT_SECONDS": "0"})
