"""Turn a trigger into a run: the plan every later state follows.

A trigger is an S3 "Object Created" EventBridge event for a data-set archive, or a manual
input ``{"dataset": "s3://bucket/key", "version_id": "...", "hyperparameters": {...}}``.
The plan fixes, at the start of the execution, everything that decides what is trained
and served: the data-set version, the merged hyperparameters, the training and endpoint
configuration and the thresholds. Later states read the plan instead of their own
settings, so one execution is consistent even if the stack is updated while it runs, and
its first state's output documents the whole run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from mlops import approval
from mlops.config import env_bool, env_float, env_int, env_json_object, env_str
from mlops.errors import ConfigurationError
from mlops.gate import LOAD_FAILURE_ACTIONS
from mlops.naming import check_endpoint_name, content_id, resource_name
from mlops.polling import DEPLOY_POLLS, deployment_window
from mlops.s3 import head_object, parse_s3_uri, s3_uri
from mlops.tuning import tuning_settings

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
VARIANT_NAME = "AllTraffic"
GATE_METRIC = "valid_acc"
APPROVAL_MODES = ("auto", "manual")
ROLLOUTS = ("CANARY", "LINEAR", "ALL_AT_ONCE")
MAX_WAIT_SECONDS = 3600  # WaitIntervalInSeconds, TerminationWaitInSeconds
MAX_ROLLBACK_ALARMS = 10
MAX_LINEAR_INSTANCES = 10
MIN_START_SECONDS = 900  # the least time an update leaves SageMaker to start the new fleet
MAX_UPDATE_SECONDS = 28800
DATA_CAPTURE_PREFIX = "data-capture/"
MAX_RUNTIME_LIMIT = 28 * 24 * 3600  # SageMaker's MaxRuntimeInSeconds maximum
_HP_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,255}$")
_HP_VALUE_MAX = 2500
# CreateTrainingJob allows 100 hyperparameters; the pipeline adds up to 6 sagemaker_* ones.
_HP_MAX = 94


class RunRejected(ValueError):
    """The trigger cannot start a run; the message is the execution's failure cause."""


@dataclass(frozen=True)
class PlanSettings:
    data_bucket: str
    dataset_prefix: str
    endpoint_name: str
    hyperparameters: dict[str, Any]
    training_image: str
    training_instance_type: str
    training_instance_count: int
    training_volume_size_gb: int
    max_runtime_seconds: int
    use_spot: bool
    training_code_version: str
    inference_image: str
    endpoint_instance_type: str
    endpoint_initial_instance_count: int
    model_server_timeout_seconds: int
    min_validation_accuracy: float
    smoke_test_min_accuracy: float
    autoscaling_min_capacity: int
    autoscaling_max_capacity: int
    target_invocations_per_instance: float
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int
    model_package_group: str = ""
    approval_mode: str = "auto"
    champion_margin: float = 0.0
    champion_load_failure: str = "fail"
    rollout: str = "ALL_AT_ONCE"
    rollout_wait_seconds: int = 0
    rollout_baking_seconds: int = 0
    rollback_alarms: tuple[str, ...] = ()
    data_capture_percent: int = 0
    # What bounds the run's deployment window (mlops.polling.deployment_window).
    poll_seconds: int = 60
    lock_lease_seconds: int = 21600
    tuning: dict[str, Any] | None = None  # mlops.tuning.tuning_settings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlanSettings:
        settings = cls(
            data_bucket=env_str("DATA_BUCKET", env),
            dataset_prefix=env_str("DATASET_PREFIX", env, default="datasets/"),
            endpoint_name=env_str("ENDPOINT_NAME", env),
            hyperparameters=canonical_hyperparameters(
                env_json_object("TRAINING_HYPERPARAMETERS", env, default="{}"),
                "TRAINING_HYPERPARAMETERS",
            ),
            training_image=env_str("TRAINING_IMAGE", env),
            training_instance_type=env_str("TRAINING_INSTANCE_TYPE", env),
            training_instance_count=env_int("TRAINING_INSTANCE_COUNT", env, minimum=1),
            training_volume_size_gb=env_int("TRAINING_VOLUME_SIZE_GB", env, default=30, minimum=1),
            max_runtime_seconds=env_int("MAX_TRAINING_RUNTIME_SECONDS", env, minimum=1),
            use_spot=env_bool("USE_SPOT_TRAINING", env, default=False),
            training_code_version=env_str("TRAINING_CODE_VERSION", env),
            inference_image=env_str("INFERENCE_IMAGE", env),
            endpoint_instance_type=env_str("ENDPOINT_INSTANCE_TYPE", env),
            endpoint_initial_instance_count=env_int(
                "ENDPOINT_INITIAL_INSTANCE_COUNT", env, minimum=1
            ),
            model_server_timeout_seconds=env_int(
                "MODEL_SERVER_TIMEOUT_SECONDS", env, default=60, minimum=1
            ),
            min_validation_accuracy=env_float("MIN_VALIDATION_ACCURACY", env, maximum=1.0),
            smoke_test_min_accuracy=env_float("SMOKE_TEST_MIN_ACCURACY", env, maximum=1.0),
            autoscaling_min_capacity=env_int("AUTOSCALING_MIN_CAPACITY", env, minimum=1),
            autoscaling_max_capacity=env_int("AUTOSCALING_MAX_CAPACITY", env, minimum=1),
            target_invocations_per_instance=env_float("TARGET_INVOCATIONS_PER_INSTANCE", env),
            scale_in_cooldown_seconds=env_int("SCALE_IN_COOLDOWN_SECONDS", env),
            scale_out_cooldown_seconds=env_int("SCALE_OUT_COOLDOWN_SECONDS", env),
            model_package_group=env_str("MODEL_PACKAGE_GROUP", env, default=""),
            approval_mode=env_str("APPROVAL_MODE", env, default="auto"),
            champion_margin=env_float("CHAMPION_MARGIN", env, default=0.0, maximum=1.0),
            champion_load_failure=env_str("CHAMPION_LOAD_FAILURE", env, default="fail"),
            rollout=env_str("DEPLOYMENT_STRATEGY", env, default="ALL_AT_ONCE"),
            rollout_wait_seconds=env_int("ROLLOUT_WAIT_SECONDS", env, default=0),
            rollout_baking_seconds=env_int("ROLLOUT_BAKING_SECONDS", env, default=0),
            rollback_alarms=tuple(
                n.strip()
                for n in env_str("ROLLBACK_ALARM_NAMES", env, default=" ").split(",")
                if n.strip()
            ),
            data_capture_percent=env_int("DATA_CAPTURE_PERCENT", env, default=0),
            poll_seconds=env_int("POLL_INTERVAL_SECONDS", env, default=60, minimum=1),
            lock_lease_seconds=env_int("LOCK_LEASE_SECONDS", env, default=21600, minimum=60),
            tuning=tuning_settings(
                env_int("TUNING_MAX_JOBS", env, default=0),
                env_int("TUNING_MAX_PARALLEL_JOBS", env, default=1, minimum=1),
                env_str("TUNING_STRATEGY", env, default="Bayesian"),
                _tuning_ranges(env),
                env_str("ENDPOINT_NAME", env),
            ),
        )
        check_rollout(settings)
        try:
            check_endpoint_name(settings.endpoint_name)
        except ValueError as exc:
            raise ConfigurationError(f"ENDPOINT_NAME: {exc}") from None
        if settings.autoscaling_max_capacity < settings.autoscaling_min_capacity:
            raise ConfigurationError("AUTOSCALING_MAX_CAPACITY is below AUTOSCALING_MIN_CAPACITY")
        if settings.max_runtime_seconds > MAX_RUNTIME_LIMIT:
            raise ConfigurationError(f"MAX_TRAINING_RUNTIME_SECONDS exceeds {MAX_RUNTIME_LIMIT}")
        return settings


def _tuning_ranges(env: Mapping[str, str] | None) -> dict[str, Any]:
    """TUNING_RANGES with its flags checked and spelt as the hyperparameters are."""
    raw = env_json_object("TUNING_RANGES", env, default="{}")
    canonical_hyperparameters(dict.fromkeys(raw, ""), "TUNING_RANGES")  # the names' rules
    return {key.replace("_", "-"): value for key, value in raw.items()}


def check_rollout(settings: PlanSettings) -> None:
    """The approval mode and the deployment guardrails SageMaker would refuse, by name."""
    if settings.approval_mode not in APPROVAL_MODES:
        raise ConfigurationError(
            f"APPROVAL_MODE={settings.approval_mode!r} must be one of {', '.join(APPROVAL_MODES)}"
        )
    if settings.champion_load_failure not in LOAD_FAILURE_ACTIONS:
        raise ConfigurationError(
            f"CHAMPION_LOAD_FAILURE={settings.champion_load_failure!r} must be one of "
            f"{', '.join(LOAD_FAILURE_ACTIONS)}"
        )
    strategy = settings.rollout
    if strategy not in ROLLOUTS:
        raise ConfigurationError(
            f"DEPLOYMENT_STRATEGY={strategy!r} must be one of {', '.join(ROLLOUTS)}"
        )
    if settings.data_capture_percent > 100:
        raise ConfigurationError(
            f"DATA_CAPTURE_PERCENT={settings.data_capture_percent} must be at most 100"
        )
    for name, value in (
        ("ROLLOUT_WAIT_SECONDS", settings.rollout_wait_seconds),
        ("ROLLOUT_BAKING_SECONDS", settings.rollout_baking_seconds),
    ):
        if value > MAX_WAIT_SECONDS:
            raise ConfigurationError(f"{name}={value} must be at most {MAX_WAIT_SECONDS}")
    if len(settings.rollback_alarms) > MAX_ROLLBACK_ALARMS:
        raise ConfigurationError(
            f"ROLLBACK_ALARM_NAMES has {len(settings.rollback_alarms)} alarms; "
            f"SageMaker's AutoRollbackConfiguration takes at most {MAX_ROLLBACK_ALARMS}"
        )
    counts = (
        f"EndpointInitialInstanceCount is {settings.endpoint_initial_instance_count} and "
        f"AutoscalingMinCapacity is {settings.autoscaling_min_capacity}"
    )
    smallest = min(settings.endpoint_initial_instance_count, settings.autoscaling_min_capacity)
    if strategy in {"CANARY", "LINEAR"} and smallest < 2:
        raise ConfigurationError(
            f"DeploymentStrategy {strategy} shifts one instance's share first and SageMaker "
            "allows at most half of the variant's instances in a step, so the endpoint needs "
            f"at least 2 instances ({counts}); raise both to 2 or use ALL_AT_ONCE"
        )
    if strategy == "LINEAR" and settings.autoscaling_max_capacity > MAX_LINEAR_INSTANCES:
        raise ConfigurationError(
            "DeploymentStrategy LINEAR moves one instance a step and SageMaker's step is at "
            f"least 10% of the instances, so AutoscalingMaxCapacity must be at most "
            f"{MAX_LINEAR_INSTANCES} (it is {settings.autoscaling_max_capacity}); use CANARY"
        )
    rollout_policy(settings)  # the overall timeout


def rollout_policy(settings: PlanSettings) -> dict[str, Any] | None:
    """The plan's ``endpoint.rollout`` (mlops.deployment.deployment_config builds the call).

    The run waits for a deployment for its window (a third of the lock's lease, at most
    ``DEPLOY_POLLS`` checks); an update still going when it closes is rolled back. So the
    update's waits must leave the new fleet ``MIN_START_SECONDS`` to start within it, and
    SageMaker's own timeout (MaximumExecutionTimeoutInSeconds) is the whole window: the
    fleet may take as long to start as the run waits, never longer.
    """
    steps = {"CANARY": 1, "LINEAR": settings.autoscaling_max_capacity, "ALL_AT_ONCE": 0}
    waits = (
        settings.rollout_wait_seconds * steps[settings.rollout] + settings.rollout_baking_seconds
    )
    window = deployment_window(settings.poll_seconds, settings.lock_lease_seconds)
    limit = min(window, MAX_UPDATE_SECONDS)
    if waits + MIN_START_SECONDS > limit:
        count = steps[settings.rollout]
        parts = [f"RolloutBakingSeconds {settings.rollout_baking_seconds}"]
        if count:
            each = f" x {count} steps" if count > 1 else ""
            parts.insert(0, f"RolloutWaitSeconds {settings.rollout_wait_seconds}{each}")
        raise ConfigurationError(
            f"the {settings.rollout} update waits {waits} s ({' + '.join(parts)}), which "
            f"leaves the new fleet less than "
            f"{MIN_START_SECONDS} s to start within the {limit} s the run waits for a "
            f"deployment (a third of DeploymentLockLeaseSeconds {settings.lock_lease_seconds}, "
            f"at most {DEPLOY_POLLS} checks of PollIntervalSeconds {settings.poll_seconds}, "
            f"at most SageMaker's {MAX_UPDATE_SECONDS}): shorten RolloutWaitSeconds or "
            "RolloutBakingSeconds, or raise DeploymentLockLeaseSeconds or PollIntervalSeconds"
        )
    return {
        "type": settings.rollout,
        "wait_seconds": settings.rollout_wait_seconds,
        "baking_seconds": settings.rollout_baking_seconds,
        "max_seconds": limit,
        "alarms": list(settings.rollback_alarms),
    }


@dataclass(frozen=True)
class RunRequest:
    bucket: str
    key: str
    version_id: str | None
    hyperparameters: dict[str, Any]
    source: str  # "s3-event" or "manual"


def parse_trigger(trigger: Any) -> RunRequest:
    """Read an S3 Object Created event or a manual input; RunRejected if neither."""
    if not isinstance(trigger, Mapping):
        raise RunRejected("the execution input must be a JSON object")
    if trigger.get("source") == "aws.s3" or "detail-type" in trigger:
        return _parse_s3_event(trigger)
    if "dataset" in trigger:
        return _parse_manual(trigger)
    raise RunRejected(
        'the execution input must be an S3 "Object Created" event or '
        '{"dataset": "s3://bucket/key", "version_id": "...", "hyperparameters": {...}}'
    )


def _parse_s3_event(event: Mapping[str, Any]) -> RunRequest:
    if event.get("detail-type") != "Object Created":
        raise RunRejected(
            f"unsupported event type {event.get('detail-type')!r}; expected Object Created"
        )
    detail = event.get("detail")
    bucket = _dig(detail, "bucket", "name")
    key = _dig(detail, "object", "key")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise RunRejected("the S3 event has no detail.bucket.name or detail.object.key")
    version = _dig(detail, "object", "version-id")
    return RunRequest(bucket, key, version if isinstance(version, str) else None, {}, "s3-event")


def _parse_manual(trigger: Mapping[str, Any]) -> RunRequest:
    unknown = sorted(set(trigger) - {"dataset", "version_id", "hyperparameters"})
    if unknown:
        raise RunRejected(f"unknown input field(s) {', '.join(unknown)}")
    try:
        bucket, key = parse_s3_uri(trigger["dataset"])
    except ValueError as exc:
        raise RunRejected(f"dataset: {exc}") from None
    version = trigger.get("version_id")
    if version is not None and (not isinstance(version, str) or not version):
        raise RunRejected("version_id must be a non-empty string")
    overrides = trigger.get("hyperparameters") or {}
    if not isinstance(overrides, Mapping):
        raise RunRejected("hyperparameters must be a JSON object")
    return RunRequest(
        bucket, key, version, canonical_hyperparameters(overrides, "hyperparameters"), "manual"
    )


def _dig(value: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def canonical_hyperparameters(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate hyperparameters and spell every key with hyphens (train.py takes both).

    One spelling per flag, so an override ``batch_size`` replaces the default
    ``batch-size`` instead of passing both flags to train.py.
    """
    canonical: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not _HP_KEY.match(key):
            raise _invalid(where, f"hyperparameter name {key!r} must be letters, digits, - or _")
        if key.lower().startswith("sagemaker"):
            raise _invalid(where, f"hyperparameter {key!r} is reserved for SageMaker")
        if isinstance(value, bool | int | float | str) and len(str(value)) <= _HP_VALUE_MAX:
            canonical[key.replace("_", "-")] = value
        else:
            raise _invalid(where, f"hyperparameter {key!r} must be a string, number or boolean")
    if len(canonical) > _HP_MAX:
        raise _invalid(where, f"at most {_HP_MAX} hyperparameters are allowed")
    return canonical


def _invalid(where: str, message: str) -> Exception:
    if where == "hyperparameters":
        return RunRejected(message)
    return ConfigurationError(f"{where}: {message}")


def _is_dataset_key(key: str, settings: PlanSettings) -> bool:
    return key.startswith(settings.dataset_prefix) and key.endswith(ARCHIVE_SUFFIXES)


def locate_dataset(client: Any, request: RunRequest, settings: PlanSettings) -> dict[str, Any]:
    """Check the archive exists under the data-set prefix; its location and version."""
    uri = s3_uri(request.bucket, request.key)
    if request.bucket != settings.data_bucket:
        raise RunRejected(
            f"{uri} is outside the pipeline's bucket; upload data sets to "
            f"s3://{settings.data_bucket}/{settings.dataset_prefix}"
        )
    # S3 notifications URL-encode keys; accept either spelling. Only keys under the
    # prefix are ever read (the function may read nothing else).
    spellings = dict.fromkeys((request.key, unquote_plus(request.key)))
    candidates = [k for k in spellings if _is_dataset_key(k, settings)]
    if not candidates:
        raise RunRejected(
            f"{uri} is not a data-set archive: expected a {', '.join(ARCHIVE_SUFFIXES)} file "
            f"under s3://{settings.data_bucket}/{settings.dataset_prefix}"
        )
    key, head = candidates[0], None
    for key in candidates:
        head = head_object(client, request.bucket, key, request.version_id)
        if head is not None:
            break
    uri = s3_uri(request.bucket, key)
    if head is None:
        version = f" (version {request.version_id})" if request.version_id else ""
        raise RunRejected(f"data set {s3_uri(request.bucket, request.key)}{version} does not exist")
    if not head.get("ContentLength"):
        raise RunRejected(f"data set {uri} is empty")
    others = client.list_objects_v2(Bucket=request.bucket, Prefix=key, MaxKeys=2).get(
        "Contents", []
    )
    clash = [item["Key"] for item in others if item["Key"] != key]
    if clash:
        # The training channel is an S3 prefix: it would download these too.
        raise RunRejected(f"{uri} is also a prefix of s3://{request.bucket}/{clash[0]}; rename one")
    version_id = request.version_id or head.get("VersionId")
    if version_id == "null":  # objects written before versioning was enabled
        version_id = None
    etag = str(head.get("ETag", "")).strip('"')
    return {
        "bucket": request.bucket,
        "key": key,
        "uri": uri,
        "version_id": version_id,
        "etag": etag,
        "version": version_id or f"etag-{etag}",
        "size": head["ContentLength"],
    }


def build_plan(
    request: RunRequest, dataset: Mapping[str, Any], settings: PlanSettings
) -> dict[str, Any]:
    hyperparameters = {**settings.hyperparameters, **request.hyperparameters}
    training = {
        "image": settings.training_image,
        "instance_type": settings.training_instance_type,
        "instance_count": settings.training_instance_count,
        "volume_size_gb": settings.training_volume_size_gb,
        "max_runtime_seconds": settings.max_runtime_seconds,
        "spot": settings.use_spot,
        "code_version": settings.training_code_version,
        "hyperparameters": hyperparameters,
    }
    if settings.tuning:  # only then, so a plain run keeps its run id (and job name)
        training["tuning"] = {**settings.tuning, "objective": GATE_METRIC}
    run_id = content_id(
        {
            "dataset": {k: dataset[k] for k in ("bucket", "key", "version")},
            "training": training,
        }
    )
    endpoint = {
        "endpoint_name": settings.endpoint_name,
        "variant_name": VARIANT_NAME,
        "instance_type": settings.endpoint_instance_type,
        "initial_instance_count": settings.endpoint_initial_instance_count,
        "rollout": rollout_policy(settings),
        "data_capture": {
            "percent": settings.data_capture_percent,
            "uri": s3_uri(settings.data_bucket, DATA_CAPTURE_PREFIX),
        }
        if settings.data_capture_percent
        else None,
    }
    model = {
        "image": settings.inference_image,
        "server_timeout_seconds": settings.model_server_timeout_seconds,
    }
    deployment_id = content_id({"run_id": run_id, "model": model, "endpoint": endpoint})
    name = resource_name(settings.endpoint_name, deployment_id)
    return {
        "run_id": run_id,
        "deployment_id": deployment_id,
        "source": request.source,
        "dataset": dict(dataset),
        "training": {"job_name": resource_name(settings.endpoint_name, run_id), **training},
        "mode": "train",
        "quality_gate": {
            "metric": GATE_METRIC,
            "min_value": settings.min_validation_accuracy,
            "champion_margin": settings.champion_margin,
            "champion_load_failure": settings.champion_load_failure,
        },
        "registry": {
            "group": settings.model_package_group,
            "approval_mode": settings.approval_mode,
        },
        "model": {"model_name": name, **model},
        "endpoint": {"endpoint_config_name": name, **endpoint},
        "autoscaling": {
            "min_capacity": settings.autoscaling_min_capacity,
            "max_capacity": settings.autoscaling_max_capacity,
            "target_invocations_per_instance": settings.target_invocations_per_instance,
            "scale_in_cooldown_seconds": settings.scale_in_cooldown_seconds,
            "scale_out_cooldown_seconds": settings.scale_out_cooldown_seconds,
        },
        "smoke_test": {"min_accuracy": settings.smoke_test_min_accuracy},
    }


def prepare_run(
    trigger: Any, client: Any, settings: PlanSettings, sagemaker: Any = None
) -> dict[str, Any]:
    """``{"accepted": true, "run": plan}`` or ``{"accepted": false, "reason": why}``;
    ``skipped`` is true for an event that is normal but asks for nothing (the run then
    ends SUCCEEDED)."""
    if isinstance(trigger, Mapping) and approval.is_approval_event(trigger):
        return _deploy_only(trigger, settings, sagemaker)
    try:
        request = parse_trigger(trigger)
        dataset = locate_dataset(client, request, settings)
    except RunRejected as exc:
        return {"accepted": False, "skipped": False, "reason": str(exc), "run": None}
    plan = build_plan(request, dataset, settings)
    return {"accepted": True, "skipped": False, "reason": None, "run": plan}


def _deploy_only(
    event: Mapping[str, Any], settings: PlanSettings, sagemaker: Any
) -> dict[str, Any]:
    if not settings.model_package_group:
        raise ConfigurationError("MODEL_PACKAGE_GROUP is not set, so no package can deploy")
    placeholder = RunRequest(settings.data_bucket, "", None, {}, "model-package-approval")
    dataset = {"bucket": settings.data_bucket, "key": "", "uri": "-", "version": "-"}
    trained = build_plan(placeholder, dataset, settings)
    try:
        plan = approval.deploy_plan(sagemaker, event, trained, settings.model_package_group)
    except approval.NotDeployable as exc:
        return {"accepted": False, "skipped": exc.skipped, "reason": str(exc), "run": None}
    return {"accepted": True, "skipped": False, "reason": None, "run": plan}
