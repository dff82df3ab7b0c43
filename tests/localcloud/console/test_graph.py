"""The execution graph: every state and transition of an ASL definition, laid out without
overlaps, coloured by the execution history."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest

from localcloud.console.graph import DefinitionError, edges_of, execution_graph
from localcloud.runner.execution_history import build_view

REPO = Path(__file__).resolve().parents[3]
T0 = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)

DEFINITION = {
    "StartAt": "Work",
    "States": {
        "Work": {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:work",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Cleanup"}],
            "Next": "Done?",
        },
        "Done?": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.done", "BooleanEquals": True, "Next": "Finish"},
                {
                    "Or": [
                        {"Variable": "$.status", "StringEquals": "Failed"},
                        {"Not": {"Variable": "$.n", "NumericLessThan": 3}},
                    ],
                    "Next": "Broken",
                },
            ],
            "Default": "Wait",
        },
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Work"},
        "Finish": {"Type": "Pass", "End": True},
        "Cleanup": {"Type": "Pass", "Next": "Broken"},
        "Broken": {"Type": "Fail", "Error": "Broken", "Cause": "it broke"},
    },
}


def real_definition() -> dict[str, Any]:
    """The project's state machine, with its ${...} substitutions filled in."""
    raw = (REPO / "statemachine" / "train_deploy.asl.json").read_text()
    return json.loads(re.sub(r"\$\{\w+\}", "1", raw))


def event(n: int, kind: str, **details: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"id": n, "type": kind, "timestamp": T0 + datetime.timedelta(seconds=n)}
    if kind.endswith("StateEntered"):
        e["stateEnteredEventDetails"] = details
    elif kind.endswith("StateExited"):
        e["stateExitedEventDetails"] = details
    elif details:
        e[kind[0].lower() + kind[1:] + "EventDetails"] = details
    return e


def test_every_transition_has_its_kind_and_choice_rules_read_as_conditions() -> None:
    nodes, edges = edges_of(DEFINITION)
    assert [n.name for n in nodes] == ["__start__", *DEFINITION["States"], "__end__"]
    triples = {(e.source, e.target, e.kind) for e in edges}
    assert triples == {
        ("__start__", "Work", "start"),
        ("Work", "Done?", "next"),
        ("Work", "Cleanup", "catch"),
        ("Done?", "Finish", "choice"),
        ("Done?", "Broken", "choice"),
        ("Done?", "Wait", "default"),
        ("Wait", "Work", "next"),
        ("Finish", "__end__", "end"),
        ("Cleanup", "Broken", "next"),
    }
    labels = {e.target: e.label for e in edges if e.source == "Done?"}
    assert labels["Finish"] == "$.done == true"
    assert labels["Broken"] == '($.status == "Failed" or not $.n < 3)'
    assert next(e.label for e in edges if e.kind == "catch") == "catch States.ALL"


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"States": {}}, "no States"),
        ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}, "Nowhere"),
    ],
)
def test_a_definition_that_cannot_be_drawn_says_why(
    definition: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        edges_of(definition)


def boxes_overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        abs(a["x"] - b["x"]) * 2 < a["width"] + b["width"]
        and abs(a["y"] - b["y"]) * 2 < a["height"] + b["height"]
    )


@pytest.mark.parametrize("definition", [DEFINITION, real_definition()], ids=["small", "real"])
def test_layout_places_every_state_without_overlaps_and_routes_every_edge(
    definition: dict[str, Any],
) -> None:
    drawn = execution_graph(definition)
    nodes = drawn["nodes"]
    assert {n["name"] for n in nodes} >= set(definition["States"])
    for i, a in enumerate(nodes):
        assert a["x"] - a["width"] / 2 >= 0 and a["x"] + a["width"] / 2 <= drawn["width"]
        assert a["y"] - a["height"] / 2 >= 0 and a["y"] + a["height"] / 2 <= drawn["height"]
        for b in nodes[i + 1 :]:
            assert not boxes_overlap(a, b), (a["name"], b["name"])
    where = {n["name"]: n for n in nodes}
    for edge in drawn["edges"]:
        assert len(edge["points"]) >= 2, edge
        # the route starts at its source and ends at its target (on or near their boxes)
        for end, name in (
            (edge["points"][0], edge["source"]),
            (edge["points"][-1], edge["target"]),
        ):
            box = where[name]
            assert abs(end[0] - box["x"]) <= box["width"] / 2 + 1, (edge, end)
            assert abs(end[1] - box["y"]) <= box["height"] / 2 + 1, (edge, end)
    # the flow goes down: the start is on top, forward transitions lead downwards
    assert where["__start__"]["y"] == min(n["y"] for n in nodes)


def test_history_colours_states_and_marks_the_transitions_taken() -> None:
    events = [
        event(1, "ExecutionStarted"),
        event(2, "TaskStateEntered", name="Work", input="{}"),
        event(3, "TaskStateExited", name="Work", output="{}"),
        event(4, "ChoiceStateEntered", name="Done?", input="{}"),
        event(5, "ChoiceStateExited", name="Done?", output="{}"),
        event(6, "WaitStateEntered", name="Wait", input="{}"),
        event(7, "WaitStateExited", name="Wait", output="{}"),
        event(8, "TaskStateEntered", name="Work", input="{}"),
        event(9, "TaskFailed", error="Boom", cause="it failed"),
        event(10, "TaskStateExited", name="Work", output="{}"),
        event(11, "PassStateEntered", name="Cleanup", input="{}"),
        event(12, "PassStateExited", name="Cleanup", output="{}"),
        event(13, "FailStateEntered", name="Broken", input="{}"),
        event(14, "ExecutionFailed", error="Broken", cause="it broke"),
    ]
    view = build_view(events, {"name": "x", "status": "FAILED", "startDate": T0})
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "Entered" in e["type"]]
    drawn = execution_graph(DEFINITION, view.states, entered, "FAILED")
    status = {n["name"]: n["status"] for n in drawn["nodes"]}
    assert status == {
        "__start__": "succeeded",
        "Work": "caught",
        "Done?": "succeeded",
        "Wait": "succeeded",
        "Cleanup": "succeeded",
        "Broken": "failed",
        "Finish": "not-reached",
        "__end__": "not-reached",
    }
    taken = {(e["source"], e["target"]) for e in drawn["edges"] if e["taken"]}
    assert taken == {
        ("__start__", "Work"),
        ("Work", "Done?"),
        ("Done?", "Wait"),
        ("Wait", "Work"),
        ("Work", "Cleanup"),
        ("Cleanup", "Broken"),
    }


def test_a_state_in_progress_is_running_and_the_rest_not_reached() -> None:
    events = [
        event(1, "ExecutionStarted"),
        event(2, "TaskStateEntered", name="Work", input="{}"),
        event(3, "TaskScheduled"),
    ]
    view = build_view(events, {"name": "x", "status": "RUNNING", "startDate": T0})
    drawn = execution_graph(DEFINITION, view.states, ["Work"], "RUNNING")
    status = {n["name"]: n["status"] for n in drawn["nodes"]}
    assert status["Work"] == "running"
    assert {status[n] for n in ("Done?", "Wait", "Finish", "Cleanup", "Broken", "__end__")} == {
        "not-reached"
    }
