"""Talking to a running local cloud: its endpoint, clients, bucket, state machine, HTTP API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import Credentials

from localcloud.runtime.statefile import read_state

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, read_timeout=120)
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class NotRunning(RuntimeError):
    pass


@dataclass
class Connection:
    endpoint_url: str
    region: str
    api_url: str | None = None
    bucket: str | None = None
    state_machine_arn: str | None = None
    routes: tuple[str, ...] = ()
    _clients: dict[str, BaseClient] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> BaseClient:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=_CONFIG,
                **CREDENTIALS,
            )
        return self._clients[service]

    def environment(self) -> dict[str, str]:
        """What to export so the AWS CLI and boto3 reach this local cloud."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        }

    def the_state_machine(self) -> str:
        if self.state_machine_arn:
            return self.state_machine_arn
        machines = self.client("stepfunctions").list_state_machines()["stateMachines"]
        if len(machines) != 1:
            raise NotRunning(
                f"expected one state machine at {self.endpoint_url}, found {len(machines)}"
            )
        self.state_machine_arn = machines[0]["stateMachineArn"]
        return self.state_machine_arn

    def the_bucket(self) -> str:
        if self.bucket:
            return self.bucket
        buckets = [b["Name"] for b in self.client("s3").list_buckets()["Buckets"]]
        if len(buckets) != 1:
            raise NotRunning(
                f"expected one bucket at {self.endpoint_url}, found {buckets}: name one"
            )
        self.bucket = buckets[0]
        return self.bucket

    def post(
        self, path: str, body: bytes, content_type: str, timeout: float = 60
    ) -> tuple[int, Any]:
        """POST to the HTTP API; returns (status, decoded JSON or text).

        Requests are SigV4-signed with the local credentials, so a route with AWS_IAM
        authorization (``ApiAuth=AWS_IAM``) accepts them like any other.
        """
        if not self.api_url:
            raise NotRunning("no HTTP API URL: start `python -m localcloud up` or pass --api-url")
        signed = AWSRequest(
            method="POST",
            url=self.api_url + path,
            data=body,
            headers={"content-type": content_type},
        )
        credentials = Credentials(
            CREDENTIALS["aws_access_key_id"], CREDENTIALS["aws_secret_access_key"]
        )
        SigV4Auth(credentials, "execute-api", self.region).add_auth(signed)
        request = urllib.request.Request(
            self.api_url + path, data=body, method="POST", headers=dict(signed.headers.items())
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
            reason = getattr(exc, "reason", None) or exc
            raise NotRunning(
                f"the HTTP API at {self.api_url} is not reachable ({reason}): is "
                "`python -m localcloud up` running, or is --api-url right?"
            ) from None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")


def from_state(state: dict[str, Any]) -> Connection:
    machines = state.get("state_machines") or []
    buckets = state.get("buckets") or []
    return Connection(
        endpoint_url=state["endpoint_url"],
        region=state["region"],
        api_url=state.get("api_url"),
        bucket=buckets[0] if len(buckets) == 1 else None,
        state_machine_arn=machines[0] if len(machines) == 1 else None,
        routes=tuple(state.get("routes") or ()),
    )


def api_only(api_url: str, region: str | None = None) -> Connection:
    """A connection to the HTTP API alone (no AWS endpoint): enough to classify. An
    ``api_url`` that already ends in the route (the stack's ``ApiUrl`` output) is cut back
    to the API's base URL."""
    base = api_url.rstrip("/")
    for route in ("/classify",):
        base = base.removesuffix(route)
    return Connection("", region or "us-east-1", base)


def connect(
    state_dir: Path,
    *,
    endpoint_url: str | None = None,
    api_url: str | None = None,
    region: str | None = None,
    bucket: str | None = None,
) -> Connection:
    """The running local cloud: from explicit URLs, else from its state file."""
    if endpoint_url:
        connection = Connection(endpoint_url, region or "us-east-1", api_url, bucket)
        state = read_state(state_dir)
        if state and state["endpoint_url"] == endpoint_url:
            connection = from_state(state)
    else:
        state = read_state(state_dir)
        if state is None:
            raise NotRunning(
                f"no local cloud is running for {state_dir}: start `python -m localcloud up` "
                "(or pass --endpoint-url)"
            )
        connection = from_state(state)
    if api_url:
        connection.api_url = api_url
    if bucket:
        connection.bucket = bucket
    return connection
