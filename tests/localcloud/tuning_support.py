"""A tuning job's parts for the tests: a training script whose objective peaks at known
values, its bucket, the request, and bounded waits."""

from __future__ import annotations

from typing import Any

from tests.localcloud.sagemaker_support import script_job_request, tgz, wait_for

BUCKET = "tuning"
OBJECTIVE = [{"Name": "valid_acc", "Regex": r"valid_acc=([0-9.]+)"}]
# The objective rises over the epochs and peaks at lr = 0.3 and act = relu; each epoch takes
# --pace seconds, so a pruner has time to stop a trial between two epochs.
TUNE_TRAIN = r"""
import argparse, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--act", default="relu")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--pace", type=float, default=0.0)
args = parser.parse_args()
base = 0.9 - (args.lr - 0.3) ** 2 - (0.0 if args.act == "relu" else 0.2)
for epoch in range(args.epochs):
    time.sleep(args.pace)
    print(f"epoch={epoch} valid_acc={max(base - 0.05 * (args.epochs - 1 - epoch), 0):.4f}",
          flush=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.pth"), "w").write("weights")
"""


def upload_script(s3: Any) -> None:
    """The bucket with TUNE_TRAIN as the source archive and one data file."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=tgz({"train.py": TUNE_TRAIN}))
    s3.put_object(Bucket=BUCKET, Key="data/train/a/1.jpg", Body=b"jpeg")


def definition(**static: str) -> dict[str, Any]:
    job = script_job_request("unused", BUCKET, hosts=1, metric_definitions=OBJECTIVE)
    return {
        "StaticHyperParameters": {**job["HyperParameters"], **static},
        "AlgorithmSpecification": job["AlgorithmSpecification"],
        "RoleArn": job["RoleArn"],
        "InputDataConfig": job["InputDataConfig"],
        "OutputDataConfig": job["OutputDataConfig"],
        "ResourceConfig": job["ResourceConfig"],
        "StoppingCondition": job["StoppingCondition"],
    }


LR = {"Name": "lr", "MinValue": "0.05", "MaxValue": "0.6", "ScalingType": "Linear"}
ACT = {"Name": "act", "Values": ["relu", "tanh"]}


def tuning_request(
    name: str, strategy: str, jobs: int | None, parallel: int, ranges: dict[str, Any], **config: Any
) -> dict[str, Any]:
    limits: dict[str, Any] = {"MaxParallelTrainingJobs": parallel}
    if jobs is not None:
        limits["MaxNumberOfTrainingJobs"] = jobs
    static = config.pop("static", {"epochs": "3"})
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "valid_acc"},
            "ResourceLimits": limits,
            "ParameterRanges": ranges,
            "RandomSeed": 7,
            **config,
        },
        "TrainingJobDefinition": definition(**static),
    }


def wait_tuning(sagemaker: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for(
        lambda: sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        lambda d: d["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"),
        timeout,
    )


def trials(sagemaker: Any, name: str) -> list[dict[str, Any]]:
    return sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=100
    )["TrainingJobSummaries"]
