"""The changes to moto's SageMaker and SageMaker Runtime classes.

Request handlers (``SageMakerResponse``) are wrapped or added so that moto keeps its own
validation and bookkeeping and the local runtime does the work: training runs, fleets,
routing. ``apply()`` patches once; ``revert()`` restores moto.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.core.common_types import TYPE_RESPONSE
from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ResourceInUseException, ResourceNotFound, ValidationError
from moto.sagemaker.models import (
    FakeEndpoint,
    FakeEndpointConfig,
    FakeTrainingJob,
    SageMakerModelBackend,
)
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from . import capture, guardrails, install_options, instance_quotas, sdk_shapes, tuning
from .autoscaling import deregister_endpoint, describe_scaling_activities, forget_activities
from .hosting import ENDPOINTS, EndpointRuntime, InvokeError, not_found
from .metric_definitions import check_metric_definitions
from .process_index import Registry
from .training import TRAINING_RUNS, TrainingRun

TUNING_RUNS: Registry[tuning.TuningRun] = Registry()

_MISSING = object()
_originals: dict[tuple[type, str], Any] = {}


def _patch(cls: type, name: str, value: Any) -> None:
    _originals.setdefault((cls, name), cls.__dict__.get(name, _MISSING))
    setattr(cls, name, value)


def _original(cls: type, name: str) -> Callable[..., Any]:
    original = _originals[(cls, name)]
    return getattr(super(cls, cls), name) if original is _MISSING else original


# --- training jobs -------------------------------------------------------------------


def start_training_job(
    backend: SageMakerModelBackend,
    account_id: str,
    region: str,
    request: dict[str, Any],
    observer: Callable[[str, float], None] | None = None,
) -> tuple[FakeTrainingJob, TrainingRun]:
    """Create the job in moto's backend and start it for real (a request's or a tuning
    job's trial); ``observer`` sees every metric value the job prints."""
    name = request.get("TrainingJobName")
    if name in backend.training_jobs:
        raise ResourceInUseException(
            "Training job names must be unique within an AWS account and region, and a "
            f"training job with this name already exists ({backend.training_jobs[name].arn})"
        )
    spec = request.get("AlgorithmSpecification") or {}
    check_metric_definitions(spec.get("MetricDefinitions") or [])
    instance_quotas.check_training_job(backend, request)
    job = backend.create_training_job(
        **{arg: copy.deepcopy(request.get(key, default)) for arg, key, default in _TRAINING_ARGS}
    )
    job.algorithm_specification = spec
    run = TrainingRun(job, account_id, region, request, install_options.current())
    if observer is not None:
        run.observe_metrics(observer)
    TRAINING_RUNS.put((account_id, region, name), run)
    run.start()
    return job, run


# moto's create_training_job arguments: (argument, request member, default)
_TRAINING_ARGS = [
    ("training_job_name", "TrainingJobName", None),
    ("hyper_parameters", "HyperParameters", None),
    ("algorithm_specification", "AlgorithmSpecification", None),
    ("role_arn", "RoleArn", None),
    ("input_data_config", "InputDataConfig", None),
    ("output_data_config", "OutputDataConfig", None),
    ("resource_config", "ResourceConfig", None),
    ("vpc_config", "VpcConfig", None),
    ("stopping_condition", "StoppingCondition", None),
    ("tags", "Tags", None),
    ("enable_network_isolation", "EnableNetworkIsolation", False),
    ("enable_inter_container_traffic_encryption", "EnableInterContainerTrafficEncryption", False),
    ("enable_managed_spot_training", "EnableManagedSpotTraining", False),
    ("checkpoint_config", "CheckpointConfig", None),
    ("debug_hook_config", "DebugHookConfig", None),
    ("debug_rule_configurations", "DebugRuleConfigurations", None),
    ("tensor_board_output_config", "TensorBoardOutputConfig", None),
    ("experiment_config", "ExperimentConfig", None),
]


def create_training_job(self: SageMakerResponse) -> ActionResult:
    # a copy: moto's FakeTrainingJob overwrites the request's MetricDefinitions with a sample
    request = copy.deepcopy(self._get_params())
    job, _ = start_training_job(self.sagemaker_backend, self.current_account, self.region, request)
    return ActionResult({"TrainingJobArn": job.arn})


def stop_training_job(self: SageMakerResponse) -> EmptyResult:
    name = self._get_param("TrainingJobName")
    if name not in self.sagemaker_backend.training_jobs:
        arn = FakeTrainingJob.arn_formatter(name, self.current_account, self.region)
        raise ResourceNotFound(f"Could not find training job '{arn}'.")
    run = TRAINING_RUNS.get((self.current_account, self.region, name))
    if run is None:
        raise ValidationError(f"Training job {name} was not started by this local cloud.")
    run.request_stop()
    return EmptyResult()


# --- tuning jobs ---------------------------------------------------------------------


def create_hyper_parameter_tuning_job(self: SageMakerResponse) -> ActionResult:
    request = copy.deepcopy(self._get_params())
    tuning.check_request(request)
    backend, account, region = self.sagemaker_backend, self.current_account, self.region
    name = request["HyperParameterTuningJobName"]
    # Unique per account and region, not case sensitive (moto would replace the job).
    taken = [n for n in backend.hyper_parameter_tuning_jobs if n.lower() == name.lower()]
    if taken:
        raise ResourceInUseException(f"Tuning job {taken[0]} already exists.")
    result = _original(SageMakerResponse, "create_hyper_parameter_tuning_job")(self)
    job = backend.hyper_parameter_tuning_jobs[name]

    def start_child(
        child: dict[str, Any], observer: Callable[[str, float], None]
    ) -> tuple[FakeTrainingJob, TrainingRun]:
        trial, run = start_training_job(backend, account, region, child, observer)
        trial.tuning_job_arn = job.arn  # DescribeTrainingJob's TuningJobArn
        return trial, run

    run = tuning.TuningRun(job, request, start_child)
    TUNING_RUNS.put((account, region, name), run)
    run.start()
    return result


def _tuning_run(self: SageMakerResponse) -> tuning.TuningRun:
    name = self._get_param("HyperParameterTuningJobName")
    run = TUNING_RUNS.get((self.current_account, self.region, name))
    if run is None:
        raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {name}")
    return run


def stop_hyper_parameter_tuning_job(self: SageMakerResponse) -> EmptyResult:
    _tuning_run(self).request_stop()
    return EmptyResult()


def list_training_jobs_for_hyper_parameter_tuning_job(self: SageMakerResponse) -> ActionResult:
    summaries = _tuning_run(self).summaries()
    status = self._get_param("StatusEquals")
    if status:
        summaries = [s for s in summaries if s["TrainingJobStatus"] == status]
    sort_by = self._get_param("SortBy") or "Name"
    if sort_by == "FinalObjectiveMetricValue":
        summaries = [s for s in summaries if "FinalHyperParameterTuningJobObjectiveMetric" in s]
    key = {
        "Name": lambda s: s["TrainingJobName"],
        "CreationTime": lambda s: s["CreationTime"],
        "Status": lambda s: s["TrainingJobStatus"],
        "FinalObjectiveMetricValue": lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"][
            "Value"
        ],
    }[sort_by]
    summaries.sort(key=key, reverse=self._get_param("SortOrder") == "Descending")
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 10)
    page = summaries[start : start + size]
    result: dict[str, Any] = {"TrainingJobSummaries": page}
    if start + size < len(summaries):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


# --- endpoints -----------------------------------------------------------------------


def _endpoint_arn(self: SageMakerResponse, name: str) -> str:
    return FakeEndpoint.arn_formatter(name, self.current_account, self.region)


def _config(self: SageMakerResponse, name: str) -> dict[str, Any]:
    config = self.sagemaker_backend.endpoint_configs.get(name)
    if config is None:
        arn = FakeEndpointConfig.arn_formatter(name, self.current_account, self.region)
        raise ValidationError(f"Could not find endpoint configuration '{arn}'.")
    return {
        "EndpointConfigName": name,
        "ProductionVariants": copy.deepcopy(config.production_variants),
        "DataCaptureConfig": copy.deepcopy(config.data_capture_config or {}),
    }


def _execution_roles(self: SageMakerResponse, config: dict[str, Any]) -> list[str]:
    """The execution roles of the config's models: SageMaker acts for the endpoint as them."""
    models = self.sagemaker_backend._models
    names = [v.get("ModelName") for v in config["ProductionVariants"]]
    return [models[n].execution_role_arn for n in names if n in models]


def _runtime(self: SageMakerResponse, name: str) -> EndpointRuntime:
    runtime = ENDPOINTS.get((self.current_account, self.region, name))
    if runtime is None or name not in self.sagemaker_backend.endpoints:
        raise ValidationError(f"Could not find endpoint '{_endpoint_arn(self, name)}'.")
    return runtime


def _require_in_service(self: SageMakerResponse, runtime: EndpointRuntime) -> None:
    if runtime.busy or runtime.endpoint.endpoint_status != "InService":
        raise ValidationError(
            f"Cannot update in-progress endpoint '{_endpoint_arn(self, runtime.name)}'."
        )


def create_endpoint(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("EndpointName")
    if name in self.sagemaker_backend.endpoints:
        raise ValidationError(
            f"Cannot create already existing endpoint '{_endpoint_arn(self, name)}'."
        )
    config = _config(self, self._get_param("EndpointConfigName"))
    deployment = self._get_param("DeploymentConfig")
    if deployment is not None:  # kept for later updates (RetainDeploymentConfig)
        counts = {
            v["VariantName"]: int(v.get("InitialInstanceCount") or 1)
            for v in config["ProductionVariants"]
        }
        guardrails.plan(
            deployment,
            counts,
            account_id=self.current_account,
            region=self.region,
            roles=_execution_roles(self, config),
        )
    instance_quotas.check_endpoint(
        self.sagemaker_backend, self.current_account, self.region, config
    )
    result = _original(SageMakerResponse, "create_endpoint")(self)
    endpoint = self.sagemaker_backend.endpoints[name]
    endpoint.last_deployment_config = deployment
    capture.apply(endpoint, config["DataCaptureConfig"])
    runtime = EndpointRuntime(
        endpoint,
        self.sagemaker_backend,
        self.current_account,
        self.region,
        install_options.current(),
    )
    ENDPOINTS.put((self.current_account, self.region, name), runtime)
    runtime.create(config)
    return result


def update_endpoint(self: SageMakerResponse) -> ActionResult:
    runtime = _runtime(self, self._get_param("EndpointName"))
    config = _config(self, self._get_param("EndpointConfigName"))
    _require_in_service(self, runtime)
    excluded = {
        item["VariantPropertyType"]
        for item in self._get_param("ExcludeRetainedVariantProperties") or []
    }
    retain = bool(self._get_param("RetainAllVariantProperties"))
    retained = {
        name: fleet.desired
        for name, fleet in runtime.fleets.items()
        if retain and "DesiredInstanceCount" not in excluded
    }
    deployment = self._get_param("DeploymentConfig")
    if deployment is None and self._get_param("RetainDeploymentConfig"):
        deployment = getattr(runtime.endpoint, "last_deployment_config", None)
    counts, weights = runtime.new_counts(config, retain, excluded)
    config["DataCaptureConfig"] = capture.after_update(
        capture.in_effect(runtime.endpoint), config["DataCaptureConfig"], retain
    )  # in effect once the update completes
    if deployment is not None:
        guardrails.check_variants(set(runtime.fleets), set(counts), runtime.name)
    plan = guardrails.plan(
        deployment,
        counts,
        account_id=self.current_account,
        region=self.region,
        roles=_execution_roles(self, config),
    )
    instance_quotas.check_endpoint(
        self.sagemaker_backend, self.current_account, self.region, config, retained
    )
    runtime.update(config, counts, weights, plan)
    return ActionResult({"EndpointArn": runtime.endpoint.arn})


def update_endpoint_weights_and_capacities(self: SageMakerResponse) -> ActionResult:
    runtime = _runtime(self, self._get_param("EndpointName"))
    _require_in_service(self, runtime)
    counts: dict[str, int] = {}
    weights: dict[str, float] = {}
    for item in self._get_param("DesiredWeightsAndCapacities") or []:
        variant = item["VariantName"]
        if variant in counts or variant in weights:
            raise ValidationError(
                f'The variant name "{variant}" was non-unique within the request.'
            )
        if variant not in runtime.fleets:
            raise ValidationError(
                f'The variant name(s) "{variant}" is/are not present within endpoint '
                f'configuration "{runtime.endpoint.endpoint_config_name}".'
            )
        if item.get("DesiredInstanceCount") is not None:
            counts[variant] = int(item["DesiredInstanceCount"])
        if item.get("DesiredWeight") is not None:
            weights[variant] = float(item["DesiredWeight"])
    instance_quotas.check_scaling(
        self.sagemaker_backend, self.current_account, self.region, runtime.endpoint, counts
    )
    runtime.scale(counts, weights)
    return ActionResult({"EndpointArn": runtime.endpoint.arn})


def delete_endpoint(self: SageMakerResponse) -> EmptyResult:
    name = self._get_param("EndpointName")
    result = _original(SageMakerResponse, "delete_endpoint")(self)
    runtime = ENDPOINTS.pop((self.current_account, self.region, name))
    if runtime is not None:
        runtime.close()
    deregister_endpoint(self.current_account, self.region, name)
    return result


def invoke_endpoint(self: SageMakerRuntimeResponse) -> TYPE_RESPONSE:
    # the endpoint name is in the path: /endpoints/<name>/invocations
    name = unquote(self.path.split("/")[2])
    try:
        runtime = ENDPOINTS.get((self.current_account, self.region, name))
        if runtime is None:
            raise not_found(name, self.current_account)
        reply, variant = runtime.invoke(self.raw_body or b"", self.headers)
    except InvokeError as exc:
        # moto takes the HTTP status from the "status" header, not the tuple
        headers = {
            "status": str(exc.status),
            "x-amzn-ErrorType": exc.code,
            "Content-Type": "application/json",
        }
        return exc.status, headers, json.dumps(exc.fields)
    headers = {"Content-Type": reply.content_type, "x-Amzn-Invoked-Production-Variant": variant}
    if reply.custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = reply.custom_attributes
    return 200, headers, reply.body


# --- lifetime ------------------------------------------------------------------------


def reset(self: SageMakerModelBackend) -> None:
    """An account reset (end of ``mock_aws``, ``/moto-api/reset``) also stops its processes."""
    stop_processes(self.account_id, self.region_name)
    forget_activities(self.account_id, self.region_name)
    _original(SageMakerModelBackend, "reset")(self)


def stop_processes(account_id: str | None = None, region: str | None = None) -> None:
    """Stop the training runs and fleets of one account and region (all when None)."""
    for tuning_run in TUNING_RUNS.pop_where(account_id, region):
        tuning_run.abandon()
    for run in TRAINING_RUNS.pop_where(account_id, region):
        run.abandon()
    for runtime in ENDPOINTS.pop_where(account_id, region):
        runtime.stop()


def apply() -> None:
    if _originals:
        return
    _patch(SageMakerResponse, "create_training_job", create_training_job)
    _patch(SageMakerResponse, "stop_training_job", stop_training_job)
    for handler in (
        create_hyper_parameter_tuning_job,
        stop_hyper_parameter_tuning_job,
        list_training_jobs_for_hyper_parameter_tuning_job,
    ):
        _patch(SageMakerResponse, handler.__name__, handler)
    _patch(SageMakerResponse, "create_endpoint", create_endpoint)
    _patch(SageMakerResponse, "update_endpoint", update_endpoint)
    _patch(
        SageMakerResponse,
        "update_endpoint_weights_and_capacities",
        update_endpoint_weights_and_capacities,
    )
    _patch(SageMakerResponse, "delete_endpoint", delete_endpoint)
    for action in sdk_shapes.ACTIONS:  # shapes the SageMaker Python SDK accepts
        _patch(SageMakerResponse, action, sdk_shapes.wrap(getattr(SageMakerResponse, action)))
    _patch(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
    _patch(SageMakerRuntimeResponse, "use_raw_body", True)  # image bodies are not UTF-8
    _patch(SageMakerModelBackend, "reset", reset)
    # moto has no DescribeScalingActivities; the local scaler records its changes
    _patch(
        ApplicationAutoScalingResponse,
        "describe_scaling_activities",
        describe_scaling_activities,
    )


def revert() -> None:
    for (cls, name), original in _originals.items():
        if original is _MISSING:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    _originals.clear()
