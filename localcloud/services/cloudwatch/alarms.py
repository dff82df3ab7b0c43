"""CloudWatch metric alarms that evaluate, for the local cloud (moto stores them, never evaluates).

A daemon thread evaluates every metric alarm of every account and region of moto's
CloudWatch once per alarm period (on the ``time_scale`` clock: 0.05 makes a 60 s period
3 s) on the datapoints in moto's backend: the metric with exactly the alarm's namespace,
name and dimensions (and unit, when the alarm names one), the alarm's ``Statistic`` or
``ExtendedStatistic`` (pNN) per period over the last ``EvaluationPeriods`` periods,
``DatapointsToAlarm`` of them breaching ``Threshold`` by ``ComparisonOperator``, missing
periods treated by ``TreatMissingData`` (missing, notBreaching, breaching, ignore). A change
of state is set through moto's backend (StateValue, StateReason, StateReasonData, the
history: ``DescribeAlarmHistory``), and, with actions enabled, the state's actions that are
SNS topics get AWS's alarm message through moto's SNS (so an SQS subscription receives it);
each notification is also appended to a JSON-lines file. Metric-math and anomaly-detection
alarms are left as they are.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.cloudwatch.models import (
    MetricAggregatedDatum,
    MetricDatum,
    MetricDatumBase,
    cloudwatch_backends,
)
from moto.sns.models import sns_backends

logger = logging.getLogger(__name__)

COMPARISONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda v, t: v >= t),
    "GreaterThanThreshold": ("greater than", lambda v, t: v > t),
    "LessThanThreshold": ("less than", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda v, t: v <= t),
}
MAX_HISTORY = 100  # per alarm, newest first
# Set by the local cloud when IAM is enforced: (topic ARN, alarm ARN) -> None if CloudWatch
# may publish to the topic (its access policy allows cloudwatch.amazonaws.com), else why not.
AUTHORIZE_PUBLISH: Callable[[str, str], str | None] | None = None
# datapoints are appended in time order, except those sent with their own older timestamp:
# the scan (newest first) stops after a run of _OLD_RUN this much older than the window
_LOOK_BACK_S = 3600.0
_OLD_RUN = 1000


@dataclass(frozen=True)
class Rule:
    """What an alarm checks, in plain values."""

    comparison: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing: str = "missing"


@dataclass(frozen=True)
class Outcome:
    state: str
    reason: str
    breaching: int
    values: tuple[float | None, ...]


def statistic(datums: Sequence[MetricDatumBase], stat: str) -> float | None:
    """One period's Statistic (SampleCount, Average, Sum, Minimum, Maximum) or pNN."""
    if not datums:
        return None
    count = total = 0.0
    low, high = math.inf, -math.inf
    values: list[float] = []
    for datum in datums:
        if isinstance(datum, MetricAggregatedDatum):
            count += datum.sample_count
            total += datum.sum
            low, high = min(low, datum.min), max(high, datum.max)
        elif isinstance(datum, MetricDatum):
            count += 1
            total += datum.value
            low, high = min(low, datum.value), max(high, datum.value)
            values.append(datum.value)
    if stat.startswith("p"):
        if not values:
            return None
        rank = float(stat[1:]) / 100
        ordered = sorted(values)
        return ordered[max(0, math.ceil(rank * len(ordered)) - 1)]
    return {
        "SampleCount": count,
        "Sum": total,
        "Average": total / count if count else None,
        "Minimum": low,
        "Maximum": high,
    }.get(stat)


def evaluate(rule: Rule, values: Sequence[float | None], current: str) -> Outcome:
    """The state ``values`` (one per period, oldest first, None: no data) put the alarm in."""
    test = COMPARISONS[rule.comparison][1]
    present = [v for v in values if v is not None]
    missing = len(values) - len(present)
    breaching = sum(1 for v in present if test(v, rule.threshold))
    if rule.treat_missing == "breaching":
        breaching += missing
    if not present and rule.treat_missing in ("missing", "ignore"):
        state = current if rule.treat_missing == "ignore" else "INSUFFICIENT_DATA"
        return Outcome(state, "Insufficient Data: no datapoints were received", 0, tuple(values))
    state = "ALARM" if breaching >= rule.datapoints_to_alarm else "OK"
    return Outcome(state, _reason(rule, values, breaching, state), breaching, tuple(values))


def _reason(rule: Rule, values: Sequence[float | None], breaching: int, state: str) -> str:
    shown = ", ".join("missing" if v is None else f"{v:g}" for v in values)
    words = COMPARISONS[rule.comparison][0]
    if state == "ALARM":
        return (
            f"Threshold Crossed: {breaching} out of the last {len(values)} datapoints "
            f"[{shown}] were {words} the threshold ({rule.threshold:g}) (minimum "
            f"{rule.datapoints_to_alarm} datapoint(s) for OK -> ALARM transition)."
        )
    return (
        f"Threshold Crossed: {breaching} out of the last {len(values)} datapoints [{shown}] "
        f"were {words} the threshold ({rule.threshold:g}); fewer than "
        f"{rule.datapoints_to_alarm} for ALARM."
    )


def _dimensions(items: Iterable[Any]) -> frozenset[tuple[str, str]]:
    return frozenset((d.name, d.value) for d in items)


def _epoch(stamp: datetime) -> float:
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


class Evaluator:
    """Evaluates every metric alarm on a daemon thread until stopped."""

    def __init__(self) -> None:
        self.time_scale = 1.0
        self.log_path: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._due: dict[tuple[str, str, str], float] = {}
        self._history: dict[tuple[str, str, str], deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def start(self, time_scale: float = 1.0, log_path: Path | None = None) -> None:
        self.time_scale, self.log_path = time_scale, log_path
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="alarm-evaluator")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._due.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # keep evaluating the other alarms; the cause is logged
                logger.exception("alarm evaluation failed")
            self._stop.wait(min(1.0, max(0.05, 5 * self.time_scale)))

    def run_once(self, force: bool = False) -> None:
        """Evaluate the alarms whose period came round (all of them with ``force``)."""
        now = time.time()
        for account_id in list(cloudwatch_backends.keys()):
            for region in list(cloudwatch_backends[account_id].keys()):
                backend = cloudwatch_backends[account_id][region]
                for alarm in list(backend.alarms.values()):
                    if not alarm.metric_name or alarm.comparison_operator not in COMPARISONS:
                        continue  # metric math, composite and anomaly alarms: not evaluated
                    key = (account_id, region, alarm.name)
                    period = max(1.0, float(alarm.period or 60)) * self.time_scale
                    if not force and now < self._due.get(key, 0.0):
                        continue
                    self._due[key] = now + min(period, 60 * self.time_scale)
                    self._evaluate(account_id, region, backend, alarm, period, now)

    def _evaluate(
        self, account_id: str, region: str, backend: Any, alarm: Any, period: float, now: float
    ) -> None:
        periods = int(alarm.evaluation_periods or 1)
        wanted = _dimensions(alarm.dimensions)
        start = now - periods * period
        buckets: list[list[MetricDatumBase]] = [[] for _ in range(periods)]
        stale = 0
        for datum in reversed(list(backend.metric_data)):  # newest first, as appended
            if _epoch(datum.timestamp) < start - _LOOK_BACK_S:
                stale += 1
                if stale >= _OLD_RUN:
                    break  # a run of datapoints an hour older than the window: the rest is too
                continue
            stale = 0
            if datum.namespace != alarm.namespace or datum.name != alarm.metric_name:
                continue
            if _dimensions(datum.dimensions) != wanted:
                continue
            if alarm.unit and datum.unit and datum.unit != alarm.unit:
                continue
            index = math.floor((_epoch(datum.timestamp) - start) / period)
            if 0 <= index < periods:
                buckets[index].append(datum)
        stat = alarm.extended_statistic or alarm.statistic or "Average"
        values = [statistic(bucket, stat) for bucket in buckets]
        rule = Rule(
            comparison=alarm.comparison_operator,
            threshold=float(alarm.threshold),
            evaluation_periods=periods,
            datapoints_to_alarm=int(alarm.datapoints_to_alarm or periods),
            treat_missing=alarm.treat_missing_data or "missing",
        )
        outcome = evaluate(rule, values, alarm.state_value)
        if outcome.state == alarm.state_value:
            return
        old = alarm.state_value
        data = {
            "version": "1.0",
            "queryDate": datetime.now(UTC).isoformat(),
            "statistic": stat,
            "period": int(alarm.period or 60),
            "recentDatapoints": [v for v in values if v is not None],
            "threshold": float(alarm.threshold),
            "evaluatedDatapoints": len(values),
        }
        backend.set_alarm_state(alarm.name, outcome.reason, json.dumps(data), outcome.state)
        self._record(account_id, region, alarm, old, outcome)
        logger.info("alarm %s: %s -> %s (%s)", alarm.name, old, outcome.state, outcome.reason)
        if alarm.actions_enabled:
            actions = {
                "ALARM": alarm.alarm_actions,
                "OK": alarm.ok_actions,
                "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
            }[outcome.state]
            for arn in actions or []:
                self._notify(account_id, region, alarm, old, outcome, arn)

    # --- history and notifications ---------------------------------------------------

    def _record(self, account_id: str, region: str, alarm: Any, old: str, outcome: Outcome) -> None:
        item = {
            "AlarmName": alarm.name,
            "AlarmType": "MetricAlarm",
            "Timestamp": datetime.now(UTC),
            "HistoryItemType": "StateUpdate",
            "HistorySummary": f"Alarm updated from {old} to {outcome.state}",
            "HistoryData": json.dumps(
                {
                    "version": "1.0",
                    "oldState": {"stateValue": old},
                    "newState": {"stateValue": outcome.state, "stateReason": outcome.reason},
                }
            ),
        }
        self._append(account_id, region, alarm.name, item)

    def _append(self, account_id: str, region: str, name: str, item: dict[str, Any]) -> None:
        with self._lock:
            rows = self._history.setdefault((account_id, region, name), deque(maxlen=MAX_HISTORY))
            rows.appendleft(item)

    def history(self, account_id: str, region: str, name: str | None) -> list[dict[str, Any]]:
        """The state changes of one alarm (all alarms when None), newest first."""
        with self._lock:
            rows = [
                row
                for (acct, reg, alarm), items in self._history.items()
                if (acct, reg) == (account_id, region) and name in (None, alarm)
                for row in items
            ]
        return sorted(rows, key=lambda row: row["Timestamp"], reverse=True)

    def _notify(
        self, account_id: str, region: str, alarm: Any, old: str, outcome: Outcome, arn: str
    ) -> None:
        parts = arn.split(":")
        if len(parts) < 6 or parts[2] != "sns":
            logger.info("alarm %s: action %s is not an SNS topic; not run", alarm.name, arn)
            return
        message = message_body(account_id, region, alarm, old, outcome)
        subject = f'{outcome.state}: "{alarm.name}" in {region}'[:99]
        error = AUTHORIZE_PUBLISH(arn, alarm.alarm_arn) if AUTHORIZE_PUBLISH else None
        try:
            if error is None:
                topics = sns_backends[parts[4]][parts[3]]
                topics.publish(json.dumps(message), arn=arn, subject=subject)
        except Exception as exc:  # a missing topic: record it, keep evaluating
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:  # as CloudWatch does: the alarm's history says the action failed
            logger.warning("alarm %s: publishing to %s failed: %s", alarm.name, arn, error)
            self._append(
                account_id,
                region,
                alarm.name,
                {
                    "AlarmName": alarm.name,
                    "AlarmType": "MetricAlarm",
                    "Timestamp": datetime.now(UTC),
                    "HistoryItemType": "Action",
                    "HistorySummary": f"Failed to execute action {arn}. Received error: {error}",
                    "HistoryData": json.dumps({"actionState": "Failed", "error": error}),
                },
            )
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            line = {"time": datetime.now(UTC).isoformat(), "topic": arn, "subject": subject}
            line.update(message=message, error=error)
            with self.log_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")


def message_body(
    account_id: str, region: str, alarm: Any, old: str, outcome: Outcome
) -> dict[str, Any]:
    """The JSON CloudWatch sends to an alarm's SNS topics."""
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": alarm.configuration_updated_timestamp.isoformat(),
        "NewStateValue": outcome.state,
        "NewStateReason": outcome.reason,
        "StateChangeTime": datetime.now(UTC).isoformat(),
        "Region": region,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old,
        "OKActions": alarm.ok_actions,
        "AlarmActions": alarm.alarm_actions,
        "InsufficientDataActions": alarm.insufficient_data_actions,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "ExtendedStatistic" if alarm.extended_statistic else "Statistic",
            "Statistic": (alarm.statistic or "").upper() if not alarm.extended_statistic else None,
            "ExtendedStatistic": alarm.extended_statistic,
            "Unit": alarm.unit,
            "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data or "missing",
            "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile or "",
        },
    }


EVALUATOR = Evaluator()


def describe_alarm_history(self: Any) -> Any:
    """``DescribeAlarmHistory`` (moto has none): the evaluator's state changes, newest first."""
    from moto.core.responses import ActionResult

    name = self._get_param("AlarmName")
    kind = self._get_param("HistoryItemType")
    rows = EVALUATOR.history(self.current_account, self.region, name)
    if kind:
        rows = [row for row in rows if row["HistoryItemType"] == kind]
    limit = self._get_int_param("MaxRecords") or 100
    return ActionResult({"AlarmHistoryItems": rows[:limit]})


def start(time_scale: float = 1.0, log_path: Path | None = None) -> None:
    """Evaluate alarms from now on (idempotent; a later call replaces the settings);
    ``log_path``: the JSON-lines file every SNS notification is appended to."""
    from moto.cloudwatch.responses import CloudWatchResponse

    CloudWatchResponse.describe_alarm_history = describe_alarm_history  # type: ignore[attr-defined]
    EVALUATOR.start(time_scale, log_path)


def stop() -> None:
    """Stop evaluating (tests)."""
    EVALUATOR.stop()
