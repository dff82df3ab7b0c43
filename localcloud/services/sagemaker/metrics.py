"""Per-variant endpoint metrics from the real traffic, published to the local CloudWatch.

Every InvokeEndpoint that reaches an instance is recorded on its fleet: its outcome (2xx, a
4xx or a 5xx from the model; a timeout or a refused connection counts as 5xx) and the
model's latency in microseconds. Each scaler pass publishes what was recorded since the
last one to moto's CloudWatch in namespace ``AWS/SageMaker``, as SageMaker does:

- ``Invocations`` (Sum), ``Invocation4XXErrors`` and ``Invocation5XXErrors`` (one 0/1 sample
  per request, so Average is the error rate and Sum the count), ``ModelLatency`` (one value
  per request, Unit Microseconds: Average, Maximum and percentiles work);
- dimensions ``EndpointName`` + ``VariantName``. During a blue/green update the new fleet
  publishes under the same variant name, as on AWS: an alarm on the variant sees the
  canary's errors mixed with the old fleet's traffic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends

NAMESPACE = "AWS/SageMaker"
_MAX_VALUES = 150  # PutMetricData's limit of values per datum


@dataclass
class Window:
    """What one fleet saw since the last publication."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    latencies_us: list[float] = field(default_factory=list)


class FleetMetrics:
    """Thread-safe counters of one fleet (request threads record, the scaler takes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window = Window()

    def record(self, status: int, latency_us: float | None) -> None:
        """One request: the model's HTTP status (599 for no answer) and its latency."""
        with self._lock:
            self._window.invocations += 1
            if 400 <= status < 500:
                self._window.errors_4xx += 1
            elif status >= 500:
                self._window.errors_5xx += 1
            if latency_us is not None:
                self._window.latencies_us.append(latency_us)

    def take(self) -> Window:
        with self._lock:
            window, self._window = self._window, Window()
            return window


def datums(
    endpoint: str, variant: str, window: Window, timestamp: datetime
) -> list[dict[str, Any]]:
    """The PutMetricData entries of one fleet's window."""
    if not window.invocations:
        return []
    dimension_sets = [
        [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
    ]
    n = window.invocations
    out: list[dict[str, Any]] = []
    for dimensions in dimension_sets:
        base = {"Dimensions": dimensions, "Timestamp": timestamp}
        out.append({**base, "MetricName": "Invocations", "Value": float(n), "Unit": "None"})
        for name, errors in (
            ("Invocation4XXErrors", window.errors_4xx),
            ("Invocation5XXErrors", window.errors_5xx),
        ):
            stats = {
                "SampleCount": float(n),
                "Sum": float(errors),
                "Minimum": 0.0 if errors < n else 1.0,
                "Maximum": 1.0 if errors else 0.0,
            }
            out.append({**base, "MetricName": name, "StatisticValues": stats, "Unit": "None"})
        values = window.latencies_us
        for start in range(0, len(values), _MAX_VALUES):
            out.append(
                {
                    **base,
                    "MetricName": "ModelLatency",
                    "Values": values[start : start + _MAX_VALUES],
                    "Unit": "Microseconds",
                }
            )
    return out


def publish(account_id: str, region: str, endpoint: str, fleets: Iterable[Any]) -> None:
    """Publish what each fleet (``name``, ``metrics``) saw since the last time."""
    # naive UTC, as moto keeps the timestamps its own PutMetricData receives (an aware one
    # breaks GetMetricStatistics' comparisons: HTTP 500)
    now = datetime.now(UTC).replace(tzinfo=None)
    data: list[dict[str, Any]] = []
    for fleet in fleets:
        data += datums(endpoint, fleet.name, fleet.metrics.take(), now)
    if data:
        cloudwatch_backends[account_id][region].put_metric_data(NAMESPACE, data)
