"""Delete everything a verification stack and its runs created, found by the stack's names.

A stack deployed by ``make verify-aws`` is named uniquely and deploys with
``EndpointName`` = the stack name, so everything is found by name or prefix, also when
the stack is half-created, half-deleted or already gone:

- the state machine ``<stack>-train-deploy`` (its running executions are stopped first, so
  nothing creates more while this deletes), training jobs ``<endpoint>-*`` in progress;
- the endpoint's scalable target, the endpoint, its configs and models ``<endpoint>-*``;
- the model package group ``<stack>-models`` and its versions;
- the data bucket ``<stack>-databucket-*`` (the template retains it: every object version
  and delete marker, then the bucket);
- the stack's artifacts that ``sam deploy --s3-prefix <stack>`` uploaded to the SAM CLI's
  bucket (the bucket is shared and stays);
- the stack itself, then the log groups the services created outside it
  (``/aws/sagemaker/Endpoints/<endpoint>``, the jobs' streams in
  ``/aws/sagemaker/TrainingJobs``) and any of the stack's own left (``/aws/lambda/<stack>/*``,
  ``/aws/vendedlogs/states/<stack>-train-deploy``, ``<stack>-ApiAccessLogGroup-*``).

Each step goes on after another's failure; :func:`leftovers` says what still exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from localcloud.runtime.processes import wait_until

Clients = Callable[[str], BaseClient]
Log = Callable[[str], None]
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
TRAINING_JOBS_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
SAM_STACK = "aws-sam-cli-managed-default"


@dataclass(frozen=True)
class Names:
    """What a verification stack's resources are called."""

    stack: str
    endpoint: str

    @property
    def group(self) -> str:
        return f"{self.stack}-models"

    @property
    def state_machine(self) -> str:
        return f"{self.stack}-train-deploy"

    @property
    def bucket_prefix(self) -> str:  # CloudFormation's generated name, lower case
        return f"{self.stack.lower()}-databucket-"

    @property
    def log_group_prefixes(self) -> tuple[str, ...]:
        """Prefixes no other stack's groups start with (a "/" or the logical id ends them)."""
        return (
            f"/aws/sagemaker/Endpoints/{self.endpoint}/",
            f"/aws/lambda/{self.stack}/",
            f"/aws/vendedlogs/states/{self.stack}-train-deploy/",
            f"{self.stack}-ApiAccessLogGroup-",  # CloudFormation's name for the API's group
        )

    def owns(self, name: str) -> bool:
        """A SageMaker name the pipeline gave (``<endpoint>-<16 hex>``) or the endpoint's."""
        return re.fullmatch(re.escape(self.endpoint) + r"(-[0-9a-f]{16})?", name) is not None


@dataclass
class Timeouts:
    endpoint_s: float = 1800
    stack_s: float = 1800
    interval_s: float = 10


def _missing(exc: ClientError) -> bool:
    code = exc.response["Error"]["Code"]
    message = exc.response["Error"].get("Message", "")
    return code in {"ResourceNotFoundException", "NoSuchBucket", "404", "NotFound"} or (
        code in {"ValidationException", "ValidationError"}
        and ("not find" in message.lower() or "does not exist" in message.lower())
    )


def _pages(client: BaseClient, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


def _state_machine_arn(clients: Clients, names: Names) -> str | None:
    machines = _pages(clients("stepfunctions"), "list_state_machines", "stateMachines")
    return next((m["stateMachineArn"] for m in machines if m["name"] == names.state_machine), None)


def _buckets(clients: Clients, names: Names) -> list[str]:
    buckets = clients("s3").list_buckets()["Buckets"]
    return [b["Name"] for b in buckets if b["Name"].startswith(names.bucket_prefix)]


def _endpoint_status(clients: Clients, names: Names) -> str | None:
    try:
        return clients("sagemaker").describe_endpoint(EndpointName=names.endpoint)["EndpointStatus"]
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def _stack_status(clients: Clients, names: Names) -> str | None:
    try:
        (stack,) = clients("cloudformation").describe_stacks(StackName=names.stack)["Stacks"]
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack["StackStatus"]


def _log_groups(clients: Clients, names: Names) -> list[str]:
    logs = clients("logs")
    return [
        g["logGroupName"]
        for prefix in names.log_group_prefixes
        for g in _pages(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=prefix[:-1])
        if g["logGroupName"] == prefix[:-1] or g["logGroupName"].startswith(prefix)
    ]


def _training_streams(clients: Clients, names: Names) -> list[str]:
    try:
        streams = list(
            _pages(
                clients("logs"),
                "describe_log_streams",
                "logStreams",
                logGroupName=TRAINING_JOBS_LOG_GROUP,
                logStreamNamePrefix=f"{names.endpoint}-",
            )
        )
    except ClientError as exc:
        if _missing(exc):
            return []
        raise
    # a job's streams are <job>/algo-<n>-<epoch>
    return [s["logStreamName"] for s in streams if names.owns(s["logStreamName"].split("/")[0])]


def _scalable_targets(clients: Clients, names: Names) -> list[dict[str, Any]]:
    targets = _pages(
        clients("application-autoscaling"),
        "describe_scalable_targets",
        "ScalableTargets",
        ServiceNamespace="sagemaker",
    )
    return [t for t in targets if t["ResourceId"].startswith(f"endpoint/{names.endpoint}/")]


def _configs_and_models(clients: Clients, names: Names) -> tuple[list[str], list[str]]:
    sm = clients("sagemaker")
    configs = _pages(sm, "list_endpoint_configs", "EndpointConfigs", NameContains=names.endpoint)
    models = _pages(sm, "list_models", "Models", NameContains=names.endpoint)
    return (
        [c["EndpointConfigName"] for c in configs if names.owns(c["EndpointConfigName"])],
        [m["ModelName"] for m in models if names.owns(m["ModelName"])],
    )


def _packages(clients: Clients, names: Names) -> tuple[list[str], bool]:
    """The group's version ARNs, and whether the group exists."""
    sm = clients("sagemaker")
    try:
        sm.describe_model_package_group(ModelPackageGroupName=names.group)
    except ClientError as exc:
        if _missing(exc):
            return [], False
        raise
    packages = _pages(
        sm, "list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=names.group
    )
    return [p["ModelPackageArn"] for p in packages], True


def leftovers(clients: Clients, names: Names) -> list[str]:
    """What of the verification stack still exists, one line each (empty: all gone)."""
    found = []
    if _stack_status(clients, names):
        found.append(f"stack {names.stack}")
    if machine := _state_machine_arn(clients, names):
        found.append(f"state machine {machine}")
    found += [f"scalable target {t['ResourceId']}" for t in _scalable_targets(clients, names)]
    if _endpoint_status(clients, names):
        found.append(f"endpoint {names.endpoint}")
    configs, models = _configs_and_models(clients, names)
    found += [f"endpoint config {c}" for c in configs] + [f"model {m}" for m in models]
    packages, group = _packages(clients, names)
    found += [f"model package {p}" for p in packages]
    found += [f"model package group {names.group}"] if group else []
    found += [f"bucket {b}" for b in _buckets(clients, names)]
    if (sam_bucket := _sam_bucket(clients)) and next(
        _versions(clients("s3"), sam_bucket, f"{names.stack}/"), None
    ):
        found.append(f"SAM artifacts s3://{sam_bucket}/{names.stack}/")
    found += [f"log group {g}" for g in _log_groups(clients, names)]
    found += [
        f"log stream {TRAINING_JOBS_LOG_GROUP}/{s}" for s in _training_streams(clients, names)
    ]
    return found


def _stop_runs(clients: Clients, names: Names, log: Log) -> None:
    if machine := _state_machine_arn(clients, names):
        sfn = clients("stepfunctions")
        running = _pages(
            sfn, "list_executions", "executions", stateMachineArn=machine, statusFilter="RUNNING"
        )
        for execution in running:
            sfn.stop_execution(executionArn=execution["executionArn"], cause="make verify-aws")
            log(f"stopped execution {execution['name']}")
    sm = clients("sagemaker")
    jobs = _pages(
        sm,
        "list_training_jobs",
        "TrainingJobSummaries",
        NameContains=names.endpoint,
        StatusEquals="InProgress",
    )
    for job in jobs:
        if names.owns(job["TrainingJobName"]):
            sm.stop_training_job(TrainingJobName=job["TrainingJobName"])
            log(f"stopped training job {job['TrainingJobName']}")


def _delete_endpoint(clients: Clients, names: Names, log: Log, timeouts: Timeouts) -> None:
    aas = clients("application-autoscaling")
    for target in _scalable_targets(clients, names):
        aas.deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=target["ResourceId"],
            ScalableDimension=target["ScalableDimension"],
        )
        log(f"deregistered scalable target {target['ResourceId']}")
    settled = wait_until(
        lambda: _endpoint_status(clients, names) not in BUSY,
        timeouts.endpoint_s,
        timeouts.interval_s,
    )
    if settled and _endpoint_status(clients, names):
        clients("sagemaker").delete_endpoint(EndpointName=names.endpoint)
        log(f"deleting endpoint {names.endpoint}")
    gone = wait_until(
        lambda: _endpoint_status(clients, names) is None, timeouts.endpoint_s, timeouts.interval_s
    )
    if not gone:
        log(f"endpoint {names.endpoint} still there after {timeouts.endpoint_s:g} s")
    sm = clients("sagemaker")
    configs, models = _configs_and_models(clients, names)
    for config in configs:
        sm.delete_endpoint_config(EndpointConfigName=config)
    for model in models:
        sm.delete_model(ModelName=model)
    log(f"deleted {len(configs)} endpoint configs and {len(models)} models")


def _delete_registry(clients: Clients, names: Names, log: Log) -> None:
    sm = clients("sagemaker")
    packages, group = _packages(clients, names)
    for package in packages:
        sm.delete_model_package(ModelPackageName=package)
    if group:
        sm.delete_model_package_group(ModelPackageGroupName=names.group)
        log(f"deleted model package group {names.group} and its {len(packages)} versions")


def _versions(s3: BaseClient, bucket: str, prefix: str = "") -> Iterator[list[dict[str, str]]]:
    """Every object version and delete marker under ``prefix``, a page at a time."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        found = page.get("Versions", []) + page.get("DeleteMarkers", [])
        if found:
            yield [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in found]


def _delete_versions(s3: BaseClient, bucket: str, prefix: str = "") -> int:
    count = 0
    for versions in _versions(s3, bucket, prefix):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True})
        count += len(versions)
    return count


def _sam_bucket(clients: Clients) -> str | None:
    """The SAM CLI's bucket (``--resolve-s3``), shared by the account's SAM apps."""
    try:
        (stack,) = clients("cloudformation").describe_stacks(StackName=SAM_STACK)["Stacks"]
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs.get("SourceBucket")


def _empty_buckets(clients: Clients, names: Names, log: Log) -> None:
    s3 = clients("s3")
    for bucket in _buckets(clients, names):
        for upload in _pages(s3, "list_multipart_uploads", "Uploads", Bucket=bucket):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        log(f"emptied bucket {bucket} ({_delete_versions(s3, bucket)} object versions)")
    if sam_bucket := _sam_bucket(clients):
        count = _delete_versions(s3, sam_bucket, f"{names.stack}/")
        log(f"deleted the stack's {count} artifacts under s3://{sam_bucket}/{names.stack}/")


def _delete_stack(clients: Clients, names: Names, log: Log, timeouts: Timeouts) -> None:
    if not _stack_status(clients, names):
        return
    clients("cloudformation").delete_stack(StackName=names.stack)
    log(f"deleting stack {names.stack}")
    gone = wait_until(
        lambda: _stack_status(clients, names) in {None, "DELETE_FAILED"},
        timeouts.stack_s,
        timeouts.interval_s,
    )
    status = _stack_status(clients, names)
    if not gone or status:
        log(f"stack {names.stack} is {status} (see its events in the CloudFormation console)")


def _delete_buckets_and_logs(clients: Clients, names: Names, log: Log) -> None:
    for bucket in _buckets(clients, names):
        clients("s3").delete_bucket(Bucket=bucket)
        log(f"deleted bucket {bucket}")
    logs = clients("logs")
    for group in _log_groups(clients, names):
        logs.delete_log_group(logGroupName=group)
        log(f"deleted log group {group}")
    streams = _training_streams(clients, names)
    for stream in streams:
        logs.delete_log_stream(logGroupName=TRAINING_JOBS_LOG_GROUP, logStreamName=stream)
    if streams:
        log(f"deleted {len(streams)} training log streams")


def cleanup(
    clients: Clients, names: Names, log: Log = print, timeouts: Timeouts | None = None
) -> list[str]:
    """Delete everything of ``names``' stack; returns what is left (empty: all gone)."""
    timeouts = timeouts or Timeouts()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("stop the runs", lambda: _stop_runs(clients, names, log)),
        ("delete the endpoint", lambda: _delete_endpoint(clients, names, log, timeouts)),
        ("delete the model registry", lambda: _delete_registry(clients, names, log)),
        ("empty the bucket", lambda: _empty_buckets(clients, names, log)),
        ("delete the stack", lambda: _delete_stack(clients, names, log, timeouts)),
        ("delete the bucket and logs", lambda: _delete_buckets_and_logs(clients, names, log)),
    ]
    for what, step in steps:
        try:
            step()
        except (ClientError, BotoCoreError) as exc:  # the next steps still run
            log(f"could not {what}: {exc}")
    try:
        return leftovers(clients, names)
    except (ClientError, BotoCoreError) as exc:
        return [f"(could not list what is left: {exc})"]
