"""API Gateway's IAM authorization of a request: a valid Signature Version 4 or a 403.

The local cloud knows one key pair (``client.CREDENTIALS``): a request signed with it for
``execute-api`` in the stack's region, within 15 minutes of now, passes; anything else gets
the 403 ``{"message": ...}`` API Gateway answers (missing or malformed signature, wrong
scope, expired, unknown key, signature mismatch). IAM policies on ``execute-api:Invoke``
are not evaluated here.
"""

from __future__ import annotations

import datetime
import hmac
import re
from collections.abc import Mapping, Sequence

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from localcloud.runtime.connection import CREDENTIALS

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
MAX_SKEW = datetime.timedelta(minutes=15)
KNOWN_KEYS = {CREDENTIALS["aws_access_key_id"]: CREDENTIALS["aws_secret_access_key"]}
_PART = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]*)")


class Denied(Exception):
    """The request is refused; ``str()`` is API Gateway's message."""


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def authorize(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    region: str,
    now: datetime.datetime | None = None,
    keys: Mapping[str, str] = KNOWN_KEYS,
) -> str:
    """The access key id of a correctly signed request; raises Denied otherwise."""
    authorization = _header(headers, "authorization")
    if not authorization:
        raise Denied("Forbidden")
    if not authorization.startswith(ALGORITHM + " "):
        raise Denied(
            f"Authorization header requires '{ALGORITHM}' as its algorithm (Signature "
            "Version 4). Authorization=" + authorization.split(" ", 1)[0]
        )
    parts = dict(_PART.findall(authorization))
    amz_date = _header(headers, "x-amz-date")
    missing = [f"Authorization header requires '{p}' parameter." for p in
               ("Credential", "Signature", "SignedHeaders") if not parts.get(p)]  # fmt: skip
    if not amz_date:
        missing.append("Authorization header requires existence of a 'X-Amz-Date' header.")
    if missing:
        raise Denied(" ".join(missing))
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise Denied(f"Credential should be scoped correctly: {parts['Credential']!r}.")
    key_id, day, scope_region, service = scope[:4]
    if service != SERVICE:
        raise Denied(f"Credential should be scoped to correct service: '{SERVICE}'.")
    if scope_region != region:
        raise Denied(f"Credential should be scoped to a valid region, not '{scope_region}'.")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        raise Denied(f"Invalid X-Amz-Date {amz_date!r}: expected YYYYMMDD'T'HHMMSS'Z'.") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if abs(now - signed_at) > MAX_SKEW:
        raise Denied(
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - MAX_SKEW):%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} - 15 min.)"
        )
    if day != amz_date[:8]:
        raise Denied(f"Credential date {day} does not match X-Amz-Date {amz_date}.")
    secret = keys.get(key_id)
    if secret is None:
        raise Denied("The security token included in the request is invalid.")
    signed = parts["SignedHeaders"].split(";")
    if "host" not in signed:
        raise Denied("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    request = AWSRequest(
        method=method,
        url=f"http://{_header(headers, 'host')}{target}",
        data=body,
        headers={name: _header(headers, name) or "" for name in signed},
    )
    request.context["timestamp"] = amz_date
    token = _header(headers, "x-amz-security-token")
    auth = SigV4Auth(Credentials(key_id, secret, token), SERVICE, region)
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, parts["Signature"]):
        raise Denied(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details."
        )
    return key_id
