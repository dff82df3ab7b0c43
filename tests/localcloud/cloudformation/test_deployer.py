"""localcloud.cloudformation.deployer's clients: handed to the local cloud's WSGI app in process."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from moto.moto_server.threaded_moto_server import DomainDispatcherApplication, create_backend_app

from localcloud.cloudformation.deployer import clients_for
from tests.data_helpers import free_port

NAME = BUCKET = "deploy-in-process-test"


def test_requests_go_to_the_app_in_process_with_no_server_listening() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = clients_for(url, "us-east-1", DomainDispatcherApplication(create_backend_app))
    s3, iam, logs = client("s3"), client("iam"), client("logs")  # rest-xml, query, json
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket=BUCKET, Key="a/b.txt")["Body"].read() == b"hello"
    role = iam.create_role(RoleName=NAME, AssumeRolePolicyDocument="{}")["Role"]
    assert role["Arn"] == "arn:aws:iam::123456789012:role/" + NAME
    logs.create_log_group(logGroupName="/" + NAME)
    groups = logs.describe_log_groups(logGroupNamePrefix="/" + NAME)["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/" + NAME]
    with pytest.raises(ClientError) as caught:  # errors come back as AWS's, not as exceptions
        s3.get_object(Bucket=BUCKET, Key="missing")
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    s3.delete_object(Bucket=BUCKET, Key="a/b.txt")
    s3.delete_bucket(Bucket=BUCKET)
    iam.delete_role(RoleName=NAME)
    logs.delete_log_group(logGroupName="/" + NAME)
