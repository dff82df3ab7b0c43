"""Validation of requests against the service models: the Java patterns, the constraint
checks and their messages, the decoding of nested wire parameters."""

from __future__ import annotations

import io
import logging
from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel

from localcloud.services.iam import protocol
from localcloud.services.iam.protocol_params import cbor_params, query_params
from localcloud.validation import constraints, java_patterns, middleware

_SESSION = botocore.session.get_session()
METADATA_VALUE = r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}"


def _input(service: str, operation: str) -> Any:
    return _SESSION.get_service_model(service).operation_model(operation).input_shape


def _errors(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    return constraints.check(_input(service, operation), params)


# --- Java patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (METADATA_VALUE, "accuracy 0.9 reaches 0.7 - no champion", True),
        (METADATA_VALUE, "s3://bucket/data/set.tar.gz", True),
        (METADATA_VALUE, "accuracy 0.9; champion (none)", False),  # finding 1
        (METADATA_VALUE, "model's", False),
        (METADATA_VALUE, "Zürich 東京", True),  # \p{L} is any script's letters
        ("[a-z]+", "abc", True),
        ("[a-z]+", "abc def", False),  # unanchored, but AWS matches the whole value
        (r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "my_endpoint", False),
        (r"\p{Print}+", "tab\there", False),  # Java's POSIX classes are ASCII
        (r"\p{Print}+", "café", False),
        (r"arn:[\p{Alnum}\-]+:lambda:.*", "arn:aws:lambda:x", True),
        (r"\A\S[\p{Print}]*\z", "x y", True),
        (r"\A\S[\p{Print}]*\z", " x", False),
        (".*", "one\nline", False),  # Java's dot stops at every line terminator
        (".*", "one\rline", False),
        (r".*(?:[ \r\n\t].*)*", "two\nlines", True),
        (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "emoji \U0001f600", True),
        (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "bell \x07", False),
        (r"\d+", "١٢", False),  # \d is ASCII in Java
    ],
)
def test_patterns_match_whole_values_as_java_reads_them(
    pattern: str, value: str, matches: bool
) -> None:
    assert java_patterns.matches(pattern, value) is matches


def test_a_quantified_anchor_is_read_as_the_anchor() -> None:
    assert java_patterns.translate(METADATA_VALUE) == r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)$"


def test_every_pattern_of_the_served_services_compiles() -> None:
    middleware.report_uncompilable.cache_clear()
    assert middleware.report_uncompilable() == {}


def test_a_pattern_that_does_not_compile_is_reported_once_by_shape(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = ServiceModel(
        {
            "metadata": {"protocol": "json", "serviceId": "Broken"},
            "operations": {},
            "shapes": {"Name": {"type": "string", "pattern": "[a-z"}},
        },
        "broken",
    )
    monkeypatch.setattr(middleware, "served_models", lambda: {"broken": model})
    middleware.report_uncompilable.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, "localcloud.validation"):
            assert list(middleware.report_uncompilable()) == ["broken.Name"]
            middleware.report_uncompilable()
    finally:
        middleware.report_uncompilable.cache_clear()
    reported = [r.getMessage() for r in caplog.records if "broken.Name" in r.getMessage()]
    assert len(reported) == 1 and "does not compile" in reported[0]
    assert java_patterns.matches("[a-z", "a") is None  # that one check is not made


# --- constraints and AWS's messages --------------------------------------------------------


def test_the_old_gate_value_is_refused_as_aws_refuses_it() -> None:
    errors = _errors(
        "sagemaker",
        "CreateModelPackage",
        {"CustomerMetadataProperties": {"run_id": "r1", "gate": "0.9 >= 0.7; no champion"}},
    )
    assert errors == [
        "Value '{run_id=r1, gate=0.9 >= 0.7; no champion}' at 'customerMetadataProperties' "
        "failed to satisfy constraint: Map value must satisfy constraint: "
        f"[Member must satisfy regular expression pattern: {METADATA_VALUE}]"
    ]
    assert constraints.message(errors).startswith("1 validation error detected: Value '{")


def test_each_constraint_kind_has_aws_wording() -> None:
    errors = _errors(
        "sagemaker",
        "CreateEndpoint",
        {"EndpointName": "x" * 64, "Tags": [{"Key": "", "Value": "v"}] * 51},
    )
    assert errors[0] == (
        f"Value '{'x' * 64}' at 'endpointName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63"
    )
    assert errors[1].endswith(  # each broken constraint is an error of its own
        "at 'endpointName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
    )
    assert errors[2] == (
        "Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null"
    )
    assert errors[3].endswith(
        "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"
    )
    assert errors[4].endswith(
        "at 'tags.1.member.key' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    message = constraints.message(errors)
    assert message.startswith(f"{len(errors)} validation errors detected: Value '")
    assert "; Value null at 'endpointConfigName'" in message


def test_numbers_enums_and_list_members() -> None:
    assert _errors(
        "stepfunctions",
        "ListExecutions",
        {
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
            "maxResults": 1001,
        },
    ) == [
        "Value '1001' at 'maxResults' failed to satisfy constraint: "
        "Member must have value less than or equal to 1000"
    ]
    (enum,) = _errors(
        "application-autoscaling", "DescribeScalableTargets", {"ServiceNamespace": "nope"}
    )
    assert "Member must satisfy enum value set: [ecs, " in enum
    (listed,) = _errors("cloudwatch", "DescribeAlarms", {"AlarmNames": ["ok", "x" * 256]})
    assert listed.endswith(
        "at 'alarmNames' failed to satisfy constraint: Member must satisfy constraint: "
        "[Member must have length less than or equal to 255]"
    )
    assert listed.startswith("Value '[ok, xxx")


def test_map_keys_are_reported_together() -> None:
    (error,) = _errors(
        "lambda",
        "TagResource",
        {"Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "Tags": {"k" * 129: "v"}},
    )
    assert "at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [" in error
    assert "Member must have length less than or equal to 128" in error


def test_a_sensitive_value_is_not_printed() -> None:
    errors = _errors(
        "lambda",
        "UpdateFunctionConfiguration",
        {"FunctionName": "f", "Environment": {"Variables": {"1bad": "secret"}}},
    )
    assert errors and all("secret" not in e for e in errors)
    assert errors[0].startswith(
        "Value at 'environment.variables' failed to satisfy constraint: Map keys"
    )


def test_lengths_count_utf16_units_as_java_does() -> None:
    emoji = "\U0001f600"  # one character, two UTF-16 units
    assert _errors("events", "PutRule", {"Name": "r", "Description": emoji * 257}) == [
        f"Value '{emoji * 257}' at 'description' failed to satisfy constraint: "
        "Member must have length less than or equal to 512"
    ]
    assert _errors("events", "PutRule", {"Name": "r", "Description": emoji * 256}) == []


def test_a_valid_request_has_no_errors() -> None:
    assert (
        _errors("sagemaker", "CreateModelPackageGroup", {"ModelPackageGroupName": "mlops-models"})
        == []
    )


# --- the middleware -----------------------------------------------------------------------


def _served(body: bytes, target: str = "SageMaker.DescribeEndpoint", path: str = "/") -> str:
    """The status the validating app answers a signed POST with (the service behind it
    answers 200)."""

    def service(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/x-amz-json-1.1",
        "wsgi.input": io.BytesIO(body),
        "HTTP_X_AMZ_TARGET": target,
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/"
        f"{'monitoring' if 'operation' in path else 'sagemaker'}/aws4_request",
    }
    answer = middleware.wrap(service)(environ, lambda status, headers: statuses.append(status))
    assert b"".join(answer) == body or statuses[0].startswith("400")  # the body reaches it
    return statuses[0]


def test_an_invalid_request_is_answered_before_the_service() -> None:
    assert _served(b'{"EndpointName": "my_endpoint"}').startswith("400")
    assert _served(b'{"EndpointName": "my-endpoint"}').startswith("200")


@pytest.mark.parametrize("body", [b"[1]", b"{not json", b"null"])
def test_a_body_that_is_no_json_object_is_left_to_the_service(body: bytes) -> None:
    assert _served(body).startswith("200")


def test_a_body_that_is_no_cbor_is_left_to_the_service() -> None:
    path = "/service/GraniteServiceVersion20100801/operation/DescribeAlarms"
    assert _served(b"\xff\x1f", target="", path=path).startswith("200")


# --- the parameters on the wire -----------------------------------------------------------


def test_query_members_are_decoded_into_the_model_values() -> None:
    form = {
        "Action": "TagRole",
        "RoleName": "r",
        "Tags.member.1.Key": "team",
        "Tags.member.1.Value": "ml",
        "Tags.member.2.Key": "env",
        "Tags.member.2.Value": "dev",
    }
    assert query_params(_input("iam", "TagRole"), form) == {
        "RoleName": "r",
        "Tags": [{"Key": "team", "Value": "ml"}, {"Key": "env", "Value": "dev"}],
    }
    sns = {
        "Name": "t",
        "Attributes.entry.1.key": "DisplayName",
        "Attributes.entry.1.value": "alarms",
        "Tags.member.1.Key": "k",
        "Tags.member.1.Value": "v",
    }
    assert query_params(_input("sns", "CreateTopic"), sns) == {
        "Name": "t",
        "Attributes": {"DisplayName": "alarms"},
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    metric = {
        "Namespace": "n",
        "MetricData.member.1.MetricName": "m",
        "MetricData.member.1.Value": "1.5",
        "MetricData.member.1.Dimensions": "",
    }
    assert query_params(_input("cloudwatch", "PutMetricData"), metric) == {
        "Namespace": "n",
        "MetricData": [{"MetricName": "m", "Value": 1.5, "Dimensions": []}],
    }


def test_cbor_bodies_are_decoded() -> None:
    from botocore.serialize import create_serializer

    model = _SESSION.get_service_model("cloudwatch")
    op = model.operation_model("DescribeAlarms")
    request = create_serializer("smithy-rpc-v2-cbor").serialize_to_request(
        {"AlarmNames": ["a", "b"], "MaxRecords": 10}, op
    )
    assert cbor_params(op.input_shape, request["body"]) == {
        "AlarmNames": ["a", "b"],
        "MaxRecords": 10,
    }


def test_an_unsigned_json_request_names_its_service() -> None:
    signature = protocol.unsigned_signature({"x-amz-target": "SageMaker.DescribeEndpoint"})
    assert signature is not None and signature.signing_name == "sagemaker"
    assert protocol.unsigned_signature({}) is None
