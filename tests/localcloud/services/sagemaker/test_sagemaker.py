"""Local SageMaker under ``mock_aws``: training jobs, endpoints, InvokeEndpoint, autoscaling.

Small stand-in programs (written by the tests) play the training script and the model
server, so each case takes seconds; test_project_code.py runs train.py and serve.py.
"""

from __future__ import annotations

import datetime
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.sagemaker.models import sagemaker_backends
from moto.server import ThreadedMotoServer

import localcloud.services.sagemaker as local_sagemaker
from localcloud.services.stepfunctions import wait_wakeup
from tests.data_helpers import free_port
from tests.localcloud.sagemaker_support import (
    FAKE_SERVE,
    INSTANCE_COUNT,
    REGION,
    ROLE,
    VARIANT,
    assert_no_new_children,
    children,
    local_sagemaker_in,
    pid_alive,
    scale_on_invocations,
    script_job_request,
    tgz,
    untar,
    wait_endpoint,
    wait_for,
    wait_job,
)

BUCKET = "local-sagemaker"

# The training program: records what its host saw, prints metric lines, writes the model
# (algo-1 only), and on request fails (with or without the failure file) or waits to be
# stopped; SIGTERM saves a marker in the model dir, like a script using the 120 s window.
FAKE_TRAIN = r"""
import argparse, json, os, signal, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("--mode", default="ok")
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
host = os.environ["SM_CURRENT_HOST"]
model_dir, out = os.environ["SM_MODEL_DIR"], os.environ["SM_OUTPUT_DATA_DIR"]
seen = {k: v for k, v in os.environ.items() if k.startswith("SM_") or k in (
    "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "OMP_NUM_THREADS", "TRAINING_JOB_NAME")}
seen.update(pid=os.getpid(), argv=sys.argv[1:], cwd=os.getcwd(),
            channel=sorted(os.listdir(os.environ["SM_CHANNEL_TRAINING"])))
with open(os.path.join(out, host + ".json"), "w") as f:
    json.dump(seen, f)

def on_term(signum, frame):
    with open(os.path.join(model_dir, "saved-on-sigterm-" + host), "w") as f:
        f.write("partial")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
if args.mode == "ok":
    for epoch in range(args.epochs):
        print(f"[metrics] epoch={epoch} valid_acc=0.{epoch + 5}", flush=True)
    if host == "algo-1":
        with open(os.path.join(model_dir, "model.pth"), "w") as f:
            f.write("weights")
elif args.mode == "fail" and host == "algo-2":
    with open(os.path.join(os.path.dirname(out), "failure"), "w") as f:
        f.write("DataError: the data set has no valid/ split" + "!" * 2000)
    sys.exit(2)
elif args.mode == "crash" and host == "algo-2":
    raise RuntimeError("boom on algo-2")
else:
    time.sleep(300)
"""


@dataclass
class Local:
    s3: Any
    sagemaker: Any
    runtime: Any
    scaling: Any
    logs: Any
    state: Path

    @classmethod
    def clients(cls, state: Path, endpoint_url: str | None = None) -> Local:
        """Clients of the fields' services (in process under mock_aws, or at a server)."""
        services = ("s3", "sagemaker", "sagemaker-runtime", "application-autoscaling", "logs")
        clients = (
            boto3.client(name, region_name=REGION, endpoint_url=endpoint_url) for name in services
        )
        return cls(*clients, state=state)

    def upload_fakes(self, splits: tuple[str, ...] = ("train", "valid")) -> None:
        """The bucket with FAKE_TRAIN as the source archive and one image per split."""
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_object(
            Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=tgz({"train.py": FAKE_TRAIN})
        )
        for split in splits:
            self.s3.put_object(Bucket=BUCKET, Key=f"data/{split}/a/1.jpg", Body=b"jpeg")


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[Local]:
    serve = tmp_path / "fake_serve.py"
    serve.write_text(FAKE_SERVE)
    state = tmp_path / "state"
    # time_scale 0.02: an autoscaling "minute" is 1.2 s, a 10 s cooldown 0.2 s
    with local_sagemaker_in(state, serve_command=(str(serve),), time_scale=0.02):
        local = Local.clients(state)
        local.upload_fakes()
        yield local


def start_job(aws: Local, name: str, *, hosts: int = 2, max_runtime: int = 60, **hps: str) -> None:
    aws.sagemaker.create_training_job(
        **script_job_request(
            name, BUCKET, hosts=hosts, hyperparameters=hps, max_runtime=max_runtime
        )
    )


def host_record(aws: Local, job: str, host: str) -> dict[str, Any]:
    return json.loads(
        (aws.state / "training-jobs" / job / host / "output/data" / f"{host}.json").read_text()
    )


def s3_object(aws: Local, key: str) -> bytes:
    return aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


# --- training jobs -------------------------------------------------------------------


def test_two_hosts_train_together_and_publish_metrics_and_model(aws: Local) -> None:
    start_job(aws, "two-hosts", epochs="3", lr="0.05")
    assert (
        aws.sagemaker.describe_training_job(TrainingJobName="two-hosts")["TrainingJobStatus"]
        == "InProgress"
    )

    job = wait_job(aws.sagemaker, "two-hosts")

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed",
    ]  # fmt: skip
    assert job["TrainingTimeInSeconds"] >= 1 and job["BillableTimeInSeconds"] >= 1
    assert job["TrainingEndTime"] >= job["TrainingStartTime"]
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert metrics == {"valid_acc": 0.7}  # the last of 0.5, 0.6, 0.7
    one, two = host_record(aws, "two-hosts", "algo-1"), host_record(aws, "two-hosts", "algo-2")
    assert one["pid"] != two["pid"]
    assert one["argv"] == ["--epochs", "3", "--lr", "0.05"]
    assert (one["SM_CURRENT_HOST"], two["SM_CURRENT_HOST"]) == ("algo-1", "algo-2")
    assert json.loads(one["SM_HOSTS"]) == ["algo-1", "algo-2"]
    assert json.loads(one["SM_HPS"]) == {"epochs": 3, "lr": 0.05}
    assert one["SM_HP_EPOCHS"] == "3" and one["SM_NUM_GPUS"] == "0"
    assert json.loads(one["SM_TRAINING_ENV"])["current_host"] == "algo-1"
    assert one["MASTER_PORT"] == two["MASTER_PORT"] and one["MASTER_ADDR"] == "127.0.0.1"
    assert one["channel"] == two["channel"] == ["train", "valid"]
    assert one["TRAINING_JOB_NAME"] == "two-hosts"

    assert (
        job["ModelArtifacts"]["S3ModelArtifacts"]
        == f"s3://{BUCKET}/jobs/two-hosts/output/model.tar.gz"
    )
    assert untar(s3_object(aws, "jobs/two-hosts/output/model.tar.gz")) == {"model.pth": b"weights"}
    outputs = untar(s3_object(aws, "jobs/two-hosts/output/output.tar.gz"))
    assert set(outputs) == {"algo-1.json", "algo-2.json"}

    group = "/aws/sagemaker/TrainingJobs"
    streams = [
        s["logStreamName"] for s in aws.logs.describe_log_streams(logGroupName=group)["logStreams"]
    ]
    assert sorted(s.rsplit("-", 1)[0] for s in streams) == ["two-hosts/algo-1", "two-hosts/algo-2"]
    events = aws.logs.get_log_events(logGroupName=group, logStreamName=sorted(streams)[0])["events"]
    assert "[metrics] epoch=2 valid_acc=0.7" in [e["message"] for e in events]
    assert (
        "valid_acc=0.7" in (aws.state / "training-jobs/two-hosts/algo-1/training.log").read_text()
    )


def test_torch_distributed_runs_torchrun_on_each_host(aws: Local) -> None:
    start_job(aws, "torchrun", sagemaker_torch_distributed_enabled="true")

    job = wait_job(aws.sagemaker, "torchrun", timeout=120)

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    one, two = host_record(aws, "torchrun", "algo-1"), host_record(aws, "torchrun", "algo-2")
    assert (one["RANK"], two["RANK"]) == ("0", "1")
    assert one["WORLD_SIZE"] == two["WORLD_SIZE"] == "2"
    log = (aws.state / "training-jobs/torchrun/algo-2/training.log").read_text()
    assert "-m torch.distributed.run --nnodes 2 --nproc_per_node 1" in log
    assert "--node_rank 1 train.py" in log


def test_a_failing_host_fails_the_job_with_its_failure_file(aws: Local) -> None:
    start_job(aws, "fails", mode="fail")

    job = wait_job(aws.sagemaker, "fails")

    assert job["TrainingJobStatus"] == job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"].startswith("DataError: the data set has no valid/ split")
    assert len(job["FailureReason"]) == 1024
    # the healthy peer was stopped (SIGTERM) rather than left running
    assert not pid_alive(host_record(aws, "fails", "algo-1")["pid"])


def test_without_a_failure_file_the_reason_is_the_stderr_tail(aws: Local) -> None:
    start_job(aws, "crashes", mode="crash")

    job = wait_job(aws.sagemaker, "crashes")

    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(
        "AlgorithmError: ExecuteUserScriptError: ExitCode 1 on algo-2"
    )
    assert "RuntimeError: boom on algo-2" in job["FailureReason"]


def test_stop_training_job_sends_sigterm_and_keeps_what_was_saved(aws: Local) -> None:
    start_job(aws, "stopped", hosts=1, mode="sleep")
    wait_for(
        lambda: (aws.state / "training-jobs/stopped/algo-1/output/data/algo-1.json").exists(),
        bool,
        30,
    )

    aws.sagemaker.stop_training_job(TrainingJobName="stopped")

    assert aws.sagemaker.describe_training_job(TrainingJobName="stopped")["TrainingJobStatus"] in (
        "Stopping", "Stopped",
    )  # fmt: skip
    job = wait_job(aws.sagemaker, "stopped")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    model = untar(s3_object(aws, "jobs/stopped/output/model.tar.gz"))
    assert model == {"saved-on-sigterm-algo-1": b"partial"}
    with pytest.raises(ClientError, match="in status Stopped"):
        aws.sagemaker.stop_training_job(TrainingJobName="stopped")


def test_max_runtime_stops_the_job(aws: Local) -> None:
    start_job(aws, "too-long", hosts=1, max_runtime=1, mode="sleep")

    job = wait_job(aws.sagemaker, "too-long")

    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")


def test_bad_requests_are_refused_or_fail_with_a_reason(aws: Local) -> None:
    start_job(aws, "dup", hosts=1)
    with pytest.raises(ClientError, match="already exists") as dup:
        start_job(aws, "dup", hosts=1)
    assert dup.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError, match="Could not find training job"):
        aws.sagemaker.stop_training_job(TrainingJobName="never-created")

    aws.s3.delete_object(Bucket=BUCKET, Key="data/train/a/1.jpg")
    aws.s3.delete_object(Bucket=BUCKET, Key="data/valid/a/1.jpg")
    start_job(aws, "no-data", hosts=1)
    job = wait_job(aws.sagemaker, "no-data")
    assert job["TrainingJobStatus"] == "Failed"
    assert f"No S3 objects found under S3 URL 's3://{BUCKET}/data/'" in job["FailureReason"]
    wait_job(aws.sagemaker, "dup")


# --- endpoints -----------------------------------------------------------------------


def add_model(aws: Local, version: str, *, broken: bool = False, instances: int = 2) -> str:
    """A model, and an endpoint config of ``instances`` serving it; returns the config name."""
    model = {"version": version, "broken": broken}
    aws.s3.put_object(
        Bucket=BUCKET, Key=f"models/{version}.tar.gz", Body=tgz({"model.json": json.dumps(model)})
    )
    aws.sagemaker.create_model(
        ModelName=f"model-{version}",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6",
            "ModelDataUrl": f"s3://{BUCKET}/models/{version}.tar.gz",
        },
    )
    config = f"config-{version}"
    aws.sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": VARIANT,
                "ModelName": f"model-{version}",
                "InitialInstanceCount": instances,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    return config


def invoke(aws: Local, endpoint: str = "ep", **kwargs: Any) -> dict[str, Any]:
    response = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"\xff\xd8 jpeg", **kwargs)
    assert response["InvokedProductionVariant"] == VARIANT
    return json.loads(response["Body"].read())


def variant(endpoint: dict[str, Any]) -> tuple[int, int]:
    summary = endpoint["ProductionVariants"][0]
    return summary["CurrentInstanceCount"], summary["DesiredInstanceCount"]


def test_endpoint_create_invoke_update_delete(aws: Local, monkeypatch: pytest.MonkeyPatch) -> None:
    settled: list[str] = []  # what ends the state machine's Waits on this endpoint early
    monkeypatch.setattr(wait_wakeup, "settled", settled.append)
    aws.sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName=add_model(aws, "v1"))
    assert aws.sagemaker.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Creating"
    endpoint = wait_endpoint(aws.sagemaker, "ep")
    assert endpoint["EndpointStatus"] == "InService"
    assert variant(endpoint) == (2, 2)

    replies = [invoke(aws, ContentType="image/jpeg") for _ in range(4)]
    assert {r["version"] for r in replies} == {"v1"} and replies[0]["bytes"] == 7
    old_pids = [r["pid"] for r in replies]
    assert old_pids[0] != old_pids[1] and old_pids[:2] == old_pids[2:]  # round robin over 2

    aws.sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName=add_model(aws, "v2"))
    during = aws.sagemaker.describe_endpoint(EndpointName="ep")
    assert (during["EndpointStatus"], during["EndpointConfigName"]) == ("Updating", "config-v1")
    assert during["PendingDeploymentSummary"]["EndpointConfigName"] == "config-v2"
    assert invoke(aws)["version"] == "v1"  # the old fleet serves during the update
    after = wait_endpoint(aws.sagemaker, "ep")
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "config-v2")
    assert "PendingDeploymentSummary" not in after and "FailureReason" not in after
    assert {invoke(aws)["version"] for _ in range(2)} == {"v2"}
    wait_for(lambda: [pid_alive(p) for p in old_pids], lambda alive: not any(alive), 20)

    aws.sagemaker.update_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v3", broken=True)
    )
    failed = wait_endpoint(aws.sagemaker, "ep")
    assert (failed["EndpointStatus"], failed["EndpointConfigName"]) == ("InService", "config-v2")
    assert "cannot load model.pth: unexpected EOF" in failed["FailureReason"]
    assert invoke(aws)["version"] == "v2"
    assert settled == ["ep", "ep", "ep"]  # each deployment settled once: v1, v2, v3's rollback

    serving = {invoke(aws)["pid"] for _ in range(2)}
    aws.sagemaker.delete_endpoint(EndpointName="ep")
    with pytest.raises(ClientError, match="Endpoint ep of account 123456789012 not found"):
        invoke(aws)
    wait_for(lambda: [pid_alive(p) for p in serving], lambda alive: not any(alive), 20)
    logs = aws.logs.describe_log_streams(logGroupName="/aws/sagemaker/Endpoints/ep")["logStreams"]
    assert len(logs) == 2 + 2 + 2  # an instance stream each: v1, v2 and the broken v3


def test_an_endpoint_whose_model_cannot_load_fails(aws: Local) -> None:
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "bad", broken=True)
    )

    endpoint = wait_endpoint(aws.sagemaker, "ep")

    assert endpoint["EndpointStatus"] == "Failed"
    assert "exited with code 3" in endpoint["FailureReason"]
    assert "cannot load model.pth: unexpected EOF" in endpoint["FailureReason"]
    with pytest.raises(ClientError, match="not found"):
        invoke(aws)


def test_invoke_errors_have_sagemaker_shapes(aws: Local) -> None:
    with pytest.raises(ClientError) as unknown:
        invoke(aws, "no-such-endpoint")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Endpoint no-such-endpoint of account 123456789012 not found." in str(unknown.value)

    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v1", instances=1)
    )
    wait_endpoint(aws.sagemaker, "ep")
    with pytest.raises(ClientError) as model_error:
        invoke(aws, ContentType="image/tiff")
    response = model_error.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 415
    assert json.loads(response["OriginalMessage"])["message"] == "send JPEG"
    assert response["LogStreamArn"].endswith(":log-group:/aws/sagemaker/Endpoints/ep")


def test_capacity_changes_and_target_tracking_resize_the_fleet(aws: Local) -> None:
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v1", instances=1)
    )
    wait_endpoint(aws.sagemaker, "ep")

    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": VARIANT, "DesiredInstanceCount": 2}],
    )
    assert variant(wait_endpoint(aws.sagemaker, "ep")) == (2, 2)
    assert len({invoke(aws)["pid"] for _ in range(4)}) == 2
    # an update that keeps the current instance count (the config says 1)
    aws.sagemaker.update_endpoint(
        EndpointName="ep",
        EndpointConfigName=add_model(aws, "v2", instances=1),
        RetainAllVariantProperties=True,
    )
    assert variant(wait_endpoint(aws.sagemaker, "ep")) == (2, 2)
    assert {invoke(aws)["version"] for _ in range(2)} == {"v2"}
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    dimensions = [
        {"Name": "EndpointName", "Value": "ep"},
        {"Name": "VariantName", "Value": VARIANT},
    ]
    wait_for(
        lambda: cloudwatch.list_metrics(Namespace="AWS/SageMaker", MetricName="Invocations")[
            "Metrics"
        ],
        lambda metrics: metrics and all(m["Dimensions"] == dimensions for m in metrics),
        10,
    )
    now = datetime.datetime.now(datetime.UTC)
    per_minute = cloudwatch.get_metric_statistics(  # what a dashboard (the console) reads
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=dimensions,
        StartTime=now - datetime.timedelta(minutes=10),
        EndTime=now + datetime.timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert sum(point["Sum"] for point in per_minute) >= 1

    resource = scale_on_invocations(aws.scaling, "ep", max_capacity=3, scale_in_cooldown=10)

    def busy_count() -> int:  # steady traffic far above 5 calls per instance per "minute"
        invoke(aws)
        return variant(aws.sagemaker.describe_endpoint(EndpointName="ep"))[0]

    wait_for(busy_count, lambda current: current == 3, 30)
    assert len({invoke(aws)["pid"] for _ in range(6)}) == 3

    # no traffic: scale in to the minimum after 15 low datapoints (1.2 s each here)
    assert variant(
        wait_for(lambda: wait_endpoint(aws.sagemaker, "ep"), lambda e: variant(e) == (1, 1), 60)
    )

    aws.scaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=INSTANCE_COUNT,
        MinCapacity=2,
    )  # fmt: skip
    wait_for(lambda: wait_endpoint(aws.sagemaker, "ep"), lambda e: variant(e) == (2, 2), 30)

    # every change is a scaling activity, newest first (moto itself has no such API)
    activities = aws.scaling.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=resource
    )["ScalingActivities"]
    described = [a["Description"] for a in activities]
    assert described[0] == "Setting desired instance count to 2."
    assert "MinCapacity 2" in activities[0]["Cause"]
    assert "Setting desired instance count to 3." in described  # the scale-out
    assert described[1] == "Setting desired instance count to 1."  # the scale-in
    assert {a["StatusCode"] for a in activities} == {"Successful"}
    assert activities[0]["StartTime"] >= activities[-1]["StartTime"]

    aws.sagemaker.delete_endpoint(EndpointName="ep")
    assert (
        aws.scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    )
    assert (
        aws.scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    )


def test_an_account_reset_stops_the_processes(aws: Local) -> None:
    aws.sagemaker.create_endpoint(
        EndpointName="ep", EndpointConfigName=add_model(aws, "v1", instances=1)
    )
    start_job(aws, "sleeps", hosts=1, mode="sleep")
    wait_endpoint(aws.sagemaker, "ep")
    server = invoke(aws)["pid"]
    record = aws.state / "training-jobs/sleeps/algo-1/output/data/algo-1.json"
    wait_for(record.exists, bool, 30)

    sagemaker_backends["123456789012"][REGION].reset()  # what the end of mock_aws does

    for pid in (server, host_record(aws, "sleeps", "algo-1")["pid"]):
        wait_for(lambda pid=pid: pid_alive(pid), lambda alive: not alive, 20)


def test_works_inside_the_moto_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded local cloud's mode: clients reach a ThreadedMotoServer over HTTP."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    before = children()
    serve = tmp_path / "fake_serve.py"
    serve.write_text(FAKE_SERVE)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        local_sagemaker.install(tmp_path / "state", serve_command=(str(serve),))
        url = f"http://127.0.0.1:{port}"
        aws = Local.clients(tmp_path / "state", endpoint_url=url)
        aws.upload_fakes(splits=("train",))
        start_job(aws, "served", hosts=1)
        assert wait_job(aws.sagemaker, "served")["TrainingJobStatus"] == "Completed"
        aws.sagemaker.create_endpoint(
            EndpointName="ep", EndpointConfigName=add_model(aws, "v1", instances=1)
        )
        assert wait_endpoint(aws.sagemaker, "ep")["EndpointStatus"] == "InService"
        body = bytes(range(256)) * 4  # not UTF-8: an image's bytes must pass unchanged
        reply = aws.runtime.invoke_endpoint(EndpointName="ep", Body=body, ContentType="image/jpeg")
        served = json.loads(reply["Body"].read())
        assert served["bytes"] == len(body)

        request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

        wait_for(lambda: pid_alive(served["pid"]), lambda alive: not alive, 20)
    finally:
        server.stop()
        local_sagemaker.uninstall()
        assert_no_new_children(before)
