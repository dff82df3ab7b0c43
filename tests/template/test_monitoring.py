"""What the template watches: every way a run can end without succeeding raises an alarm."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template_support import template


def alarms() -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in template()["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]


@pytest.mark.parametrize("metric", ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"])
def test_a_run_that_ends_without_succeeding_notifies_the_alarm_topic(metric: str) -> None:
    # Step Functions counts a timed-out or aborted execution apart from a failed one.
    watching = [
        a
        for a in alarms()
        if a.get("Namespace") == "AWS/States"
        and a.get("MetricName") == metric
        and a.get("Dimensions")
        == [{"Name": "StateMachineArn", "Value": {"Ref": "TrainDeployStateMachine"}}]
    ]
    assert watching, f"no alarm on the state machine's {metric}"
    for alarm in watching:
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
