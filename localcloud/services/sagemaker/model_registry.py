"""The model registry's local behaviour, where moto 5.2.5 differs from SageMaker.

- A model created from a package (``Containers=[{"ModelPackageName": arn}]``) serves the
  package's image, model data and environment: SageMaker resolves the version at
  CreateModel (DescribeModel then shows them beside ``ModelPackageName``), and refuses a
  version that is not Approved. moto stores the bare reference, which the local hosting
  could not serve.
- UpdateModelPackage keeps the metadata and approval description it is not given (moto
  replaced them with nothing).
- Creating a version in a group, or changing its approval status, sends the "SageMaker
  Model Package State Change" event to EventBridge, where the template's rule starts the
  state machine (a deploy-only run), as on AWS. moto sends no SageMaker events at all.
- A new version is ``InProgress`` for a moment (``install(validation_seconds=...)``; the
  local cloud's server uses ``VALIDATION_SECONDS``), then ``Completed``, as SageMaker
  validates a package before it can be used; moto makes it Completed at once. CreateModel
  from a version that is not Completed is refused (the wording is ours). A Wait state whose
  input names the version ends when it completes
  (``localcloud.services.stepfunctions.wait_wakeup``).
- DeleteModelPackage and DeleteModelPackageGroup, which moto lacks (``make verify-aws``'s
  cleanup deletes the registry it tested; tests/acceptance/test_cleanup.py).
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.events.models import events_backends
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from localcloud.services.events import s3_events
from localcloud.services.stepfunctions import wait_wakeup

log = logging.getLogger(__name__)
DETAIL_TYPE = "SageMaker Model Package State Change"
# How long a new version stays InProgress in the local cloud (SageMaker takes seconds).
VALIDATION_SECONDS = 0.5


# The detail of AWS's documented example event is the version's description: these fields
# (and ApprovalDescription, CustomerMetadataProperties when set, as DescribeModelPackage).
EVENT_FIELDS = (
    "ModelPackageGroupName",
    "ModelPackageVersion",
    "ModelPackageArn",
    "ModelPackageDescription",
    "CreationTime",
    "InferenceSpecification",
    "ModelPackageStatus",
    "ModelPackageStatusDetails",
    "CertifyForMarketplace",
    "ModelApprovalStatus",
    "MetadataProperties",
    "ModelMetrics",
    "LastModifiedTime",
    "ApprovalDescription",
    "CustomerMetadataProperties",
)


def _plain(value: Any) -> Any:
    """A JSON value of the description (times as EventBridge writes them)."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def state_change_event(package: Any, account_id: str, region: str) -> dict[str, Any]:
    """The event as EventBridge delivers it (source aws.sagemaker)."""
    described = package.gen_response_object()
    detail = {k: _plain(described[k]) for k in EVENT_FIELDS if described.get(k) is not None}
    detail["ModelPackageStatus"] = "Completed"
    return s3_events.envelope(
        detail_type=DETAIL_TYPE,
        source="aws.sagemaker",
        account_id=account_id,
        region=region,
        resources=[package.arn],
        detail=detail,
    )


def publish(backend: SageMakerModelBackend, package: Any) -> list[str]:
    """Deliver the package's state-change event to the default bus's rules."""
    account_id, region = backend.account_id, backend.region_name
    if not package.model_package_group_name:
        return []  # unversioned packages belong to no group and send nothing here
    bus = events_backends[account_id][region].event_buses.get("default")
    if bus is None:
        return []
    sfn = stepfunctions_parser_backends[account_id][region]

    def start(state_machine_arn: str, name: str, execution_input: str) -> str:
        return sfn.start_execution(state_machine_arn, name, execution_input).exec_arn

    event = state_change_event(package, account_id, region)
    try:
        started = s3_events.deliver(event, list(bus.rules.values()), start)
    except Exception:  # asynchronous on AWS: never fail the SageMaker request
        log.exception("delivering the model package event for %s failed", package.arn)
        return []
    for arn in started:
        log.info("%s (%s) started %s", package.arn, package.model_approval_status, arn)
    return started


def resolve_containers(
    backend: SageMakerModelBackend, containers: list[dict[str, Any]] | None
) -> list[dict[str, Any]] | None:
    """Containers naming a package, filled in from the package (as SageMaker does)."""
    if not containers:
        return containers
    resolved = []
    for container in containers:
        arn = container.get("ModelPackageName")
        if not arn:
            resolved.append(container)
            continue
        package = backend.describe_model_package(arn)
        if package.model_package_status != "Completed":
            raise ValidationError(
                f"Model package {arn} is {package.model_package_status}: SageMaker is still "
                "validating it; create the model once its ModelPackageStatus is Completed"
            )
        if package.model_approval_status != "Approved":
            raise ValidationError(
                f"Model package {arn} is {package.model_approval_status}: "
                "only an Approved model package can be deployed"
            )
        spec = (package.inference_specification or {}).get("Containers") or [{}]
        merged = {k: v for k, v in spec[0].items() if k in ("Image", "ModelDataUrl")}
        merged["Environment"] = {
            **(spec[0].get("Environment") or {}),
            **(container.get("Environment") or {}),
        }
        resolved.append({**merged, **container, "Environment": merged["Environment"]})
    return resolved


def delete_model_package(backend: SageMakerModelBackend, name: str) -> None:
    arn = backend.describe_model_package(name).arn  # unknown: moto's ValidationError
    del backend.model_packages[arn]
    for key in [k for k, v in backend.model_package_name_mapping.items() if v == arn]:
        del backend.model_package_name_mapping[key]


def delete_model_package_group(backend: SageMakerModelBackend, name: str) -> None:
    backend.describe_model_package_group(name)  # unknown: moto's ValidationError
    del backend.model_package_groups[name]


def _delete_package(self: SageMakerResponse) -> ActionResult:
    delete_model_package(self.sagemaker_backend, self._get_param("ModelPackageName"))
    return EmptyResult()


def _delete_group(self: SageMakerResponse) -> ActionResult:
    delete_model_package_group(self.sagemaker_backend, self._get_param("ModelPackageGroupName"))
    return EmptyResult()


def install_deletes() -> None:
    SageMakerResponse.delete_model_package = _delete_package  # type: ignore[attr-defined]
    SageMakerResponse.delete_model_package_group = _delete_group  # type: ignore[attr-defined]


def _validate(package: Any, seconds: float) -> None:
    """The version is InProgress for ``seconds`` (on a timer thread), then Completed."""
    if seconds <= 0:
        return
    package.model_package_status = "InProgress"

    def complete() -> None:
        package.model_package_status = "Completed"
        wait_wakeup.settled(package.arn)

    timer = threading.Timer(seconds, complete)
    timer.daemon = True
    timer.start()


def install(validation_seconds: float = 0.0) -> None:
    """The registry's local behaviour; a new version is InProgress ``validation_seconds``."""
    install_deletes()
    original_create_model = SageMakerModelBackend.create_model
    original_create = SageMakerModelBackend.create_model_package
    original_update = SageMakerModelBackend.update_model_package

    def create_model(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        if "containers" in kwargs:
            kwargs["containers"] = resolve_containers(self, kwargs["containers"])
        return original_create_model(self, *args, **kwargs)

    def create_model_package(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> str:
        arn = original_create(self, *args, **kwargs)
        package = self.describe_model_package(arn)
        _validate(package, validation_seconds)
        publish(self, package)
        return arn

    def update_model_package(
        self: SageMakerModelBackend,
        model_package_arn: str,
        model_approval_status: str | None = None,
        approval_description: str | None = None,
        customer_metadata_properties: dict[str, str] | None = None,
        **rest: Any,
    ) -> str:
        package = self.describe_model_package(model_package_arn)
        before = package.model_approval_status
        metadata = dict(package.customer_metadata_properties or {})
        metadata.update(customer_metadata_properties or {})
        description = approval_description
        if description is None:
            description = package.approval_description
        arn = original_update(
            self,
            model_package_arn=model_package_arn,
            model_approval_status=model_approval_status,
            approval_description=description,
            customer_metadata_properties=metadata,
            **rest,
        )
        if model_approval_status and model_approval_status != before:
            publish(self, package)
        return arn

    create_model.__wrapped__ = original_create_model  # type: ignore[attr-defined]
    SageMakerModelBackend.create_model = create_model  # type: ignore[method-assign]
    SageMakerModelBackend.create_model_package = create_model_package  # type: ignore[method-assign]
    SageMakerModelBackend.update_model_package = update_model_package  # type: ignore[method-assign]
