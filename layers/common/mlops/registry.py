"""The model registry: every trained model becomes a version of a SageMaker Model Package Group.

A version records what serves (the inference image, the model data and the serving
environment), how good it is (``ModelMetrics`` pointing at a JSON document in S3, and the
numbers again as metadata) and where it came from (data set URI and version, training job,
execution, code hash). Its approval status is the gate's verdict: ``Approved`` (the
pipeline deploys it), ``PendingManualApproval`` (``ApprovalMode=manual``: a person approves
it and the approval event deploys it) or ``Rejected`` (a gate failed, or the deployment
failed and was rolled back). The endpoint's model is created from the package, so the
endpoint config names exactly the registered version.

Who approved a version: a version the pipeline registers ``Approved`` itself
(``ApprovalMode=auto``) carries ``approved_by=pipeline`` in its metadata, which RejectModel
removes. Any other Approved version was approved by a person (or a tool) after its
registration. The template's approval rule skips the pipeline's own approvals by that key,
so they start no second run; a person's re-approval of a rejected version deploys it.

A rerun of the same trigger (a manual StartExecution, or EventBridge delivering an event
twice) has the same run id. It reuses the version registered earlier only if that version
still says what this run's verdict says: a rejected one (its deployment failed) or one the
current approval mode would not have deployed (the pipeline's own approval when the stack
is now ``manual``) gets a new version instead.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from mlops.errors import ModelPackageError
from mlops.gate import against_live
from mlops.naming import content_id
from mlops.s3 import parse_s3_uri, put_if_absent, s3_uri

APPROVED = "Approved"
PENDING = "PendingManualApproval"
REJECTED = "Rejected"
APPROVAL_MODES = ("auto", "manual")
APPROVED_BY = "approved_by"  # metadata key of the pipeline's own approvals
PIPELINE = "pipeline"
METADATA_VALUE_MAX = 256  # CustomerMetadataProperties: values up to 256 characters
METADATA_KEY_MAX = 128  # and keys up to 128
DESCRIPTION_MAX = 1000  # ApprovalDescription (ModelPackageDescription allows 1024)
# A retried RegisterModel finds the version it already created among the newest ones.
RECENT_VERSIONS = 10
METRICS_PREFIX = "models/registry"
CONTENT_TYPES = ["image/jpeg", "image/png", "application/json"]
RESPONSE_TYPES = ["application/json"]


def approval_status(gate_passed: bool, approval_mode: str) -> str:
    if not gate_passed:
        return REJECTED
    return APPROVED if approval_mode == "auto" else PENDING


def code_hash(submit_directory: str | None) -> str:
    """The content hash in ``s3://bucket/training-code/<sha256>/sourcedir.tar.gz``."""
    parts = (submit_directory or "").rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else "unknown"


def _value(value: Any, limit: int = METADATA_VALUE_MAX) -> str:
    """A CustomerMetadataProperties key or value AWS accepts: 1 to ``limit`` characters of
    letters, digits, spaces and ``_.:/=+-@`` (the API's pattern; anything else is a
    ValidationException). Other characters become allowed ones that read alike (``;`` a
    dash, ``,`` and quotes and brackets dropped, the rest ``-``), so a gate's reason stays
    readable; an S3 URI with such characters in its key is recorded in this form too."""
    text = value if isinstance(value, str) else json.dumps(value)
    allowed = "".join(_allowed(char) for char in text)
    allowed = " ".join(filter(None, allowed.split(" ")))[:limit]  # no doubled or edge spaces
    while len(allowed.encode("utf-16-le")) > 2 * limit:  # AWS counts UTF-16 units
        allowed = allowed[:-1]
    return allowed or "-"


_METADATA_PUNCTUATION = frozenset("_.:/=+-@")
_METADATA_REPLACEMENTS = {";": " -", "(": "- ", ")": "", ",": "", "'": "", '"': "", "`": ""}
_METADATA_REPLACEMENTS |= {"[": "", "]": "", "{": "", "}": "", "\t": " ", "\n": " ", "\r": " "}


def _allowed(char: str) -> str:
    if char in _METADATA_PUNCTUATION or unicodedata.category(char)[0] in "LNZ":
        return char
    return _METADATA_REPLACEMENTS.get(char, "-")


def metadata(
    run: Mapping[str, Any],
    job: Mapping[str, Any],
    gate: Mapping[str, Any],
    *,
    execution_arn: str,
    approval_mode: str,
) -> dict[str, str]:
    """CustomerMetadataProperties: the version's lineage and numbers, as strings."""
    champion = gate.get("champion") or {}
    values = {
        "run_id": run["run_id"],
        "deployment_id": run["deployment_id"],
        "dataset_uri": run["dataset"]["uri"],
        "dataset_version": run["dataset"]["version"],
        "training_job": job["TrainingJobName"],
        "execution": execution_arn,
        "code_hash": code_hash(_submit_directory(job)),
        "code_version": run["training"].get("code_version", "-"),
        "approval_mode": approval_mode,
        "gate": gate.get("reason") or "-",
        "champion_model": champion.get("model_artifact") or "none",
    }
    if job.get("TuningJobArn"):  # the best trial of the run's tuning job
        values["tuning_job"] = job["TuningJobArn"].rsplit("/", 1)[-1]
    for name, metric in job.get("metrics", {}).items():
        values[f"metric_{name}"] = f"{metric:.6g}"
    return {_value(key, METADATA_KEY_MAX): _value(value) for key, value in values.items()}


def _submit_directory(job: Mapping[str, Any]) -> str | None:
    raw = (job.get("HyperParameters") or {}).get("sagemaker_submit_directory")
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw


def package_request(
    run: Mapping[str, Any],
    job: Mapping[str, Any],
    gate: Mapping[str, Any],
    *,
    group: str,
    status: str,
    environment: Mapping[str, str],
    metrics_uri: str,
    execution_arn: str,
    approval_mode: str,
) -> dict[str, Any]:
    """The CreateModelPackage request of a run's model (a versioned package in ``group``)."""
    return {
        "ModelPackageGroupName": group,
        # CreateModelPackage takes no ApprovalDescription: the gates' verdict goes here.
        "ModelPackageDescription": _description(
            f"run {run['run_id']} on {run['dataset']['uri']}: {gate.get('reason') or status}"
        ),
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": run["model"]["image"],
                    "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"],
                    "Environment": dict(environment),
                }
            ],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": RESPONSE_TYPES,
            "SupportedRealtimeInferenceInstanceTypes": [run["endpoint"]["instance_type"]],
        },
        "ModelApprovalStatus": status,
        "MetadataProperties": {
            "GeneratedBy": execution_arn[:1024],
            "CommitId": code_hash(_submit_directory(job))[:1024],
        },
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}
            }
        },
        "CustomerMetadataProperties": {
            **metadata(run, job, gate, execution_arn=execution_arn, approval_mode=approval_mode),
            **({APPROVED_BY: PIPELINE} if status == APPROVED else {}),
        },
        # One version per run and execution: a rerun that must not reuse the run's earlier
        # version (see register) gets a new one, where a retry gets its own back.
        "ClientToken": content_id({"run_id": run["run_id"], "execution": execution_arn}),
    }


def _description(text: str) -> str:
    return text[:DESCRIPTION_MAX]


def write_metrics(
    s3: Any, bucket: str, run: Mapping[str, Any], job: Mapping[str, Any], gate: Mapping[str, Any]
) -> str:
    """The ModelQuality statistics document (metrics and the gate's verdict); its S3 URI."""
    key = f"{METRICS_PREFIX}/{run['run_id']}/{job['TrainingJobName']}/metrics.json"
    document = {
        "training_job": job["TrainingJobName"],
        "metrics": dict(job.get("metrics", {})),
        "gate": {k: gate.get(k) for k in ("passed", "reason", "metric", "value", "threshold")},
        "champion": gate.get("champion"),
    }
    put_if_absent(s3, bucket, key, json.dumps(document, indent=1, sort_keys=True).encode())
    return s3_uri(bucket, key)


def find_version(sagemaker: Any, group: str, run_id: str) -> dict[str, Any] | None:
    """The version this run registered already (a retried state), among the newest ones."""
    listed = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=RECENT_VERSIONS,
    ).get("ModelPackageSummaryList", [])
    for summary in listed:
        package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if (package.get("CustomerMetadataProperties") or {}).get("run_id") == run_id:
            return package
    return None


def approved_by_pipeline(package: Mapping[str, Any]) -> bool:
    """Whether the version's approval is the pipeline's own (auto mode), not a person's."""
    meta = package.get("CustomerMetadataProperties") or {}
    return package.get("ModelApprovalStatus") == APPROVED and meta.get(APPROVED_BY) == PIPELINE


def _reusable(existing: Mapping[str, Any], wanted: str) -> bool:
    """Whether the run's earlier version still says what its verdict now says (``wanted``).

    A person's approval stands for a run that now asks for one (manual); the pipeline's own
    approval does not. A version rejected since (its deployment failed) is never reused.
    """
    status = existing.get("ModelApprovalStatus")
    if status == wanted:
        return True
    return wanted == PENDING and status == APPROVED and not approved_by_pipeline(existing)


def register(sagemaker: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    """Create the version (or find the one an earlier attempt of this run created, when it
    still says what this run's verdict says); what was registered."""
    group = request["ModelPackageGroupName"]
    run_id = request["CustomerMetadataProperties"]["run_id"]
    existing = find_version(sagemaker, group, run_id)
    if existing is None or not _reusable(existing, request["ModelApprovalStatus"]):
        arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
        status, created = request["ModelApprovalStatus"], True
    else:
        arn, status, created = existing["ModelPackageArn"], existing["ModelApprovalStatus"], False
    return {
        "model_package_arn": arn,
        "model_package_group": group,
        "approval_status": status,
        "created": created,
        "model_artifact": request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
    }


def reject(sagemaker: Any, arn: str, reason: str) -> dict[str, Any]:
    """Record a version that failed after approval (deployment, canary, smoke test); a
    person's later approval of it is then theirs, not the pipeline's."""
    sagemaker.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus=REJECTED,
        ApprovalDescription=_description(reason or "the deployment failed"),
        CustomerMetadataPropertiesToRemove=[APPROVED_BY],
    )
    return {"model_package_arn": arn, "approval_status": REJECTED}


def approved_package(sagemaker: Any, arn: str, group: str) -> dict[str, Any]:
    """An approved version of ``group`` to deploy: its model data, image and lineage."""
    try:
        package = sagemaker.describe_model_package(ModelPackageName=arn)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise ModelPackageError(f"model package {arn} cannot be read: {message}") from None
    if package.get("ModelPackageGroupName") != group:
        raise ModelPackageError(
            f"model package {arn} belongs to group {package.get('ModelPackageGroupName')!r}, "
            f"not to this pipeline's {group!r}"
        )
    status = package.get("ModelApprovalStatus")
    if status != APPROVED:
        raise ModelPackageError(f"model package {arn} is {status}; only Approved versions deploy")
    spec = _inference_container(package)
    artifact = spec.get("ModelDataUrl")
    if not artifact:
        raise ModelPackageError(f"model package {arn} has no ModelDataUrl")
    parse_s3_uri(artifact)
    return {
        "model_package_arn": package["ModelPackageArn"],
        "model_artifact": artifact,
        "image": spec.get("Image"),
        "metadata": dict(package.get("CustomerMetadataProperties") or {}),
        "version": package.get("ModelPackageVersion"),
        "approved_by_pipeline": approved_by_pipeline(package),
    }


def live_model_artifact(sagemaker: Any, endpoint_name: str, variant_name: str) -> str | None:
    """The model data the endpoint serves now (the champion), or None if nothing serves."""
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as exc:
        if "Could not find" in exc.response.get("Error", {}).get("Message", ""):
            return None
        raise
    live = live_version(sagemaker, endpoint, variant_name)
    return live["model_artifact"] if live else None


def live_version(
    sagemaker: Any, endpoint: Mapping[str, Any], variant_name: str
) -> dict[str, Any] | None:
    """What a described endpoint serves: ``model_artifact`` and its registry version's
    ``metadata`` (empty for a model not created from a version); None if nothing serves."""
    # Updating or RollingBack still serve the current config; a Failed endpoint serves nothing.
    if endpoint.get("EndpointStatus") == "Failed" or not endpoint.get("EndpointConfigName"):
        return None
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variants = {v["VariantName"]: v for v in config.get("ProductionVariants", [])}
    variant = variants.get(variant_name)
    if variant is None:
        return None
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    package: dict[str, Any] = {}
    if container.get("ModelPackageName"):
        package = sagemaker.describe_model_package(ModelPackageName=container["ModelPackageName"])
    artifact = container.get("ModelDataUrl") or _inference_container(package).get("ModelDataUrl")
    if not artifact:
        return None
    metadata = dict(package.get("CustomerMetadataProperties") or {})
    return {"model_artifact": str(artifact), "metadata": metadata}


def worse_than_live(
    sagemaker: Any,
    package: Mapping[str, Any],
    endpoint: Mapping[str, Any],
    variant_name: str,
    quality_gate: Mapping[str, Any],
) -> str | None:
    """Why the version (``package``, described) must not replace the model a described
    endpoint serves (None: it may). Its champion gate compared it with the model live when
    it trained (the ``champion_model`` it recorded); if another went live since,
    ``against_live`` decides."""
    live = live_version(sagemaker, endpoint, variant_name)
    if live is None:
        return None
    candidate = dict(package.get("CustomerMetadataProperties") or {})
    gated = {
        _value(_inference_container(package).get("ModelDataUrl") or "-"),
        candidate.get("champion_model"),
    }
    if _value(live["model_artifact"]) in gated:
        return None  # the gate's comparison still holds (or it serves this model already)
    return against_live(candidate, live, quality_gate)


def _inference_container(package: Mapping[str, Any]) -> Mapping[str, Any]:
    """A described version's (first) inference container: its model data and image."""
    return (package.get("InferenceSpecification", {}).get("Containers") or [{}])[0]


def outcome_message(registered: Mapping[str, Any]) -> str:
    """What the run's output says about the version (the manual-approval run ends here)."""
    arn, status = registered["model_package_arn"], registered["approval_status"]
    if status == PENDING:
        return (
            f"registered {arn} as PendingManualApproval; approve it to deploy it "
            f"(aws sagemaker update-model-package --model-package-arn {arn} "
            "--model-approval-status Approved, or python -m localcloud approve ARN)"
        )
    if status == REJECTED:
        return f"registered {arn} as Rejected: it is not deployed"
    return f"registered {arn} as Approved; deploying it"
