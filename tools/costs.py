"""What AWS usage costs, from the small dated price table beside this module (prices.json:
us-east-1 on-demand list prices, its sources and the date they were recorded).

``make verify-aws`` prints an estimate from it before it deploys anything; a run's own
cost can be priced from the same table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES = Path(__file__).with_name("prices.json")


class UnknownPrice(ValueError):
    """The table has no price for an instance type (one line, naming the file to extend)."""


@dataclass(frozen=True)
class Prices:
    table: dict[str, Any]

    @classmethod
    def load(cls, path: Path = PRICES) -> Prices:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    @property
    def caption(self) -> str:
        t = self.table
        return f"{t['region']} on-demand list prices in {t['currency']}, recorded {t['recorded']}"

    def hourly(self, kind: str, instance_type: str) -> float:
        """``kind`` is "training" or "hosting"."""
        rates = self.table[f"sagemaker_{kind}_per_hour"]
        if instance_type not in rates:
            raise UnknownPrice(
                f"no {kind} price for {instance_type} in tools/{PRICES.name} "
                f"(known: {', '.join(sorted(rates))}): add it with its source"
            )
        return float(rates[instance_type])


@dataclass(frozen=True)
class Usage:
    """What a run uses: instance-minutes per SageMaker fleet, Lambda and Step Functions."""

    training_instance_type: str
    training_instances: int
    training_minutes: float
    endpoint_instance_type: str
    endpoint_instances: int
    endpoint_minutes: float
    lambda_gb_seconds: float
    lambda_requests: int
    state_transitions: int


def estimate(usage: Usage, prices: Prices) -> list[tuple[str, float]]:
    """One (what, dollars) line per meter; no endpoint line for a usage without endpoint
    minutes (a run's own cost: its endpoint is priced per hour instead)."""
    u, t = usage, prices.table
    train = prices.hourly("training", u.training_instance_type)
    lines = [
        (
            f"training: {u.training_instances} x {u.training_instance_type} "
            f"x {u.training_minutes:g} min at ${train}/h",
            u.training_instances * u.training_minutes / 60 * train,
        )
    ]
    if u.endpoint_minutes:
        host = prices.hourly("hosting", u.endpoint_instance_type)
        lines.append(
            (
                f"endpoint: {u.endpoint_instances} x {u.endpoint_instance_type} "
                f"x {u.endpoint_minutes:g} min at ${host}/h",
                u.endpoint_instances * u.endpoint_minutes / 60 * host,
            )
        )
    return [
        *lines,
        (
            f"Lambda: {u.lambda_requests} requests, {u.lambda_gb_seconds:g} GB-s",
            u.lambda_gb_seconds * t["lambda_per_gb_second"]
            + u.lambda_requests / 1e6 * t["lambda_per_million_requests"],
        ),
        (
            f"Step Functions: {u.state_transitions} state transitions",
            u.state_transitions / 1000 * t["stepfunctions_per_thousand_transitions"],
        ),
    ]


def render(lines: list[tuple[str, float]], prices: Prices) -> str:
    width = max(len(what) for what, _ in lines)
    rows = [f"  {what:<{width}}  ${cost:.2f}" for what, cost in lines]
    total = sum(cost for _, cost in lines)
    return "\n".join(
        [*rows, f"  {'total':<{width}}  ${total:.2f}", f"  ({prices.caption}; tools/{PRICES.name})"]
    )
