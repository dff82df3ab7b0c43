"""ApiAuth=AWS_IAM in the local HTTP API: SigV4-signed requests pass, the rest get API
Gateway's 403; with ApiAuth=NONE (the default) the route stays public."""

from __future__ import annotations

import datetime
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from localcloud.cloudformation.template import resolve_stack
from localcloud.runtime.connection import Connection
from localcloud.services.apigateway import sigv4_auth
from localcloud.services.apigateway.http_api import HttpApi
from localcloud.services.lambda_.worker_pool import InvokeResult
from tests.conftest import REPO

REGION = "eu-west-1"
BODY = json.dumps({"url": "http://example.invalid/dog.jpg"}).encode()


def api_for(auth: str, calls: list[bytes]) -> HttpApi:
    stack = resolve_stack(
        REPO / "template.yaml", region=REGION, stack_name="auth", overrides={"ApiAuth": auth}
    )

    def invoke(function: str, event: bytes) -> InvokeResult:
        calls.append(event)
        return InvokeResult(json.dumps({"statusCode": 200, "body": "{}"}).encode())

    return HttpApi(stack.functions, invoke, account_id=stack.account_id, region=REGION)


@pytest.fixture
def iam_api() -> Iterator[tuple[HttpApi, list[bytes]]]:
    calls: list[bytes] = []
    api = api_for("AWS_IAM", calls)
    api.start()
    try:
        yield api, calls
    finally:
        api.stop()


def signed_headers(
    api: HttpApi,
    *,
    key: str = "testing",
    secret: str = "testing",
    service: str = "execute-api",
    region: str = REGION,
    body: bytes = BODY,
    when: datetime.datetime | None = None,
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=f"{api.url}/classify",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    auth = SigV4Auth(Credentials(key, secret), service, region)
    if when is not None:  # botocore signs "now"; sign another time by hand
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        canonical = auth.canonical_request(request)
        signature = auth.signature(auth.string_to_sign(request, canonical), request)
        scope = f"{key}/{when:%Y%m%d}/{region}/{service}/aws4_request"
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={scope}, "
            f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, "
            f"Signature={signature}"
        )
    else:
        auth.add_auth(request)
    return dict(request.headers.items())


def post(api: HttpApi, headers: dict[str, str], body: bytes = BODY) -> tuple[int, Any]:
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/classify", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_signed_request_reaches_the_function(iam_api: tuple[HttpApi, list[bytes]]) -> None:
    api, calls = iam_api
    assert post(api, signed_headers(api)) == (200, {})
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, "Forbidden"),
        ({"Authorization": "Bearer abc"}, "requires 'AWS4-HMAC-SHA256' as its algorithm"),
        ({"key": "AKIAOTHER"}, "The security token included in the request is invalid."),
        ({"secret": "wrong"}, "The request signature we calculated does not match"),
        ({"service": "lambda"}, "Credential should be scoped to correct service: 'execute-api'."),
        ({"region": "us-west-2"}, "scoped to a valid region, not 'us-west-2'."),
        ({"when": "old"}, "Signature expired: "),
        ({"body": b"{}"}, "The request signature we calculated does not match"),
    ],
)
def test_anything_else_gets_api_gateways_403(
    iam_api: tuple[HttpApi, list[bytes]], change: dict[str, Any], message: str
) -> None:
    api, calls = iam_api
    if not change:
        headers = {"Content-Type": "application/json"}
    elif "Authorization" in change:
        headers = {**signed_headers(api), **change}
    elif change.get("when") == "old":
        old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
        headers = signed_headers(api, when=old)
    else:
        headers = signed_headers(api, **change)
    status, reply = post(api, headers)  # the body sent is always BODY
    assert status == 403
    assert list(reply) == ["message"] and message in reply["message"]
    assert calls == []


def test_the_cli_connection_signs_its_requests(iam_api: tuple[HttpApi, list[bytes]]) -> None:
    api, calls = iam_api
    connection = Connection(endpoint_url="http://127.0.0.1:9", region=REGION, api_url=api.url)
    assert connection.post("/classify", BODY, "application/json") == (200, {})
    assert len(calls) == 1


def test_without_api_auth_the_route_is_public() -> None:
    calls: list[bytes] = []
    api = api_for("NONE", calls)
    api.start()
    try:
        assert post(api, {"Content-Type": "application/json"}) == (200, {})
    finally:
        api.stop()
    assert len(calls) == 1


def test_a_signature_within_the_clock_skew_passes() -> None:
    now = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
    request = AWSRequest(method="POST", url="http://h:1/classify", data=b"x", headers={})
    request.context["timestamp"] = "20261129T115000Z"
    request.headers["X-Amz-Date"] = "20261129T115000Z"
    auth = SigV4Auth(Credentials("testing", "testing"), "execute-api", REGION)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    headers = [
        ("Host", "h:1"),
        ("X-Amz-Date", "20261129T115000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261129/eu-west-1/execute-api/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}",
        ),
    ]
    assert (
        sigv4_auth.authorize("POST", "/classify", headers, b"x", region=REGION, now=now)
        == "testing"
    )
    with pytest.raises(sigv4_auth.Denied, match="Signature expired"):
        later = now + datetime.timedelta(minutes=16)
        sigv4_auth.authorize("POST", "/classify", headers, b"x", region=REGION, now=later)
