"""QualityGate: both numbers in the reason; a missing metric is named."""

from __future__ import annotations

import pytest

from mlops.gate import against_live
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


CHAMPION = "s3://pipeline-data/models/image-classifier-old/output/model.tar.gz"


def gate_event(metrics: dict, champion: str | None, margin: float = 0.02) -> dict:
    event = load_event("quality_gate/passed.json")
    return {
        **event,
        "metrics": metrics,
        "gate": {**event["gate"], "champion_margin": margin},
        "champion": champion,
    }


def test_the_first_model_passes_on_the_absolute_gate(aws: AwsRecorder) -> None:
    event = gate_event({"valid_acc": 0.8, "test_acc": 0.79}, None)
    result = aws.invoke(load_handler("quality_gate"), event)
    assert result["passed"] is True
    assert "no live model to compare with (first model)" in result["reason"]
    assert result["champion"]["compared"] is False


@pytest.mark.parametrize(
    ("candidate", "champion", "passed", "words"),
    [
        (0.91, 0.90, True, "not worse than the live model: test accuracy 0.91"),
        (0.885, 0.90, True, "not worse"),  # within the 0.02 margin
        (0.85, 0.90, False, "worse than the live model: test accuracy 0.85 against the live "
         "model's 0.9 on the same test split (margin 0.02)"),
    ],
)  # fmt: skip
def test_the_candidate_must_not_be_worse_than_the_champion(
    aws: AwsRecorder, candidate: float, champion: float, passed: bool, words: str
) -> None:
    metrics = {"valid_acc": 0.95, "test_acc": candidate, "champion_test_acc": champion}
    result = aws.invoke(load_handler("quality_gate"), gate_event(metrics, CHAMPION))
    assert result["passed"] is passed
    assert words in result["reason"]
    assert result["champion"]["compared"] is True
    assert result["champion"]["test_acc"] == champion


def test_a_champion_of_other_classes_passes_on_the_absolute_gate(aws: AwsRecorder) -> None:
    # train.py's [champion] line says champion_comparable=0 (other classes): no number.
    event = gate_event({"valid_acc": 0.95, "test_acc": 0.5, "champion_comparable": 0}, CHAMPION)
    result = aws.invoke(load_handler("quality_gate"), event)
    assert result["passed"] is True
    assert "cannot be scored on this data set's test split" in result["reason"]
    assert CHAMPION in result["reason"]
    assert result["champion"]["status"] == "not_comparable"


def test_a_champion_that_could_not_be_loaded_fails_the_gate(aws: AwsRecorder) -> None:
    # A corrupt live model: train.py could not load it, so no champion metric at all.
    event = gate_event({"valid_acc": 0.95, "test_acc": 0.5}, CHAMPION)
    result = aws.invoke(load_handler("quality_gate"), event)
    assert result["passed"] is False
    assert result["reason"].startswith(f"the live model {CHAMPION} was given to training job")
    assert "set ChampionLoadFailure=pass" in result["reason"]
    assert result["champion"]["status"] == "load_failed"


def test_champion_load_failure_pass_lets_the_absolute_gate_decide(aws: AwsRecorder) -> None:
    event = gate_event({"valid_acc": 0.95, "test_acc": 0.5}, CHAMPION)
    event["gate"]["champion_load_failure"] = "pass"
    result = aws.invoke(load_handler("quality_gate"), event)
    assert result["passed"] is True
    assert "as ChampionLoadFailure=pass allows" in result["reason"]
    assert result["champion"]["status"] == "load_failed"


def test_the_absolute_gate_comes_first(aws: AwsRecorder) -> None:
    metrics = {"valid_acc": 0.5, "test_acc": 0.99, "champion_test_acc": 0.1}
    result = aws.invoke(load_handler("quality_gate"), gate_event(metrics, CHAMPION))
    assert result["passed"] is False
    assert result["reason"] == "validation accuracy 0.5 is below the required 0.7"


LIVE = {"model_artifact": CHAMPION, "metadata": {"metric_test_acc": "0.9"}}


@pytest.mark.parametrize(
    ("candidate", "on_load_failure", "refusal"),
    [
        ("0.89", "fail", None),  # within the 0.02 margin
        ("0.85", "fail", f"the live model {CHAMPION} is better: test accuracy 0.9 against this "
         "model's 0.85 (each on its own test split, margin 0.02); it went live after this model "
         "was gated against none"),
        (None, "fail", "no recorded test accuracies to compare"),
        (None, "pass", None),
    ],
)  # fmt: skip
def test_a_model_that_went_live_after_the_gate_is_compared_at_deploy_time(
    candidate: str | None, on_load_failure: str, refusal: str | None
) -> None:
    """DeployModel's check under the lock (issue 18, never-worse): the gate compared the
    candidate with the model live when it trained; this one went live since."""
    metadata = {"champion_model": "none"}
    if candidate is not None:
        metadata["metric_test_acc"] = candidate
    gate = {"champion_margin": 0.02, "champion_load_failure": on_load_failure}
    found = against_live(metadata, LIVE, gate)
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in found
