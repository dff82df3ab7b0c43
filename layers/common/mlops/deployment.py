"""Deploy a trained model to the endpoint and watch the deployment (mlops/rollback.py
rolls it back).

The endpoint keeps its name across runs; each run brings a new model and endpoint
config (named by the run's deployment id). The first run creates the endpoint, later
runs update it in place (SageMaker's blue/green update: no downtime). Each function does
one step and returns what the state machine needs to decide the next, so every wait is
a Wait state and every step is safe to repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from mlops import autoscaling
from mlops.errors import DeploymentError
from mlops.naming import content_id, resource_name
from mlops.registry import worse_than_live

MODEL_CODE_DIR = "/opt/ml/model/code"  # code/ inside model.tar.gz, where the toolkit looks
INFERENCE_PROGRAM = "inference.py"
# ModelPackageStatus values a new package passes through before Completed.
PACKAGE_PENDING = frozenset({"Pending", "InProgress"})
# Statuses that end by themselves; nothing can be deployed or rolled back until they do.
# OutOfService is one too: SageMaker takes the endpoint out while it repairs it.
TRANSITIONAL = frozenset(
    {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "OutOfService"}
)
# The tag on an endpoint config naming the config it replaced ("" for a new endpoint), so a
# re-run that finds its config already live still knows what a rollback must restore.
REPLACES_TAG = "mlops:replaces-endpoint-config"
# The tag on the endpoint naming the last config that passed its smoke test (set once a
# deployment is verified). A later deployment restores that one on failure, not whatever
# is live: a run stopped mid-canary can leave an unverified config serving.
VERIFIED_TAG = "mlops:verified-endpoint-config"


def _error(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return error.get("Code", ""), error.get("Message", "")


def _endpoint_busy(exc: ClientError) -> bool:
    """SageMaker's answer to an update that raced a transition (autoscaling, a system update)."""
    code, message = _error(exc)
    return code == "ValidationException" and "in-progress" in message


def describe_endpoint(sagemaker: Any, name: str) -> dict[str, Any] | None:
    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        code, message = _error(exc)
        if code == "ValidationException" and "Could not find" in message:
            return None
        raise


def _create_or_adopt(create: Any, **request: Any) -> bool:
    """Call a SageMaker Create*; False if a resource with that name already exists.

    Names are content hashes of the run, so an existing one was made by an earlier
    attempt of this same deployment and is adopted.
    """
    try:
        create(**request)
    except ClientError as exc:
        code, message = _error(exc)
        if code in {"ValidationException", "ResourceInUse"} and "already exist" in message:
            return False
        raise
    return True


def package_pending(package: Mapping[str, Any], package_arn: str) -> str | None:
    """Why the registered version (``package``, described) cannot be deployed yet
    (SageMaker still validates a new package: Pending, InProgress), or None once it is
    Completed; DeploymentError if it failed or is being deleted (CreateModel from it would
    fail)."""
    status = package.get("ModelPackageStatus")
    if status == "Completed":
        return None
    if status in PACKAGE_PENDING:
        return f"model package {package_arn} is {status}"
    raise DeploymentError(f"model package {package_arn} is {status}, so it cannot be deployed")


def serving_environment(run: Mapping[str, Any], *, region: str, log_level: int) -> dict[str, str]:
    """The serving container's environment (also recorded in the model package)."""
    return {
        "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
        "SAGEMAKER_SUBMIT_DIRECTORY": MODEL_CODE_DIR,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": str(log_level),
        "SAGEMAKER_REGION": region,
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(run["model"]["server_timeout_seconds"]),
    }


def model_request(
    run: Mapping[str, Any],
    model_artifact: str,
    *,
    role_arn: str,
    region: str,
    log_level: int,
    tags: list,
    model_package_arn: str | None = None,
) -> dict[str, Any]:
    """CreateModel: from the registered version when there is one (the endpoint config
    then names exactly that version), else from the image and the artifact."""
    model = run["model"]
    request: dict[str, Any] = {
        "ModelName": model["model_name"],
        "ExecutionRoleArn": role_arn,
        "Tags": tags,
    }
    if model_package_arn:
        request["Containers"] = [{"ModelPackageName": model_package_arn}]
        return request
    request["PrimaryContainer"] = {
        "Image": model["image"],
        "ModelDataUrl": model_artifact,
        "Environment": serving_environment(run, region=region, log_level=log_level),
    }
    return request


def for_package(run: Mapping[str, Any], model_package_arn: str | None) -> Mapping[str, Any]:
    """The run with the model and endpoint config names of its deployment: deploying a
    registered version, the plan's names made that version's own. A rerun that registers a
    new version (the earlier one was rejected) then creates a model from it instead of
    adopting the one made from the rejected version."""
    if not model_package_arn:
        return run
    ident = content_id({"deployment_id": run["deployment_id"], "package": model_package_arn})
    name = resource_name(run["endpoint"]["endpoint_name"], ident)
    return {
        **run,
        "model": {**run["model"], "model_name": name},
        "endpoint": {**run["endpoint"], "endpoint_config_name": name},
    }


def deployment_config(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """UpdateEndpoint's DeploymentConfig from the run's plan (``run["endpoint"]["rollout"]``).

    Blue/green with CANARY (one instance first), LINEAR (one instance a step) or
    ALL_AT_ONCE traffic shifting; the old fleet bakes ``baking_seconds`` before it goes;
    any of the alarms in ALARM during the update rolls it back (AutoRollbackConfiguration).
    """
    if not policy:
        return None
    routing: dict[str, Any] = {
        "Type": policy["type"],
        "WaitIntervalInSeconds": policy["wait_seconds"],
    }
    if policy["type"] == "CANARY":
        routing["CanarySize"] = {"Type": "INSTANCE_COUNT", "Value": 1}
    elif policy["type"] == "LINEAR":
        routing["LinearStepSize"] = {"Type": "INSTANCE_COUNT", "Value": 1}
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": policy["baking_seconds"],
            "MaximumExecutionTimeoutInSeconds": policy["max_seconds"],
        }
    }
    if policy.get("alarms"):
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": name} for name in policy["alarms"]]
        }
    return config


def endpoint_config_request(
    run: Mapping[str, Any], tags: list, replaces: str | None = None
) -> dict[str, Any]:
    endpoint = run["endpoint"]
    request: dict[str, Any] = {
        "EndpointConfigName": endpoint["endpoint_config_name"],
        "ProductionVariants": [
            {
                "VariantName": endpoint["variant_name"],
                "ModelName": run["model"]["model_name"],
                "InitialInstanceCount": endpoint["initial_instance_count"],
                "InstanceType": endpoint["instance_type"],
                "InitialVariantWeight": 1.0,
            }
        ],
        "Tags": [*tags, {"Key": REPLACES_TAG, "Value": replaces or ""}],
    }
    capture = endpoint.get("data_capture")
    if capture:
        # Requests and replies to S3, for the checks Model Monitor does not do for images.
        request["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": capture["percent"],
            "DestinationS3Uri": capture["uri"],
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
    return request


def variants_of(sagemaker: Any, config_name: str) -> dict[str, str]:
    """{variant name: instance type} of an endpoint config."""
    return variant_types(sagemaker.describe_endpoint_config(EndpointConfigName=config_name))


def variant_types(config: Mapping[str, Any]) -> dict[str, str]:
    """{variant name: instance type} of a described endpoint config."""
    return {v["VariantName"]: v.get("InstanceType", "") for v in config["ProductionVariants"]}


def config_capture(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A described endpoint config's data capture as the plan has it (``data_capture``:
    percent and uri), None when it captures nothing."""
    raw = config.get("DataCaptureConfig") or {}
    if not raw.get("EnableCapture"):
        return None
    return {"percent": raw.get("InitialSamplingPercentage"), "uri": raw.get("DestinationS3Uri")}


def _deployment(run: Mapping[str, Any], action: str, **extra: Any) -> dict[str, Any]:
    endpoint = run["endpoint"]
    return {
        "action": action,
        "endpoint_name": endpoint["endpoint_name"],
        "endpoint_config_name": endpoint["endpoint_config_name"],
        "model_name": run["model"]["model_name"],
        "variant_name": endpoint["variant_name"],
        "previous_endpoint_config_name": None,
        "created_endpoint": False,
        "reason": None,
        "rollout": (endpoint.get("rollout") or {}).get("type", "ALL_AT_ONCE"),
        "alarms": list((endpoint.get("rollout") or {}).get("alarms", [])),
        **extra,
    }


def deploy(
    sagemaker: Any,
    scaling: Any,
    run: Mapping[str, Any],
    model_artifact: str,
    *,
    role_arn: str,
    log_level: int,
    tags: list,
    deadlines: Mapping[str, int],
    now: float,
    model_package_arn: str | None = None,
) -> dict[str, Any]:
    """One deployment step. ``action`` says what happened:

    - ``create`` / ``update``: the endpoint is on its way to the new config;
    - ``already_deployed``: the endpoint already serves this run (a duplicate trigger);
    - ``refused``: another model went live after this one was gated, and it is better
      (``registry.worse_than_live``); ``reason`` says so;
    - ``wait``: the endpoint is busy (or a Failed one is being deleted), or the registered
      version is still being validated; call again later.
    """
    run = for_package(run, model_package_arn)
    endpoint = run["endpoint"]
    name, config_name = endpoint["endpoint_name"], endpoint["endpoint_config_name"]
    package = (
        sagemaker.describe_model_package(ModelPackageName=model_package_arn)
        if model_package_arn
        else None
    )
    pending = package_pending(package, model_package_arn) if package else None
    if pending:
        _check_window(now, deadlines["deploy"], pending)
        return _deployment(run, "wait", reason=pending)
    current = describe_endpoint(sagemaker, name)
    if current is not None:
        status = current["EndpointStatus"]
        if status in TRANSITIONAL:
            _check_window(now, deadlines["deploy"], f"endpoint {name} stayed {status}")
            return _deployment(run, "wait", reason=f"endpoint {name} is {status}")
        if status == "Failed":
            # DeleteEndpoint is the only operation a Failed endpoint allows; re-create it.
            variants = [v["VariantName"] for v in current.get("ProductionVariants", [])]
            autoscaling.detach(scaling, name, variants)
            sagemaker.delete_endpoint(EndpointName=name)
            reason = current.get("FailureReason") or "no reason given"
            return _deployment(run, "wait", reason=f"deleting Failed endpoint {name} ({reason})")
        if current.get("EndpointConfigName") == config_name:
            # Live already (an earlier attempt of this deployment got this far): the checks,
            # autoscaling and smoke test that follow are idempotent and run again.
            replaced = replaced_config(sagemaker, config_name)
            return _deployment(
                run,
                "already_deployed",
                previous_endpoint_config_name=replaced,
                created_endpoint=replaced is None,
                reason=f"endpoint {name} already serves {config_name}",
            )

    if current is not None and package:
        refusal = worse_than_live(
            sagemaker,
            package,
            current,
            endpoint["variant_name"],
            run.get("quality_gate") or {},
        )
        if refusal:
            return _deployment(run, "refused", reason=refusal)
    live = current["EndpointConfigName"] if current is not None else None
    previous = last_verified(sagemaker, current) if current is not None else None
    region = sagemaker.meta.region_name
    _create_or_adopt(
        sagemaker.create_model,
        **model_request(
            run,
            model_artifact,
            role_arn=role_arn,
            region=region,
            log_level=log_level,
            tags=tags,
            model_package_arn=model_package_arn,
        ),
    )
    _create_or_adopt(
        sagemaker.create_endpoint_config, **endpoint_config_request(run, tags, previous)
    )
    if current is None:
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config_name, Tags=tags)
        return _deployment(run, "create", created_endpoint=True)

    assert live is not None
    rollout = deployment_config(endpoint.get("rollout"))
    # An update that retains the variant properties keeps the endpoint's data capture.
    same_capture = not capture_changes(
        current.get("DataCaptureConfig"), endpoint.get("data_capture")
    )
    if not update_to(
        sagemaker, scaling, name, live, config_name, endpoint, rollout, keep_capture=same_capture
    ):
        _check_window(now, deadlines["deploy"], f"endpoint {name} stayed busy")
        return _deployment(run, "wait", reason=f"endpoint {name} became busy; trying again")
    return _deployment(run, "update", previous_endpoint_config_name=previous)


def _tags(sagemaker: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}


def verified(sagemaker: Any, current: Mapping[str, Any]) -> str | None:
    """The endpoint's last verified config (its VERIFIED_TAG), if one was recorded."""
    return _tags(sagemaker, current["EndpointArn"]).get(VERIFIED_TAG) or None


def last_verified(sagemaker: Any, current: Mapping[str, Any]) -> str | None:
    """What a failed deployment restores: the endpoint's last verified config. None when
    this pipeline deployed the live config and never verified one (a first run stopped
    before its smoke test): a failed deployment then deletes the endpoint, as it does after
    a failed first deploy, rather than restore a model that never passed its smoke test. An
    endpoint the pipeline did not make (its live config has no REPLACES_TAG) keeps the live
    config as the one to restore."""
    found = verified(sagemaker, current)
    if found:
        return found
    live = current["EndpointConfigName"]
    arn = sagemaker.describe_endpoint_config(EndpointConfigName=live)["EndpointConfigArn"]
    return None if REPLACES_TAG in _tags(sagemaker, arn) else live


def mark_verified(sagemaker: Any, endpoint_name: str, config_name: str) -> None:
    """Record ``config_name`` as the endpoint's last verified config (it passed its smoke
    test and took all the traffic): what later deployments roll back to."""
    arn = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointArn"]
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": VERIFIED_TAG, "Value": config_name}])


def _check_window(now: float, deadline: int, what: str) -> None:
    if now > deadline:
        raise DeploymentError(
            f"{what} until the deployment window closed, so nothing was deployed; "
            "the endpoint keeps its current model"
        )


def replaced_config(sagemaker: Any, config_name: str) -> str | None:
    """The config a live config replaced, from its tag; None if it created the endpoint."""
    arn = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["EndpointConfigArn"]
    tags = _tags(sagemaker, arn)
    if REPLACES_TAG not in tags:
        raise DeploymentError(
            f"endpoint config {config_name} is live but has no {REPLACES_TAG} tag, so a "
            "rollback would not know what to restore; deploy it again under a new name"
        )
    return tags[REPLACES_TAG] or None


def update_to(
    sagemaker: Any,
    scaling: Any,
    name: str,
    current: str,
    target: str,
    endpoint: Mapping[str, Any],
    rollout: Mapping[str, Any] | None = None,
    *,
    keep_capture: bool = True,
) -> bool:
    """UpdateEndpoint to ``target``; False if the endpoint turned busy first.

    Production never loses its scaling: targets that must go for the update are put back
    exactly as they were when SageMaker does not accept it. ``rollout`` is the
    DeploymentConfig (None: SageMaker's default, blue/green all at once).
    """
    retain, removed = _prepare_variants(sagemaker, scaling, name, current, endpoint, keep_capture)
    request: dict[str, Any] = {
        "EndpointName": name,
        "EndpointConfigName": target,
        "RetainAllVariantProperties": retain,
    }
    if rollout:
        request["DeploymentConfig"] = dict(rollout)
    try:
        sagemaker.update_endpoint(**request)
    except ClientError as exc:
        autoscaling.restore(scaling, removed)
        if _endpoint_busy(exc):
            return False
        raise
    return True


def _prepare_variants(
    sagemaker: Any,
    scaling: Any,
    name: str,
    current: str,
    endpoint: Mapping[str, Any],
    keep_capture: bool = True,
) -> tuple[bool, list[dict]]:
    """Keep the autoscaled instance count when only the model changes.

    An update that changes an autoscaled variant's instance type (or drops the variant)
    fails, so those targets are deregistered first and the update starts from the new
    config's initial count; AttachAutoscaling registers the variant again afterwards. So
    does one that changes the data capture (``keep_capture`` False): SageMaker keeps the
    endpoint's capture when the update retains the variant properties.
    Returns (RetainAllVariantProperties, the targets removed, as ``autoscaling.snapshot``).
    """
    old = variants_of(sagemaker, current)
    same = old.get(endpoint["variant_name"]) == endpoint["instance_type"] and len(old) == 1
    if same and keep_capture:
        return True, []
    saved = autoscaling.snapshot(scaling, name, old)
    autoscaling.deregister(scaling, saved)
    return False, saved


def capture_changes(live: Mapping[str, Any] | None, wanted: Mapping[str, Any] | None) -> bool:
    """Whether the plan's data capture (``data_capture``: percent and uri, None: off) differs
    from the endpoint's in effect (DescribeEndpoint's DataCaptureConfig)."""
    live = live or {}
    now = None
    if live.get("EnableCapture"):
        now = (live.get("CurrentSamplingPercentage"), live.get("DestinationS3Uri"))
    return now != ((wanted["percent"], wanted["uri"]) if wanted else None)


def _canary(current: Mapping[str, Any], wanted: str) -> dict[str, Any] | None:
    """The new fleet's share while a blue/green update of ``wanted`` shifts traffic."""
    pending = current.get("PendingDeploymentSummary") or {}
    if pending.get("EndpointConfigName") != wanted:
        return None
    for variant in pending.get("ProductionVariants", []):
        # The new fleet is up and takes its share; CurrentWeight is the variant's configured
        # weight from the start (not the traffic share), so only the status says so.
        statuses = {s.get("Status") for s in variant.get("VariantStatus", [])}
        if statuses & {"Baking", "ActivatingTraffic"}:
            return {"variant_name": variant.get("VariantName"), "stage": sorted(statuses)[0]}
    return None


def alarms_in_alarm(cloudwatch: Any, names: list[str]) -> list[str]:
    """Which of the update's rollback alarms are in ALARM (SageMaker's FailureReason is
    kept beside them: an alarm that rolled an update back can be OK again by now)."""
    if cloudwatch is None or not names:
        return []
    found = cloudwatch.describe_alarms(AlarmNames=names[:100]).get("MetricAlarms", [])
    return [a["AlarmName"] for a in found if a.get("StateValue") == "ALARM"]


def endpoint_state(
    sagemaker: Any,
    deployment: Mapping[str, Any],
    deadlines: Mapping[str, int],
    now: float,
    cloudwatch: Any = None,
) -> dict[str, Any]:
    """``state``: ``in_service`` on the new config, ``canary`` (the new fleet takes its first
    share of traffic while the old one serves the rest), ``pending``, or ``failed``.

    SageMaker can roll a failed update back by itself and report InService on the old
    config with a FailureReason, so InService alone is not success; a rollback by one of
    the update's alarms names the alarm.
    """
    name, wanted = deployment["endpoint_name"], deployment["endpoint_config_name"]
    current = describe_endpoint(sagemaker, name)
    if current is None:
        return {
            "state": "failed",
            "status": None,
            "endpoint_config_name": None,
            "reason": f"endpoint {name} no longer exists",
        }
    status, live = current["EndpointStatus"], current.get("EndpointConfigName")
    failure = current.get("FailureReason")
    result = {"status": status, "endpoint_config_name": live, "reason": failure}
    if status in TRANSITIONAL - {"Deleting"}:
        if now > deadlines["deploy"]:
            return {
                **result,
                "state": "failed",
                "reason": f"endpoint {name} was still {status} when the deployment window "
                f"closed ({wanted} did not come up in time)",
            }
        canary = _canary(current, wanted) if status == "Updating" else None
        if canary is not None:
            return {**result, "state": "canary", "canary": canary}
        return {**result, "state": "pending"}
    if status == "InService" and live == wanted:
        return {**result, "state": "in_service", "reason": None}
    if status == "InService":
        alarms = alarms_in_alarm(cloudwatch, list(deployment.get("alarms") or []))
        why = failure or "the update was replaced or rolled back"
        if alarms:
            why = f"rolled back by alarm {', '.join(alarms)} ({why})"
        return {
            **result,
            "state": "failed",
            "alarms": alarms,
            "reason": f"endpoint {name} is serving {live} instead of {wanted}: {why}",
        }
    return {
        **result,
        "state": "failed",
        "reason": f"endpoint {name} is {status}: {failure or 'no reason given'}",
    }
