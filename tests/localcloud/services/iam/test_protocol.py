"""localcloud.services.iam.protocol: which API call a signed request makes."""

from __future__ import annotations

import boto3
from moto import mock_aws

from localcloud.services.iam.protocol import Signature, parse_request

S3 = Signature(access_key="AKIA", region="us-east-1", signing_name="s3")


def _get(path: str, query: str = "") -> str:
    return parse_request(S3, "GET", path, query, {}, b"").operation


def test_s3_object_calls_are_told_apart_by_their_query() -> None:
    assert _get("/bucket/models/model.tar.gz") == "GetObject"
    assert _get("/bucket/models/model.tar.gz", "uploadId=1") == "ListParts"
    assert _get("/bucket", "versioning") == "GetBucketVersioning"


def test_still_so_once_an_s3_client_stripped_the_bucket_from_the_shared_models() -> None:
    # botocore rewrites S3's models in place on a client's first call (virtual-hosted
    # addressing: "/{Bucket}/{Key+}" -> "/{Key+}"); the process shares those models
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket")
        s3.put_object(Bucket="bucket", Key="k", Body=b"x")
        s3.get_object(Bucket="bucket", Key="k")
        s3.get_bucket_versioning(Bucket="bucket")
    assert _get("/bucket/models/model.tar.gz") == "GetObject"
    call = parse_request(S3, "GET", "/bucket/a/b.json", "", {}, b"")
    assert call.params == {"Bucket": "bucket", "Key": "a/b.json"}
    assert _get("/bucket", "versioning") == "GetBucketVersioning"
