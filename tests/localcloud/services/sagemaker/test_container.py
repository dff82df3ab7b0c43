"""The container contract in the bubblewrap sandbox: what the SageMaker Python SDK v3 submits
(ContainerEntrypoint, ``code``/``sm_drivers`` channels) runs with its own /opt/ml and algo-N
hostname per host; the two ranks of a Torchrun job train on disjoint shards; script-mode jobs
go through AWS's training toolkit; endpoints serve the SDK's model from /opt/ml/model."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localcloud.services.sagemaker import container
from localcloud.services.sagemaker.moto_backends import S3
from tests.data_helpers import write_image_folder
from tests.localcloud.sagemaker_support import (
    REGION,
    ROLE,
    local_sagemaker_in,
    script_job_request,
    tgz_dir,
    training_job_request,
    untar,
    wait_endpoint,
    wait_job,
)
from tests.parts_support import import_part, missing_part

REPO = Path(__file__).resolve().parents[4]
BUCKET = "local-sagemaker-containers"
JOB_TIMEOUT_S = 300

# Run as the entry script by torchrun on each host: the train loader exactly as train.py
# builds it, then every image of this rank's shard, its hostname and /opt/ml, into /opt/ml/model.
SHARD_SCRIPT = """
import json, os, socket, tempfile
from pathlib import Path
import torch.distributed as dist
import imgcls  # noqa: F401
from imgcls.data import ImageList, locate, scan, train_loader
from imgcls.transforms import train_transform

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
with tempfile.TemporaryDirectory() as scratch:
    splits = scan(locate(Path(os.environ["SM_CHANNEL_TRAINING"]), Path(scratch)))
    data = ImageList(splits.samples["train"], train_transform(32))
    loader = train_loader(data, 4, 0, rank, world, 0)
    loader.sampler.set_epoch(1)
    train = splits.samples["train"]
    mine = [str(Path(train[i][0]).relative_to(splits.root)) for i in loader.sampler]
    everything = [str(Path(p).relative_to(splits.root)) for p, _ in splits.samples["train"]]
dist.barrier()
Path(f"/opt/ml/model/rank-{rank}.json").write_text(json.dumps({
    "rank": rank, "world": world, "host": socket.gethostname(),
    "sm_current_host": os.environ["SM_CURRENT_HOST"], "shard": mine, "all": everything,
    "opt_ml": sorted(os.listdir("/opt/ml")),
}))
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def sandboxed() -> None:
    box, reason = container.probe()
    if box is None:
        missing_part(f"needs the bubblewrap sandbox: {reason}")


@pytest.fixture
def aws(sandboxed: None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with local_sagemaker_in(tmp_path / "state", sandbox=True) as line:
        assert line.startswith("each host runs in a bubblewrap sandbox"), line
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield {
            "s3": s3,
            "sagemaker": boto3.client("sagemaker", region_name=REGION),
            "runtime": boto3.client("sagemaker-runtime", region_name=REGION),
            "state": tmp_path / "state",
        }


def entrypoint(script: str) -> dict[str, Any]:
    """A ContainerEntrypoint job's algorithm (what the SDK's ModelTrainer submits): bash
    running ``script`` in the PyTorch training container."""
    return {
        "TrainingImage": "pytorch-training:local",
        "ContainerEntrypoint": ["/bin/bash"],
        "ContainerArguments": ["-c", script],
    }


def _upload_dir(s3: Any, folder: Path, prefix: str) -> str:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.put_object(
            Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(folder)}", Body=path.read_bytes()
        )
    return f"s3://{BUCKET}/{prefix}"


def test_a_model_trainer_torchrun_job_trains_two_ranks_on_disjoint_shards(
    aws: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_part("sagemaker.train")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.setenv(
        "SAGEMAKER_USER_CONFIG_OVERRIDE", str(REPO / "notebooks" / "sdk-defaults.yaml")
    )
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import Compute, InputData, SourceCode
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    source = tmp_path / "source"
    shutil.copytree(REPO / "training" / "imgcls", source / "imgcls")
    (source / "shards.py").write_text(SHARD_SCRIPT)
    data = write_image_folder(tmp_path / "data", counts={"train": 8, "valid": 1, "test": 1})
    channel = _upload_dir(aws["s3"], data, "training-input/shards")
    session = Session(
        boto_session=boto3.Session(region_name=REGION),
        default_bucket=BUCKET,
        default_bucket_prefix="sdk",
    )
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=ROLE,
        base_job_name="shards",
        training_image="pytorch-training:local",
        source_code=SourceCode(source_dir=str(source), entry_script="shards.py"),
        distributed=Torchrun(),
        compute=Compute(instance_type="ml.m5.xlarge", instance_count=2),
    )
    trainer.train(
        input_data_config=[InputData(channel_name="training", data_source=channel)], wait=False
    )
    name = trainer._latest_training_job.training_job_name
    job = wait_job(aws["sagemaker"], name, timeout=JOB_TIMEOUT_S)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"][len("s3://") :].split("/", 1)
    files = untar(aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())
    ranks = [json.loads(files[f"rank-{i}.json"]) for i in (0, 1)]
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]
    assert sorted((r["host"], r["sm_current_host"]) for r in ranks) == [
        ("algo-1", "algo-1"),
        ("algo-2", "algo-2"),
    ]
    assert {"code", "input", "model", "output"} <= set(ranks[0]["opt_ml"])
    first, second = (set(r["shard"]) for r in ranks)
    assert first and second and not first & second  # disjoint
    assert first | second == set(ranks[0]["all"])  # together: every training image
    assert len(first) == len(second) == 12  # 3 classes x 8 images, half each


def test_script_mode_jobs_run_the_training_toolkit_in_the_sandbox(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    toolkit = container.toolkit_missing()
    if toolkit:
        missing_part(toolkit)
    s3, sagemaker = aws["s3"], aws["sagemaker"]
    code = tmp_path / "code"
    code.mkdir()
    (code / "entry.py").write_text(
        "import json, os, socket, sys\n"
        "out = os.environ['SM_MODEL_DIR']\n"
        "open(os.path.join(out, socket.gethostname() + '.json'), 'w').write(json.dumps(\n"
        "    {'argv': sys.argv[1:], 'rank': os.environ.get('RANK'), 'cwd': os.getcwd(),\n"
        "     'master': os.environ.get('MASTER_ADDR')}))\n"
        "print('[final] valid_acc=0.5')\n"
    )
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=tgz_dir(code))
    s3.put_object(Bucket=BUCKET, Key="data/x.txt", Body=b"x")
    sagemaker.create_training_job(
        **script_job_request(
            "toolkit",
            BUCKET,
            program="entry.py",
            hyperparameters={"epochs": "2", "sagemaker_torch_distributed_enabled": "true"},
            image="pytorch-training:local",
            output="models/",
            volume_gb=1,
            max_runtime=300,
        )
    )
    job = wait_job(sagemaker, "toolkit", timeout=JOB_TIMEOUT_S)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["FinalMetricDataList"][0]["Value"] == 0.5
    log = (aws["state"] / "training-jobs" / "toolkit" / "algo-1" / "training.log").read_text()
    assert "Invoking TorchDistributed" in log  # sagemaker_pytorch_container's launcher choice
    assert "torchrun --nnodes 2" in log and "--master_addr algo-1" in log
    files = untar(
        s3.get_object(Bucket=BUCKET, Key="models/toolkit/output/model.tar.gz")["Body"].read()
    )
    hosts = {name: json.loads(body) for name, body in files.items() if name.endswith(".json")}
    assert sorted(hosts) == ["algo-1.json", "algo-2.json"]
    assert hosts["algo-1.json"]["argv"] == ["--epochs", "2"]
    assert hosts["algo-1.json"]["cwd"] == "/opt/ml/code"
    assert {h["rank"] for h in hosts.values()} == {"0", "1"}


def test_an_sdk_model_is_served_from_opt_ml_model(aws: dict[str, Any], tmp_path: Path) -> None:
    s3, sagemaker, runtime = aws["s3"], aws["sagemaker"], aws["runtime"]
    # A model directory as train.py writes it is too slow to make here: the test server
    # below checks that it runs on /opt/ml/model with the model's code/ in it.
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text("# handlers\n")
    s3.put_object(Bucket=BUCKET, Key="models/m/model.tar.gz", Body=tgz_dir(model))
    sagemaker.create_model(
        ModelName="bad-program",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "pytorch-inference:local",
            "ModelDataUrl": f"s3://{BUCKET}/models/m/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "serve_me.py"},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="bad-program",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "bad-program", "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large"}
        ],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName="bad-program", EndpointConfigName="bad-program")
    endpoint = wait_endpoint(sagemaker, "bad-program")
    assert endpoint["EndpointStatus"] == "Failed"
    assert (
        "SAGEMAKER_PROGRAM=serve_me.py is not in the model data's code/"
        in endpoint["FailureReason"]
    )
    assert "inference.py" in endpoint["FailureReason"]
    # moto's empty VpcConfig / DataCaptureConfig are left out, as SageMaker does (the SDK
    # validates these shapes)
    assert "VpcConfig" not in sagemaker.describe_model(ModelName="bad-program")
    config = sagemaker.describe_endpoint_config(EndpointConfigName="bad-program")
    assert "DataCaptureConfig" not in config
    del runtime


def test_a_folder_prefix_keeps_paths_relative_to_it(tmp_path: Path) -> None:
    # ModelTrainer's channels: s3://b/<job>/input/code holds code/train.py, which goes to
    # /opt/ml/input/data/code/train.py
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data-bucket")
        s3.put_object(Bucket="data-bucket", Key="job/input/code/train.py", Body=b"x")
        s3.put_object(Bucket="data-bucket", Key="job/input/code/lib/a.py", Body=b"y")
        S3("123456789012", REGION).download_prefix("s3://data-bucket/job/input/code", tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py")) == [
        "lib/a.py",
        "train.py",
    ]


def test_without_the_sandbox_a_container_entrypoint_job_fails_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(container.DISABLE_VARIABLE, "0")
    with local_sagemaker_in(tmp_path / "state", sandbox=True) as line:
        assert line.startswith("hosts run as plain processes: the sandbox is turned off")
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="drivers/sm_train.sh", Body=b"exit 0")
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_training_job(
            **training_job_request(
                "entrypoint",
                algorithm=entrypoint("/opt/ml/input/data/sm_drivers/sm_train.sh"),
                channels={"sm_drivers": f"s3://{BUCKET}/drivers"},
                output=f"s3://{BUCKET}/models/",
                volume_gb=1,
            )
        )
        job = wait_job(sagemaker, "entrypoint")
    assert job["TrainingJobStatus"] == "Failed"
    assert "bubblewrap sandbox: the sandbox is turned off" in job["FailureReason"]
    assert os.environ[container.DISABLE_VARIABLE] == "0"


def test_checkpoints_start_from_s3_and_go_back_to_it(aws: dict[str, Any]) -> None:
    s3, sagemaker = aws["s3"], aws["sagemaker"]
    s3.put_object(Bucket=BUCKET, Key="checkpoints/job/epoch-1.txt", Body=b"saved before")
    s3.put_object(Bucket=BUCKET, Key="data/x.txt", Body=b"x")
    script = (
        "cp /opt/ml/checkpoints/epoch-1.txt /opt/ml/model/resumed-from.txt && "
        "echo epoch 2 > /opt/ml/checkpoints/epoch-2.txt && hostname > /opt/ml/model/host.txt"
    )
    sagemaker.create_training_job(
        **training_job_request(
            "checkpoints",
            algorithm=entrypoint(script),
            channels={"training": f"s3://{BUCKET}/data/"},
            output=f"s3://{BUCKET}/models/",
            volume_gb=1,
            CheckpointConfig={"S3Uri": f"s3://{BUCKET}/checkpoints/job/"},
        )
    )
    job = wait_job(sagemaker, "checkpoints")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    model = s3.get_object(Bucket=BUCKET, Key="models/checkpoints/output/model.tar.gz")
    files = untar(model["Body"].read())
    assert files["resumed-from.txt"] == b"saved before"
    assert files["host.txt"] == b"algo-1\n"
    saved = s3.get_object(Bucket=BUCKET, Key="checkpoints/job/epoch-2.txt")["Body"].read()
    assert saved == b"epoch 2\n"
