"""Helpers for the local SageMaker tests: archives, bounded waits, leak checks, the
local SageMaker under ``mock_aws``, and the requests the tests send it."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moto import mock_aws

import localcloud.services.sagemaker as local_sagemaker
from localcloud.runtime import processes

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
TERMINAL_JOB = ("Completed", "Failed", "Stopped")
PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6"
VALID_ACC = [{"Name": "valid_acc", "Regex": "valid_acc=([0-9.]+)"}]
VARIANT = "AllTraffic"
INSTANCE_COUNT = "sagemaker:variant:DesiredInstanceCount"  # a variant's scalable dimension


# The model server: the hosting contract (GET /ping, POST /invocations) in a few lines.
# model.json in the model dir gives its version (its answers name it), or makes it fail to
# load ("broken"); "delay_ms" slows every answer, "fail_every" answers every n-th request
# with HTTP 500; an image/tiff request is refused with 415, as serve.py does.
FAKE_SERVE = r"""
import argparse, itertools, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
for flag in ("--model-dir", "--host", "--port"):
    parser.add_argument(flag)
args = parser.parse_args()
with open(os.path.join(args.model_dir, "model.json")) as f:
    model = json.load(f)
if model.get("broken"):
    print("cannot load model.pth: unexpected EOF", file=sys.stderr)
    sys.exit(3)
counter = itertools.count(1)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(model.get("delay_ms", 0) / 1000)
        every = model.get("fail_every", 0)
        if self.headers.get("Content-Type") == "image/tiff":
            status, reply = 415, {"error": "unsupported_media_type", "message": "send JPEG"}
        else:
            reply = {"version": model["version"], "pid": os.getpid(), "bytes": len(body)}
            status = 500 if every and next(counter) % every == 0 else 200
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

time.sleep(model.get("start_s", 0))  # a slow start-up: no answer to /ping before
ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
"""


def tgz(files: Mapping[str, bytes | str]) -> bytes:
    """A gzip tar holding ``files`` (name -> content) at its root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tgz_dir(folder: Path) -> bytes:
    """``folder``'s contents at the root of a gzip tar (like the SDK's sourcedir.tar.gz)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if "__pycache__" not in path.parts and path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    return buffer.getvalue()


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def wait_for(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Poll ``read()`` until ``done(value)``; fail with the last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still waiting after {timeout} s: {value}"
        time.sleep(0.1)


def wait_job(sagemaker: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: sagemaker.describe_training_job(TrainingJobName=name),
        lambda job: job["TrainingJobStatus"] in TERMINAL_JOB,
        timeout,
    )


def wait_endpoint(sagemaker: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName=name),
        lambda endpoint: endpoint["EndpointStatus"] not in ("Creating", "Updating"),
        timeout,
    )


def children() -> set[int]:
    return set(processes.descendants(os.getpid()))


def assert_no_new_children(before: set[int], timeout: float = 20) -> None:
    """Every process started since ``before`` was taken is gone (bounded wait)."""
    wait_for(lambda: children() - before, lambda extra: not extra, timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"


@contextmanager
def local_sagemaker_in(state: Path, **install: Any) -> Iterator[str]:
    """``mock_aws`` with the local SageMaker installed in ``state`` (``install``: its
    options); yields its one-line description. On exit it is uninstalled and every process
    it started is gone (bounded wait)."""
    before = children()
    try:
        with mock_aws():
            yield local_sagemaker.install(state, **install)
    finally:
        local_sagemaker.uninstall()
        assert_no_new_children(before)


def training_job_request(
    name: str,
    *,
    algorithm: Mapping[str, Any],
    channels: Mapping[str, str],
    output: str,
    hosts: int = 1,
    volume_gb: int = 10,
    max_runtime: int = 60,
    **extra: Any,
) -> dict[str, Any]:
    """A CreateTrainingJob request: ``channels`` (name -> S3 prefix URI) in File mode on
    ``hosts`` ml.m5.xlarge hosts, the model under ``output``; ``extra`` adds or replaces
    top-level fields."""
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingInputMode": "File", **algorithm},
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
            }
            for channel, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": hosts,
            "VolumeSizeInGB": volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        **extra,
    }


def script_job_request(
    name: str,
    bucket: str,
    *,
    hosts: int = 2,
    hyperparameters: Mapping[str, str] | None = None,
    program: str = "train.py",
    code: str = "code/sourcedir.tar.gz",
    data: str = "data/",
    output: str = "jobs",
    image: str = PYTORCH_IMAGE,
    metric_definitions: list[dict[str, str]] | None = VALID_ACC,
    **options: Any,
) -> dict[str, Any]:
    """A script-mode training job: ``program`` from the source archive ``s3://bucket/code``
    with ``hyperparameters``, the ``training`` channel at ``s3://bucket/data``, the model
    under ``s3://bucket/output``; ``options`` as for ``training_job_request``."""
    algorithm: dict[str, Any] = {"TrainingImage": image}
    if metric_definitions is not None:
        algorithm["MetricDefinitions"] = metric_definitions
    return training_job_request(
        name,
        algorithm=algorithm,
        channels={"training": f"s3://{bucket}/{data}"},
        output=f"s3://{bucket}/{output}",
        hosts=hosts,
        HyperParameters={
            "sagemaker_program": json.dumps(program),
            "sagemaker_submit_directory": json.dumps(f"s3://{bucket}/{code}"),
            **(hyperparameters or {}),
        },
        **options,
    )


def scale_on_invocations(
    scaling: Any, endpoint: str, *, max_capacity: int, scale_in_cooldown: int
) -> str:
    """Let Application Auto Scaling size ``endpoint``'s variant between 1 and
    ``max_capacity`` instances, tracking 5 invocations per instance (10 s scale-out
    cooldown); returns the scalable target's resource id."""
    resource = f"endpoint/{endpoint}/variant/{VARIANT}"
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=INSTANCE_COUNT,
        MinCapacity=1, MaxCapacity=max_capacity,
    )  # fmt: skip
    scaling.put_scaling_policy(
        PolicyName="invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=INSTANCE_COUNT,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleOutCooldown": 10,
            "ScaleInCooldown": scale_in_cooldown,
        },
    )
    return resource
