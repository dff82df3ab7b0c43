"""mlops.http_events: payload-2.0 events as API Gateway builds them, read back by Powertools."""

from __future__ import annotations

import base64
import datetime
import json
import re

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from mlops.http_events import build_http_api_event
from mlops.http_fields import HUGE, InvalidLength, content_length, decimal
from tests.functions.classify_helpers import FakeContext


@pytest.mark.parametrize(
    ("content_type", "encoded"),
    [
        ("application/json", False),
        ("application/json; charset=utf-8", False),
        ("text/plain", False),
        ("text/csv", False),
        ("application/xml", False),
        ("application/javascript", False),
        ("image/jpeg", True),
        ("application/octet-stream", True),
        ("multipart/form-data; boundary=x", True),
        (None, True),
    ],
)
def test_body_is_base64_encoded_unless_textual(content_type: str | None, encoded: bool) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    event = build_http_api_event("POST", "/classify", "héllo", headers)
    assert event["isBase64Encoded"] is encoded
    body = base64.b64decode(event["body"]).decode() if encoded else event["body"]
    assert body == "héllo"
    assert event["headers"]["content-length"] == str(len("héllo".encode()))


def test_event_shape() -> None:
    now = datetime.datetime(2025, 1, 15, 12, 0, 0, tzinfo=datetime.UTC)
    event = build_http_api_event(
        "post",
        "/classify",
        None,
        [("User-Agent", "curl/8"), ("X-Tag", "a"), ("x-tag", "b"), ("Cookie", "a=1; b=2")],
        query="top_k=3&tag=x&tag=y",
        source_ip="198.51.100.7",
        request_id="req-1",
        now=now,
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /classify"
    assert (event["rawPath"], event["rawQueryString"]) == ("/classify", "top_k=3&tag=x&tag=y")
    assert event["queryStringParameters"] == {"top_k": "3", "tag": "x,y"}
    assert event["headers"]["x-tag"] == "a,b"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["a=1", "b=2"]
    assert "body" not in event and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/classify",
        "protocol": "HTTP/1.1",
        "sourceIp": "198.51.100.7",
        "userAgent": "curl/8",
    }
    assert (context["requestId"], context["stage"], context["routeKey"]) == (
        "req-1",
        "$default",
        "POST /classify",
    )
    assert context["time"] == "15/Jan/2025:12:00:00 +0000"
    assert context["timeEpoch"] == 1736942400000
    assert context["domainName"] == event["headers"]["host"]


def test_request_ids_are_unique() -> None:
    ids = {build_http_api_event("GET", "/")["requestContext"]["requestId"] for _ in range(50)}
    assert len(ids) == 50


def test_powertools_resolver_reads_the_event() -> None:
    app = APIGatewayHttpResolver()

    @app.post("/echo")
    def echo() -> dict[str, object]:
        event = app.current_event
        return {
            "body": base64.b64decode(event.body or "").hex(),
            "type": event.headers.get("Content-Type"),
            "k": event.query_string_parameters.get("top_k"),
            "ip": event.request_context.http.source_ip,
        }

    event = build_http_api_event(
        "POST", "/echo", b"\xff\xd8\xff", {"Content-Type": "image/jpeg"}, query="top_k=2"
    )
    response = app.resolve(event, FakeContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {
        "body": "ffd8ff",
        "type": "image/jpeg",
        "k": "2",
        "ip": "127.0.0.1",
    }


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("7", 7),
        ("0", 0),
        ("007", 7),
        ("9" * 5000, HUGE),  # past int()'s 4,300-digit limit: no ValueError
        ("\u00b2", None),  # "²".isdigit() is True, int("²") a ValueError
        ("\u0663", None),  # Arabic-Indic three: int() takes it
        ("+7", None),
        ("-5", None),
        ("1_000", None),
        (" 7", None),
        ("", None),
    ],
)
def test_decimal_is_ascii_digits_only(raw: str, value: int | None) -> None:
    assert decimal(raw) == value


@pytest.mark.parametrize(
    ("fields", "length"),
    [([], None), (["12"], 12), (["12, 12"], 12), (["12", "12"], 12), (["12,\t12"], 12)],
)
def test_content_length_takes_one_value_or_identical_ones(
    fields: list[str], length: int | None
) -> None:
    assert content_length(fields) == length


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["12, 13"], "conflicting Content-Length values 12, 13"),
        (["12", "13"], "conflicting"),
        (["12,"], "'' is not a number of bytes"),
        (["+12"], "'+12' is not a number of bytes"),
        (["\u00b2"], "is not a number of bytes"),
    ],
)
def test_content_length_refuses_anything_else(fields: list[str], message: str) -> None:
    with pytest.raises(InvalidLength, match=re.escape(message)):
        content_length(fields)
