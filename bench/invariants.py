"""A long random budget of the stateful test of the deployment's invariants
(tests/localcloud/test_invariants.py runs a fixed-seed 50): how many sequences and steps
were checked, and the first violation found, shrunk to its shortest sequence.

    python -m bench.invariants [--sequences N] [--steps N]
    (make bench-invariants; needs the test tools: make setup-dev)

Each sequence is a fresh deployment in this process (tests/localcloud/invariants_*.py):
uploads, re-delivered events, approvals, ApprovalMode switches, faults injected at Task
states, stops, killed model servers, worse, failing and corrupt models, with every invariant
of docs/architecture.md checked after each step.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

REPO = Path(__file__).resolve().parents[1]
# what pytest's pythonpath (pyproject.toml) gives the tests: the layer's mlops, training
sys.path[:0] = [str(REPO / "layers" / "common"), str(REPO / "training")]

from tests.localcloud.invariants_steps import OPEN_FINDINGS, Deployment  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.invariants", description=__doc__)
    parser.add_argument("--sequences", type=int, default=500, help="sequences to generate")
    parser.add_argument("--steps", type=int, default=8, help="most steps per sequence")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # moto logs every failed execution's state at ERROR
    options = settings(
        max_examples=args.sequences,
        stateful_step_count=args.steps,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    Deployment.tolerate = OPEN_FINDINGS
    if OPEN_FINDINGS:
        print(f"not checked while their findings are open: {', '.join(sorted(OPEN_FINDINGS))}")
    began = time.monotonic()
    violation = None
    try:
        run_state_machine_as_test(Deployment, settings=options)
    except AssertionError as exc:
        violation = str(exc)
    counts = Deployment.checked
    print(
        f"\nInvariants ({platform.machine()}, {platform.python_version()}): "
        f"{counts['sequences']} sequences, {counts['steps']} steps checked "
        f"in {time.monotonic() - began:.0f} s"
    )
    if violation is None:
        print("no violation found")
        return 0
    print(f"violation (its shrunk sequence is printed above):\n  {violation}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
