"""QualityGate: both numbers in the reason; a missing metric is named."""

from __future__ import annotations

import pytest

from tests.conftest import AwsRecorder, load_event, load_handler

FUNCTION = "QualityGateFunction"


@pytest.mark.parametrize(
    ("event", "passed", "reason"),
    [
        ("passed", True, "validation accuracy 0.842 reaches the required 0.7"),
        ("below_threshold", False, "validation accuracy 0.62 is below the required 0.8"),
        ("missing_metric", False, "reported no valid_acc metric (reported: train_loss)"),
    ],
)
def test_gate(aws: AwsRecorder, event: str, passed: bool, reason: str) -> None:
    result = aws.invoke(load_handler("quality_gate"), load_event(f"quality_gate/{event}.json"))
    assert result["passed"] is passed
    assert reason in result["reason"]
    assert aws.calls == []


def test_a_malformed_state_input_names_the_field(aws: AwsRecorder) -> None:
    event = load_event("quality_gate/passed.json")
    del event["gate"]
    with pytest.raises(Exception, match=r"invalid input: .*gate") as raised:
        aws.invoke(load_handler("quality_gate"), event)
    assert type(raised.value).__name__ == "InvalidStateInputError"
