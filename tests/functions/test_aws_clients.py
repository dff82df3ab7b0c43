"""mlops.aws: the functions' clients, made in Lambda's init phase where they can be."""

from __future__ import annotations

import boto3
import pytest

from mlops.aws import client, create_at_init
from tests.conftest import load_handler


def test_clients_are_made_at_init_and_reused_by_the_handler(aws_env: None) -> None:
    create_at_init("s3", "sagemaker")
    assert client.cache_info().currsize == 2
    assert client("sagemaker") is client("sagemaker")
    assert client.cache_info().misses == 2  # the handler's calls found them made


def test_without_a_region_yet_they_are_made_at_first_use(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    # a fresh default session: SAM CLI's parser (test_verify_aws) leaves one with a region
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    create_at_init("sagemaker", "dynamodb")  # no error: a module importing it still imports
    assert client.cache_info().currsize == 0


def test_importing_a_handler_makes_its_clients(aws_env: None) -> None:
    load_handler("start_training")
    assert client.cache_info().currsize == 2  # s3 and sagemaker, before any invocation
