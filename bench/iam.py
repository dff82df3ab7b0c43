"""What IAM enforcement costs the local cloud: the evaluator's start, one decision (uncached:
a round trip to the node helper running iam-simulate; cached), and one enforced S3 call over
HTTP against the same call unrestricted.

    python -m bench.iam [--calls N]

Goal: an evaluation well under a few milliseconds (the node process starts once, not per
call).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import boto3

from localcloud.services.iam.authorize import Authorizer, Principal
from localcloud.services.iam.evaluator import Evaluator
from localcloud.services.iam.request_context import Check, required_checks

REGION = "us-east-1"
ACCOUNT = "123456789012"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bench/*"},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::bench",
            "Condition": {"StringLike": {"s3:prefix": "data/*"}},
        },
    ],
}


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(samples) * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.iam", description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    reference = Evaluator()
    began = time.perf_counter()
    reference.action("s3", "GetObject")
    print(f"evaluator start (node + iam-data): {(time.perf_counter() - began) * 1000:.0f} ms")
    principal = Principal(
        f"arn:aws:iam::{ACCOUNT}:role/bench", "bench", ({"name": "p", "policy": POLICY},)
    )
    authorizer = Authorizer(reference)
    uncached, cached, contexts = [], [], []
    for i in range(args.calls):
        check = Check("s3:GetObject", f"arn:aws:s3:::bench/data/{i}.jpg")
        t = time.perf_counter()
        authorizer.decide(principal, check)
        uncached.append(time.perf_counter() - t)
        t = time.perf_counter()
        authorizer.decide(principal, check)
        cached.append(time.perf_counter() - t)
        t = time.perf_counter()
        params = {"Bucket": "bench", "Prefix": f"data/{i}"}
        required_checks("s3", "ListObjectsV2", params, region=REGION, account=ACCOUNT)
        contexts.append(time.perf_counter() - t)
    print(f"request context of a call:          {_ms(contexts)}")
    print(f"decision, uncached (node round trip): {_ms(uncached)}")
    print(f"decision, cached:                     {_ms(cached)}")
    _http(args.calls, principal)
    reference.close()
    return 0


def _http(calls: int, principal: Principal) -> None:
    """HeadObject over HTTP: signed by a role session (enforced) vs by the local cloud's key."""
    from moto.server import ThreadedMotoServer

    from localcloud.services import iam

    enforcer = iam.Enforcer(_Empty())
    enforcer.policies[principal.role_arn] = principal.policies
    keys = enforcer.credentials(principal.role_arn, principal.session)
    iam.install(enforcer)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
        session = boto3.session.Session(region_name=REGION)
        admin = session.client(
            "s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        role = session.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=keys["AWS_SESSION_TOKEN"],
        )
        admin.create_bucket(Bucket="bench")
        admin.put_object(Bucket="bench", Key="data/x.jpg", Body=b"x")
        for name, client in (("unrestricted", admin), ("enforced", role)):
            client.head_object(Bucket="bench", Key="data/x.jpg")  # warm
            samples = []
            for _ in range(calls):
                t = time.perf_counter()
                client.head_object(Bucket="bench", Key="data/x.jpg")
                samples.append(time.perf_counter() - t)
            print(f"HeadObject over HTTP, {name:<12}: {_ms(samples)}")
    finally:
        server.stop()
        iam.uninstall()


class _Empty:
    """A stack with no roles (the benchmark adds its own)."""

    rules: list[object] = []

    def of_type(self, kind: str) -> list[object]:
        return []


if __name__ == "__main__":
    raise SystemExit(main())
