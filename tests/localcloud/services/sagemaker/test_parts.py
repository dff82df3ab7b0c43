"""The local SageMaker's pure parts: the toolkit's argument and launch conventions,
settings, and S3 channel downloads (no processes started)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

import localcloud.services.sagemaker as local_sagemaker
from localcloud.services.sagemaker import training_toolkit
from localcloud.services.sagemaker.moto_backends import S3


def test_hyperparameters_become_sorted_arguments_like_the_toolkit() -> None:
    decoded = training_toolkit.decode_hyperparameters(
        {
            "sagemaker_program": '"train.py"',
            "lr": "0.1",
            "arch": "resnet18",
            "b": "true",
            "m": '{"y": 2, "x": 1}',
        }
    )
    user = training_toolkit.user_hyperparameters(decoded)
    assert training_toolkit.to_cmd_args(user) == [
        "--arch",
        "resnet18",
        "-b",
        "True",
        "--lr",
        "0.1",
        "-m",
        "x=1,y=2",
    ]


def test_single_host_torchrun_leaves_the_rendezvous_port_to_torchrun() -> None:
    command = training_toolkit.launch_command(
        python="py", program="train.py", args=["--epochs", "1"], torch_distributed=True,
        num_hosts=1, host_index=0, master_port=1234,
    )  # fmt: skip
    assert command == [
        "py", "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "1",
        "train.py", "--epochs", "1",
    ]  # fmt: skip


def test_time_scale_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="time_scale"):
        local_sagemaker.install(tmp_path, time_scale=0)


def test_an_s3_prefix_that_is_a_whole_key_downloads_that_object(tmp_path: Path) -> None:
    # StartTraining points the channel at the data-set archive's exact key, as SageMaker allows.
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data-bucket")
        s3.put_object(Bucket="data-bucket", Key="datasets/digits.tar.gz", Body=b"archive")
        s3.put_object(Bucket="data-bucket", Key="datasets/other/x.jpg", Body=b"x")
        storage = S3("123456789012", "us-east-1")
        storage.download_prefix("s3://data-bucket/datasets/digits.tar.gz", tmp_path / "one")
        storage.download_prefix("s3://data-bucket/datasets/", tmp_path / "all")
    assert sorted(p.name for p in (tmp_path / "one").rglob("*") if p.is_file()) == ["digits.tar.gz"]
    assert (tmp_path / "one" / "digits.tar.gz").read_bytes() == b"archive"
    assert (tmp_path / "all" / "other" / "x.jpg").read_bytes() == b"x"
