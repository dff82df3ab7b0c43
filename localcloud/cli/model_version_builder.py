"""Model versions built by hand from a registered one, as a person or a CI job would.

A new version of a model package group often carries the same weights with other serving
code: SageMaker's PyTorch serving container runs ``code/inference.py`` from the model data,
so a ``model.tar.gz`` whose ``code/inference.py`` changed serves differently. ``repackage``
copies a version's ``model.tar.gz`` with a new ``code/inference.py`` (the old one kept as
``code/previous_inference.py``, importable by the new one), uploads it next to the original
and registers it as a new version ``PendingManualApproval``; approving it
(``UpdateModelPackage``) sends the "SageMaker Model Package State Change" event whose rule
starts the pipeline's deploy-only run: the canary.

``JPEG_ONLY_HANDLERS`` is such a change with a real bug: it "hardens" decoding to JPEG and
raises on anything else, so the server answers 500 for PNG (and every other format) while
the smoke test, whose held-out images are JPEGs, passes. Under mixed traffic the canary
fails the share of requests that are not JPEGs and the endpoint's 5XX alarm rolls it back.
Nothing in the product code knows about it: it is an ordinary handlers file in the model.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

from localcloud.runtime.connection import Connection

INFERENCE = "code/inference.py"
PREVIOUS = "code/previous_inference.py"
MANUAL = "PendingManualApproval"

JPEG_ONLY_HANDLERS = '''"""The previous version's serving handlers, decoding only JPEG.

Only JPEG is decoded now (smaller attack surface); anything else raises.
"""

import io

from PIL import Image

import previous_inference
from previous_inference import (  # noqa: F401
    model_fn,
    model_warmup_fn,
    output_fn,
    predict_batch_fn,
    predict_fn,
)
from imgcls.protocol import parse_request


def input_fn(request_body, content_type):
    request = parse_request(request_body, content_type)
    with Image.open(io.BytesIO(request.image), formats=["JPEG"]) as image:
        image.verify()
    return previous_inference.input_fn(request_body, content_type)
'''


def _s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def with_handlers(archive: bytes, handlers: str) -> bytes:
    """``archive`` (a model.tar.gz) with ``code/inference.py`` replaced by ``handlers``;
    the replaced file is kept as ``code/previous_inference.py``."""
    out = io.BytesIO()
    previous = None
    with (
        tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            name = member.name.removeprefix("./")
            data = source.extractfile(member) if member.isfile() else None
            if name == INFERENCE and data is not None:
                previous = data.read()
                continue
            if name == PREVIOUS:
                continue
            target.addfile(member, data)
        if previous is None:
            raise ValueError(f"the model data has no {INFERENCE} to replace")
        for name, content in ((PREVIOUS, previous), (INFERENCE, handlers.encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            target.addfile(info, io.BytesIO(content))
    return out.getvalue()


def repackage(conn: Connection, source_arn: str, handlers: str, name: str, description: str) -> str:
    """Register a copy of version ``source_arn`` whose ``code/inference.py`` is ``handlers``,
    ``PendingManualApproval``; its model data goes next to the source's as ``<name>/``.
    Returns the new version's ARN."""
    sagemaker, s3 = conn.client("sagemaker"), conn.client("s3")
    package = sagemaker.describe_model_package(ModelPackageName=source_arn)
    container = dict(package["InferenceSpecification"]["Containers"][0])
    bucket, key = _s3_parts(container["ModelDataUrl"])
    archive = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    new_key = f"{key.rsplit('/', 1)[0]}/{name}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=new_key, Body=with_handlers(archive, handlers))
    container["ModelDataUrl"] = f"s3://{bucket}/{new_key}"
    spec = {**package["InferenceSpecification"], "Containers": [container]}
    metadata: dict[str, Any] = {
        k: v
        for k, v in (package.get("CustomerMetadataProperties") or {}).items()
        # not the source's run, nor its approval (approved_by: the pipeline approved the
        # source; this copy waits for a person, whose approval must start its run)
        if k not in ("run_id", "deployment_id", "execution", "gate", "approved_by")
    }
    metadata.update(approval_mode="manual", derived_from=source_arn[:256], change=description)
    return str(
        sagemaker.create_model_package(
            ModelPackageGroupName=package["ModelPackageGroupName"],
            ModelPackageDescription=description[:1024],
            InferenceSpecification=spec,
            ModelApprovalStatus=MANUAL,
            CustomerMetadataProperties={k: str(v)[:256] for k, v in metadata.items()},
        )["ModelPackageArn"]
    )


def approve(conn: Connection, arn: str, description: str) -> None:
    """Approve a version (what ``python -m localcloud approve`` does): its deploy-only run
    starts from the approval event. The approval is a person's, also of a version the
    pipeline once approved itself, so its ``approved_by`` mark goes (see mlops/registry.py)."""
    conn.client("sagemaker").update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription=description,
        CustomerMetadataPropertiesToRemove=["approved_by"],
    )


def live_package(conn: Connection, endpoint_name: str) -> str:
    """The model package version the endpoint serves (its model is created from it)."""
    sagemaker = conn.client("sagemaker")
    config_name = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    containers = model.get("Containers") or [model.get("PrimaryContainer") or {}]
    arn = containers[0].get("ModelPackageName")
    if not arn:
        raise ValueError(f"endpoint {endpoint_name}'s model was not created from a package")
    return str(arn)
