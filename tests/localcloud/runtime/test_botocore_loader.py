"""One botocore data loader for every session in a local cloud process (shared_loader)."""

from __future__ import annotations

import boto3
import botocore.session
from moto.core import loaders as moto_loaders

import localcloud  # noqa: F401  (installs the shared loader)


def test_sessions_share_one_loader_and_read_each_file_once() -> None:
    first, second = botocore.session.Session(), botocore.session.Session()
    loader = first.get_component("data_loader")
    assert second.get_component("data_loader") is loader
    model = first.get_service_model("sagemaker")
    assert second.get_service_model("sagemaker")._service_description is (
        model._service_description
    )


def test_boto3_sessions_add_their_data_path_once() -> None:
    boto3.Session()
    paths = list(boto3.Session()._loader.search_paths)
    boto3.Session()
    assert boto3.Session()._loader.search_paths == paths
    assert len(set(paths)) == len(paths)


def test_clients_work_and_motos_own_loader_stays_separate() -> None:
    client = boto3.Session().client("s3", region_name="us-east-1")
    assert client.meta.service_model.service_name == "s3"
    shared = botocore.session.Session().get_component("data_loader")
    assert moto_loaders.create_loader() is not shared
