"""The quality gates: a model is deployed only if it is good enough and no worse than the live one.

1. The absolute gate: the validation accuracy (``gate.metric``) reaches ``gate.min_value``.
2. The champion gate: when the training job was given the live model (the ``champion``
   channel), train.py evaluated both on the same held-out test split of the new data set;
   the candidate's ``test_acc`` must reach the champion's ``champion_test_acc`` minus
   ``gate.champion_margin``. Without a champion (the first model), or with a champion this
   data set cannot score (``champion_comparable`` 0: other classes, an empty test split),
   the absolute gate decides and the reason says so. A champion given but not scored (it
   could not be loaded: a corrupt or unreadable artifact) fails the gate, unless
   ``gate.champion_load_failure`` is ``pass`` (the stack's ``ChampionLoadFailure``): then
   the absolute gate decides and the reason and ``champion.status`` say so.
3. At deploy time, under the deployment lock: if another model went live after the
   candidate was gated, ``against_live`` compares it with that one (DeployModel refuses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

TEST_METRIC = "test_acc"
CHAMPION_METRIC = "champion_test_acc"
COMPARABLE_METRIC = "champion_comparable"
LOAD_FAILURE_ACTIONS = ("fail", "pass")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def evaluate_gate(
    metrics: Mapping[str, float],
    gate: Mapping[str, Any],
    job_name: str,
    champion: str | None = None,
) -> dict[str, Any]:
    """``passed`` and a ``reason`` naming the numbers (the execution's cause on failure).

    ``champion`` is the live model's artifact the job was given (None: no champion).
    """
    metric, threshold = gate["metric"], float(gate["min_value"])
    value = metrics.get(metric)
    result: dict[str, Any] = {
        "passed": False,
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "champion": _champion_fields(metrics, gate, champion),
    }
    if value is None or not _finite(value):
        reported = ", ".join(sorted(metrics)) or "none"
        result["reason"] = (
            f"training job {job_name} reported no {metric} metric (reported: {reported}); "
            "check train.py's [final] line against metric_definitions.json"
        )
        result["value"] = None
        return result
    name = metric.replace("valid_acc", "validation accuracy")
    if float(value) < threshold:
        result["reason"] = f"{name} {value:.4g} is below the required {threshold:.4g}"
        return result
    absolute = f"{name} {value:.4g} reaches the required {threshold:.4g}"
    passed, comparison = _compare(
        metrics, result["champion"], job_name, gate.get("champion_load_failure", "fail")
    )
    result.update(passed=passed, reason=f"{absolute}; {comparison}" if passed else comparison)
    return result


def _champion_fields(
    metrics: Mapping[str, float], gate: Mapping[str, Any], champion: str | None
) -> dict[str, Any]:
    score = metrics.get(CHAMPION_METRIC)
    return {
        "model_artifact": champion,
        "test_acc": float(score) if champion and _finite(score) else None,
        "candidate_test_acc": float(metrics[TEST_METRIC])
        if _finite(metrics.get(TEST_METRIC))
        else None,
        "margin": float(gate.get("champion_margin", 0.0)),
        "compared": False,
        "status": "none",
    }


def _compare(
    metrics: Mapping[str, float], champion: dict[str, Any], job_name: str, on_load_failure: str
) -> tuple[bool, str]:
    """(passed, what the champion comparison found); ``champion["status"]`` says which:
    ``none``, ``not_comparable``, ``load_failed``, ``compared``."""
    if not champion["model_artifact"]:
        return True, "no live model to compare with (first model): passed on the absolute gate"
    if champion["test_acc"] is None:
        return _not_scored(metrics, champion, job_name, on_load_failure)
    candidate = champion["candidate_test_acc"]
    if candidate is None:
        return False, (
            f"training job {job_name} reported no {TEST_METRIC} metric, so it cannot be "
            "compared with the live model"
        )
    champion.update(compared=True, status="compared")
    floor = champion["test_acc"] - champion["margin"]
    numbers = (
        f"test accuracy {candidate:.4g} against the live model's {champion['test_acc']:.4g} "
        f"on the same test split (margin {champion['margin']:.4g})"
    )
    if candidate >= floor:
        return True, f"not worse than the live model: {numbers}"
    return False, f"worse than the live model: {numbers}"


def _not_scored(
    metrics: Mapping[str, float], champion: dict[str, Any], job_name: str, on_load_failure: str
) -> tuple[bool, str]:
    live = champion["model_artifact"]
    if metrics.get(COMPARABLE_METRIC) == 0:
        champion["status"] = "not_comparable"
        return True, (
            f"the live model {live} cannot be scored on this data set's test split (other "
            "classes, or an empty split): passed on the absolute gate"
        )
    champion["status"] = "load_failed"
    failure = (
        f"the live model {live} was given to training job {job_name} but not scored (it "
        "could not be loaded: see the job's [champion] log line)"
    )
    if on_load_failure == "pass":
        return True, f"{failure}: passed on the absolute gate, as ChampionLoadFailure=pass allows"
    return False, (
        f"{failure}, so the candidate cannot be compared with it; fix or replace the live "
        "model, or set ChampionLoadFailure=pass to deploy on the absolute gate alone"
    )


def against_live(
    candidate: Mapping[str, str], live: Mapping[str, Any], gate: Mapping[str, Any]
) -> str | None:
    """Why a candidate must not replace ``live``, a model that went live after the candidate
    was gated (None: it may). Both are registry versions' metadata (``metric_test_acc``);
    the same-split comparison the gate made is no longer possible (the candidate's job
    scored another champion), so their recorded test accuracies are compared, each on its
    own data set's test split, with the same margin. A missing one refuses, unless
    ``champion_load_failure`` is ``pass`` (as for a champion that cannot be loaded)."""
    artifact = live["model_artifact"]
    theirs, ours = _recorded(live.get("metadata") or {}), _recorded(candidate)
    gated = candidate.get("champion_model") or "none"
    if theirs is None or ours is None:
        if gate.get("champion_load_failure") == "pass":
            return None
        return (
            f"the live model {artifact} went live after this model was gated (against "
            f"{gated}) and the two have no recorded test accuracies to compare; set "
            "ChampionLoadFailure=pass to deploy on the absolute gate alone"
        )
    margin = float(gate.get("champion_margin", 0.0))
    if ours >= theirs - margin:
        return None
    return (
        f"the live model {artifact} is better: test accuracy {theirs:.4g} against this "
        f"model's {ours:.4g} (each on its own test split, margin {margin:.4g}); it went live "
        f"after this model was gated against {gated}"
    )


def _recorded(metadata: Mapping[str, Any]) -> float | None:
    """A version's recorded test accuracy (None: none, or not a number)."""
    try:
        value = float(metadata.get(f"metric_{TEST_METRIC}", "nan"))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
