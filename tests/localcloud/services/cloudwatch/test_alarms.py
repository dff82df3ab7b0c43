"""The local CloudWatch alarm evaluator: the rule, the statistics, and alarms on moto's metrics
that change state, keep a history and notify SNS (an SQS subscription receives it)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws
from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum

from localcloud.services.cloudwatch import alarms
from localcloud.services.cloudwatch.alarms import Rule, evaluate, statistic
from tests.localcloud.sagemaker_support import wait_for

REGION = "us-east-1"


def test_m_out_of_n_datapoints_and_missing_data() -> None:
    two_of_three = Rule("GreaterThanThreshold", 5, evaluation_periods=3, datapoints_to_alarm=2)
    assert evaluate(two_of_three, [6, 1, 7], "OK").state == "ALARM"
    assert evaluate(two_of_three, [6, 1, 5], "ALARM").state == "OK"  # 5 is not > 5
    assert "2 out of the last 3 datapoints" in evaluate(two_of_three, [9, 9, 1], "OK").reason
    assert evaluate(two_of_three, [None, None, None], "OK").state == "INSUFFICIENT_DATA"
    assert evaluate(two_of_three, [None, 9, 9], "OK").state == "ALARM"

    def treated(how: str) -> Rule:
        return Rule("GreaterThanThreshold", 5, 3, 2, treat_missing=how)

    assert evaluate(treated("breaching"), [None, None, 1], "OK").state == "ALARM"
    assert evaluate(treated("notBreaching"), [None, None, None], "ALARM").state == "OK"
    assert evaluate(treated("ignore"), [None, None, None], "ALARM").state == "ALARM"
    lower = Rule("LessThanOrEqualToThreshold", 0.5, 1, 1)
    assert evaluate(lower, [0.5], "OK").state == "ALARM"


def test_statistics_of_single_and_aggregated_datapoints() -> None:
    now = datetime.now(UTC)
    values = [MetricDatum("N", "M", float(v), [], now) for v in range(1, 101)]
    assert statistic(values, "Average") == 50.5
    assert statistic(values, "p90") == 90
    assert statistic(values, "p99") == 99
    assert (statistic(values, "Minimum"), statistic(values, "Maximum")) == (1, 100)
    errors = [
        MetricAggregatedDatum(
            "N", "E", 0, 1, sample_count=8, sum_stat=2, dimensions=[], timestamp=now
        ),
        MetricAggregatedDatum(
            "N", "E", 0, 0, sample_count=2, sum_stat=0, dimensions=[], timestamp=now
        ),
    ]
    assert statistic(errors, "Average") == 0.2  # the error rate over both windows
    assert (statistic(errors, "Sum"), statistic(errors, "SampleCount")) == (2, 10)
    assert statistic(errors, "p50") is None  # no single values: no percentile
    assert statistic([], "Sum") is None


@pytest.fixture
def cloud() -> Iterator[None]:
    with mock_aws():
        alarms.start(time_scale=0.02)  # a 60 s period is 1.2 s
        try:
            yield
        finally:
            alarms.stop()


def test_an_alarm_goes_into_alarm_notifies_and_recovers(cloud: None) -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="ops")["TopicArn"]
    queue = sqs.create_queue(QueueName="ops-mail")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    dimensions = [{"Name": "FunctionName", "Value": "classify"}]
    cloudwatch.put_metric_alarm(
        AlarmName="classify-errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Dimensions=dimensions,
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=3,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic],
        OKActions=[topic],
    )
    stop = threading.Event()

    def errors() -> None:  # 1 error every 0.1 s: about 12 per (scaled) minute
        while not stop.is_set():
            cloudwatch.put_metric_data(
                Namespace="AWS/Lambda",
                MetricData=[{"MetricName": "Errors", "Dimensions": dimensions, "Value": 1}],
            )
            time.sleep(0.1)

    def state() -> str:
        described = cloudwatch.describe_alarms(AlarmNames=["classify-errors"])
        return described["MetricAlarms"][0]["StateValue"]

    # another dimension set is another metric: it does not count
    cloudwatch.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Errors",
                "Value": 50,
                "Dimensions": [{"Name": "FunctionName", "Value": "other"}],
            }
        ],
    )
    alarms.EVALUATOR.run_once(force=True)
    assert state() == "OK"  # Sum 50 >= 3 had it counted
    writer = threading.Thread(target=errors, daemon=True)
    writer.start()
    try:
        wait_for(state, lambda s: s == "ALARM", 10)
    finally:
        stop.set()
        writer.join(5)
    wait_for(state, lambda s: s == "OK", 10)  # no errors: not breaching

    history = cloudwatch.describe_alarm_history(AlarmName="classify-errors")["AlarmHistoryItems"]
    assert [h["HistorySummary"] for h in history[:2]] == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from OK to ALARM",
    ]
    notices = []
    while len(notices) < 2:
        got = wait_for(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"), bool, 10)
        notices += [json.loads(json.loads(m["Body"])["Message"]) for m in got]
    assert [n["NewStateValue"] for n in notices] == ["ALARM", "OK"]
    assert notices[0]["Trigger"]["Dimensions"] == [{"value": "classify", "name": "FunctionName"}]
    assert "Threshold Crossed" in notices[0]["NewStateReason"]
