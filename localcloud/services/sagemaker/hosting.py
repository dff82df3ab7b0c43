"""Endpoints whose production variants are fleets of real model servers.

Every change (create, update, scaling, delete) runs on a thread of the endpoint; the moto
request returns at once and DescribeEndpoint shows the progress, like SageMaker:
Creating -> InService | Failed, and Updating -> InService for updates and scaling.
UpdateEndpoint is blue/green (bluegreen.py): the new fleet passes its health checks before
traffic moves, all at once or by the DeploymentConfig's canary or linear steps, with alarm
rollback; a failed update leaves the old fleet serving, the endpoint InService on its old
config, with FailureReason set.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from moto.sagemaker.exceptions import ValidationError

from localcloud.services.stepfunctions import wait_wakeup

from .bluegreen import Rollout
from .fleet import DeployError, Reply, VariantFleet
from .guardrails import Plan
from .install_options import Settings
from .moto_backends import S3, LogStream, StorageError, extract, log_group_arn
from .process_index import Registry

logger = logging.getLogger(__name__)

LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
DEFAULT_HEALTH_TIMEOUT_S = 120.0
MODEL_TIMEOUT_S = 60.0  # "the model container must respond to requests within 60 seconds"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
SERVING_STATES = ("InService", "Updating", "RollingBack", "UpdateRollbackFailed")
_FORWARDED_HEADERS = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")


class InvokeError(Exception):
    """An InvokeEndpoint error in SageMaker Runtime's shape (HTTP status, error type, fields)."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.fields = {"message": message, **fields}


class EndpointRuntime:
    """The local fleet behind one moto ``FakeEndpoint``."""

    def __init__(
        self,
        endpoint: Any,
        backend: Any,
        account_id: str,
        region: str,
        settings: Settings,
    ) -> None:
        self.endpoint = endpoint
        self.name: str = endpoint.endpoint_name
        self._backend = backend
        self._account_id = account_id
        self._region = region
        self._settings = settings
        self.fleets: dict[str, VariantFleet] = {}
        # during a blue/green update: the new fleets and their share of each variant's traffic
        self.green: dict[str, VariantFleet] = {}
        self.green_shares: dict[str, float] = {}
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.log_group = LOG_GROUP_PREFIX + self.name

    # --- operations (called from moto request threads; the work runs on a thread) --------

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(
        self, status: str, work: Callable[[], None], show: Callable[[], None] = lambda: None
    ) -> None:
        """Run ``work`` on the endpoint's thread; ``show`` first updates what Describe shows."""
        with self._lock:
            if self.busy:  # a request and the scaler raced: one change at a time
                raise ValidationError(f"Cannot update in-progress endpoint '{self.endpoint.arn}'.")
            show()
            self.endpoint.endpoint_status = status
            self.endpoint.last_modified_time = _now()
            self._thread = threading.Thread(target=work, daemon=True, name=f"endpoint-{self.name}")
            self._thread.start()

    def create(self, config: Mapping[str, Any]) -> None:
        counts = {v["VariantName"]: _initial_count(v) for v in config["ProductionVariants"]}
        weights = {v["VariantName"]: _initial_weight(v) for v in config["ProductionVariants"]}
        self.endpoint.production_variants = [
            {"VariantName": name, "CurrentInstanceCount": 0, "DesiredInstanceCount": count}
            for name, count in counts.items()
        ]
        self._start("Creating", lambda: self._create(config, counts, weights))

    def all_fleets(self) -> list[VariantFleet]:
        """The serving fleets and, during an update, the new ones."""
        return [*self.fleets.values(), *self.green.values()]

    def new_counts(
        self, config: Mapping[str, Any], retain: bool, excluded: set[str]
    ) -> tuple[dict[str, int], dict[str, float]]:
        """Each variant's instance count and weight after an update to ``config``."""
        counts, weights = {}, {}
        for variant in config["ProductionVariants"]:
            name = variant["VariantName"]
            current = self.fleets.get(name)
            keep = retain and current is not None
            counts[name] = (
                current.desired
                if keep and "DesiredInstanceCount" not in excluded
                else _initial_count(variant)
            )
            weights[name] = (
                current.weight
                if keep and "DesiredWeight" not in excluded
                else _initial_weight(variant)
            )
        return counts, weights

    def update(
        self,
        config: Mapping[str, Any],
        counts: Mapping[str, int],
        weights: Mapping[str, float],
        plan: Plan,
    ) -> None:
        """A blue/green update to ``config`` (counts and weights from ``new_counts``)."""
        rollout = Rollout(self, config, counts, weights, plan, self._settings)
        self._start("Updating", rollout.run, rollout.show_pending)

    def scale(self, counts: Mapping[str, int], weights: Mapping[str, float]) -> None:
        """New instance counts and weights (UpdateEndpointWeightsAndCapacities, autoscaling)."""

        def show() -> None:
            for name, count in counts.items():
                self.fleets[name].desired = count
            self._refresh_variants()

        self._start("Updating", lambda: self._scale(counts, weights), show)

    def close(self) -> None:
        """Stop serving at once and stop the fleets on a thread (DeleteEndpoint)."""
        self._closed = True
        threading.Thread(target=self.stop, daemon=True, name=f"delete-{self.name}").start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the fleets (and a change in progress), waiting for the processes to end."""
        self._closed = True
        if self._thread is not None:
            self._thread.join(timeout)
        for fleet in self.all_fleets():
            fleet.stop()

    # --- the work ---------------------------------------------------------------------

    def _cancelled(self) -> bool:
        return self._closed

    def _create(
        self, config: Mapping[str, Any], counts: dict[str, int], weights: dict[str, float]
    ) -> None:
        try:
            fleets = self._build(config, counts, weights)
        except DeployError as exc:
            self._finish("Failed", failure=str(exc))
            return
        self.fleets = fleets
        self._finish("InService")

    def _scale(self, counts: Mapping[str, int], weights: Mapping[str, float]) -> None:
        failure = None
        for name, weight in weights.items():
            self.fleets[name].weight = weight
        for name, count in counts.items():
            try:
                self.fleets[name].resize(count, self._cancelled)
            except DeployError as exc:
                failure = f"Failed to scale variant {name} to {count} instances: {exc}"
                logger.warning("endpoint %s: %s", self.name, failure)
        # a capacity change keeps the reason the last update failed (a rollback's alarm)
        self._finish("InService", failure=failure or self.endpoint.failure_reason)

    def _build(
        self,
        config: Mapping[str, Any],
        counts: Mapping[str, int],
        weights: Mapping[str, float],
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, VariantFleet]:
        cancelled = cancelled or self._cancelled
        fleets: dict[str, VariantFleet] = {}
        try:
            for variant in config["ProductionVariants"]:
                fleet = self._fleet(
                    config["EndpointConfigName"], variant, weights[variant["VariantName"]]
                )
                fleets[fleet.name] = fleet
                fleet.resize(counts[fleet.name], cancelled)
        except BaseException:
            for fleet in fleets.values():
                fleet.stop()
            raise
        if self._closed:
            for fleet in fleets.values():
                fleet.stop()
            raise DeployError("The endpoint was deleted")
        return fleets

    def _fleet(self, config_name: str, variant: Mapping[str, Any], weight: float) -> VariantFleet:
        name = variant["VariantName"]
        model = self._backend._models.get(variant["ModelName"])
        if model is None:
            raise DeployError(f"Could not find model {variant['ModelName']!r}")
        container = model.primary_container or (model.containers or [{}])[0]
        url = container.get("ModelDataUrl")
        if not url:
            raise DeployError(
                f"Model {model.model_name!r} has no ModelDataUrl: the local mode serves a "
                "model.tar.gz from S3"
            )
        try:
            S3(self._account_id, self._region, model.execution_role_arn).pull_image(
                str(container.get("Image", ""))
            )
        except StorageError as exc:
            raise DeployError(f"Failed to start the container of variant {name}: {exc}") from None
        folder = self._settings.state_dir / "endpoints" / self.name / config_name / name
        model_dir = folder / "model"
        try:
            self._download(url, folder / "model.tar.gz", model.execution_role_arn)
            shutil.rmtree(model_dir, ignore_errors=True)
            extract(folder / "model.tar.gz", model_dir)
        except StorageError as exc:
            raise DeployError(f"Failed to download model data for variant {name}: {exc}") from None
        return VariantFleet(
            name=name,
            config_name=config_name,
            model_dir=model_dir,
            env=container.get("Environment") or {},
            image=container.get("Image", ""),
            weight=weight,
            logs=folder / "logs",
            stream_factory=lambda stream: self._log_stream(stream, model.execution_role_arn),
            settings=self._settings,
            health_timeout=float(
                variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
                or DEFAULT_HEALTH_TIMEOUT_S
            ),
        )

    def _download(self, url: str, dest: Any, role_arn: str | None = None) -> None:
        S3(self._account_id, self._region, role_arn).download(url, dest)

    def _log_stream(self, stream: str, role_arn: str | None) -> LogStream:
        return LogStream(self._account_id, self._region, self.log_group, stream, role_arn)

    # --- what DescribeEndpoint shows --------------------------------------------------

    def _finish(self, status: str, failure: str | None = None) -> None:
        if self._closed:
            return
        with self._lock:
            self._refresh_variants()
            self.endpoint.failure_reason = failure
            self.endpoint.endpoint_status = status
            self.endpoint.last_modified_time = _now()
        # a Wait polling this endpoint ends now (localcloud/services/stepfunctions/wait_wakeup.py)
        wait_wakeup.settled(self.name)

    def _refresh_variants(self) -> None:
        if not self.fleets:
            return
        now = _now()
        self.endpoint.production_variants = [
            {
                "VariantName": fleet.name,
                **(
                    {
                        "DeployedImages": [
                            {
                                "SpecifiedImage": fleet.image,
                                "ResolvedImage": fleet.image,
                                "ResolutionTime": now,
                            }
                        ]
                    }
                    if fleet.image
                    else {}
                ),
                "CurrentWeight": fleet.weight,
                "DesiredWeight": fleet.weight,
                "CurrentInstanceCount": fleet.live_count(),
                "DesiredInstanceCount": fleet.desired,
            }
            for fleet in self.fleets.values()
        ]

    # --- traffic ----------------------------------------------------------------------

    def invoke(self, body: bytes, headers: Mapping[str, str]) -> tuple[Reply, str]:
        """Send one request to a live instance; returns the reply and the variant name."""
        fleets = self.fleets
        if self._closed or self.endpoint.endpoint_status not in SERVING_STATES or not fleets:
            raise not_found(self.name, self._account_id)
        if len(body) > MAX_PAYLOAD_BYTES:
            raise InvokeError(
                413, "ValidationError", f"Request payload exceeds {MAX_PAYLOAD_BYTES} bytes (6 MB)"
            )
        green, shares = self.green, self.green_shares
        fleet = self._choose(fleets, headers.get("X-Amzn-SageMaker-Target-Variant"))
        new = green.get(fleet.name)  # a blue/green update: the new fleet's share goes to it
        if new is not None and random.random() < shares.get(fleet.name, 0.0):
            fleet = new
        instance = fleet.pick()
        if instance is None:
            raise InvokeError(
                503,
                "ServiceUnavailable",
                f"Variant {fleet.name} of endpoint {self.name} has no instance in service",
            )
        fleet.record_call()
        forwarded = {key: headers[key] for key in _FORWARDED_HEADERS if headers.get(key)}
        started = time.monotonic()
        try:
            reply = instance.invoke(body, forwarded, MODEL_TIMEOUT_S)
        except TimeoutError:
            fleet.metrics.record(599, None)
            raise InvokeError(
                424,
                "ModelError",
                "Your invocation timed out while waiting for a response from container primary. "
                "Review the latency metrics for each container in Amazon CloudWatch, resolve the "
                "issue, and try again.",
                LogStreamArn=self._log_group_arn(),
            ) from None
        except OSError as exc:
            fleet.metrics.record(599, None)
            raise InvokeError(
                503, "ServiceUnavailable", f"Instance {instance.id} did not answer: {exc}"
            ) from None
        fleet.metrics.record(reply.status, (time.monotonic() - started) * 1e6)
        if not 200 <= reply.status < 300:
            kind = "client" if reply.status < 500 else "server"
            text = reply.body.decode("utf-8", errors="replace")
            raise InvokeError(
                424,
                "ModelError",
                f'Received {kind} error ({reply.status}) from primary with message "{text}". '
                f"See the log group {self.log_group} in account {self._account_id} for more "
                "information.",
                OriginalStatusCode=reply.status,
                OriginalMessage=text,
                LogStreamArn=self._log_group_arn(),
            )
        return reply, fleet.name

    def _choose(self, fleets: Mapping[str, VariantFleet], target: str | None) -> VariantFleet:
        if target:
            if target not in fleets:
                raise InvokeError(
                    400, "ValidationError", f"Variant {target} not found for endpoint {self.name}."
                )
            return fleets[target]
        serving = [fleet for fleet in fleets.values() if fleet.live_count() > 0] or list(
            fleets.values()
        )
        weights = [fleet.weight for fleet in serving]
        if sum(weights) <= 0:
            weights = [1.0] * len(serving)
        return random.choices(serving, weights=weights)[0]

    def _log_group_arn(self) -> str:
        return log_group_arn(self._account_id, self._region, self.log_group)


def not_found(name: str, account_id: str) -> InvokeError:
    return InvokeError(
        400, "ValidationError", f"Endpoint {name} of account {account_id} not found."
    )


def _initial_count(variant: Mapping[str, Any]) -> int:
    # serverless variants (no instance count) run as one local instance
    return int(variant.get("InitialInstanceCount") or 1)


def _initial_weight(variant: Mapping[str, Any]) -> float:
    weight = variant.get("InitialVariantWeight")
    return 1.0 if weight is None else float(weight)


def _now() -> datetime:
    return datetime.now(UTC)


ENDPOINTS: Registry[EndpointRuntime] = Registry()
