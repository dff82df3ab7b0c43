"""A training job's metric definitions: checked as CreateTrainingJob checks them, then
read from the job's output (FinalMetricDataList, and every value for a tuning job) and
published to CloudWatch as the job's execution role (``HostMetrics``)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.sagemaker.exceptions import ValidationError

from . import execution_role

NAMESPACE = "/aws/sagemaker/TrainingJobs"


def check_metric_definitions(definitions: list[dict[str, str]]) -> None:
    """Refuse regexes that cannot compile or capture nothing (CreateTrainingJob would too)."""
    for definition in definitions:
        try:
            pattern = re.compile(definition["Regex"])
        except re.error as exc:
            raise ValidationError(
                f"MetricDefinitions {definition.get('Name')!r}: invalid Regex: {exc}"
            ) from None
        if pattern.groups < 1:
            raise ValidationError(
                f"MetricDefinitions {definition.get('Name')!r}: the Regex needs a capture group"
            )


class MetricParser:
    """Keeps the last value of each metric seen in the output (FinalMetricDataList)."""

    def __init__(self, definitions: list[dict[str, str]]) -> None:
        self._patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
        self._last: dict[str, tuple[float, datetime]] = {}
        self._lock = threading.Lock()
        self._observers: list[Callable[[str, float], None]] = []

    def observe(self, callback: Callable[[str, float], None]) -> None:
        """Call ``callback(name, value)`` for every value seen (a tuning job's pruner)."""
        self._observers.append(callback)

    def feed(self, line: str) -> None:
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if match is None:
                continue
            try:
                value = float(match.group(1))
            except (TypeError, ValueError):
                continue
            with self._lock:
                self._last[name] = (value, datetime.now(UTC))
            for callback in self._observers:
                callback(name, value)

    def final(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"MetricName": name, "Value": value, "Timestamp": stamp}
                for name, _ in self._patterns
                if name in self._last
                for value, stamp in [self._last[name]]
            ]


class HostMetrics:
    """One host's metric values, published to CloudWatch as SageMaker does (namespace
    ``/aws/sagemaker/TrainingJobs``, dimension ``Host`` = ``<job>/algo-<n>``) as the job's
    execution role: a role that may not ``cloudwatch:PutMetricData`` in that namespace gets
    no metrics there while the job runs on (FinalMetricDataList is SageMaker's own);
    ``denied`` says why (None when they are published)."""

    def __init__(
        self,
        account_id: str,
        region: str,
        definitions: list[dict[str, str]],
        host: str,
        role_arn: str | None,
    ) -> None:
        self._backend = cloudwatch_backends[account_id][region]
        self._parser = MetricParser(definitions)
        self._host = host
        self._parser.observe(self._publish)
        context = {"cloudwatch:namespace": NAMESPACE}
        self.denied = (  # nothing to publish, nothing asked
            execution_role.denied(role_arn, "cloudwatch:PutMetricData", "*", **context)
            if definitions
            else None
        )

    def feed(self, line: str) -> None:
        if not self.denied:
            self._parser.feed(line)

    def _publish(self, name: str, value: float) -> None:
        # naive UTC, as moto keeps the timestamps its own PutMetricData receives
        stamp = datetime.now(UTC).replace(tzinfo=None)
        host = [{"Name": "Host", "Value": self._host}]
        datum = {"MetricName": name, "Value": value, "Dimensions": host, "Timestamp": stamp}
        self._backend.put_metric_data(NAMESPACE, [datum])
