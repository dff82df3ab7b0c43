"""Where the time of ``python -m localcloud run`` goes: training, endpoint start, smoke test
and orchestration (everything else), on a fresh state directory.

    python -m bench.pipeline [--parameter NAME=VALUE ...] [--keep-state DIR]

Training is the training job's own start to end (its hosts running train.py, model
upload); endpoint start is from the deploy call returning to the endpoint turning
InService; smoke test is its state's duration. Orchestration is the rest of the wall time:
starting and stopping the local cloud, writing and uploading the data, Lambda calls, the
state machine's polling delays and the final classification. Goal: orchestration < 10%.
The orchestration is then broken down into its parts, in the order they were spent
(localcloud.runner.report.orchestration_parts); what they do not cover (the states' own Lambda
calls between those marks, clock granularity) is the "rest" line. The load average is
printed: other work on the same cores stretches every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from localcloud.runner.pipeline_run import RunOutcome, run_pipeline
from localcloud.runner.report import Timings
from localcloud.runtime.settings import add_settings_arguments, settings_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    add_settings_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="print the figures only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        if args.state_dir == parser.get_default("state_dir"):
            args.state_dir = Path(tmp)  # a fresh run, as after a clone
        settings = settings_from_args(args)
        load_before = os.getloadavg()
        began = time.monotonic()
        outcome = run_pipeline(settings, out=(lambda _: None) if args.quiet else print)
        total = time.monotonic() - began
    load_after = os.getloadavg()
    t = outcome.timings
    spent = Timings(total, t.training, t.endpoint, t.smoke_test)
    print()
    machine = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    print(f"bench.pipeline: {machine}, {threads} torch threads, python {platform.python_version()}")
    right, tried = outcome.classified
    print(f"execution {outcome.description['status']}, classified {right}/{tried} correctly")
    rows = [
        ("training", spent.training),
        ("endpoint start", spent.endpoint),
        ("smoke test", spent.smoke_test),
        ("orchestration", spent.orchestration),
        ("total (wall)", spent.total),
    ]
    for name, seconds in rows:
        print(f"  {name:<15} {seconds:7.1f} s  {100 * seconds / spent.total:5.1f}%")
    goal = "met" if spent.orchestration < 0.1 * spent.total else "NOT met"
    print(f"goal: orchestration < 10% of the wall time: {goal}")
    if outcome.parts:
        print("orchestration, part by part:")
        parts = list(outcome.parts)
        parts.append(("stop", max(0.0, total - _run_seconds(outcome))))
        parts.append(("rest", spent.orchestration - sum(seconds for _, seconds in parts)))
        for name, seconds in parts:
            print(f"  {name:<48} {seconds:6.1f} s")
    print(
        "load average (1 min) before/after: "
        f"{load_before[0]:.1f}/{load_after[0]:.1f} on {os.cpu_count()} CPUs"
    )
    return 0 if outcome.succeeded else 1


def _run_seconds(outcome: RunOutcome) -> float:
    """Seconds from the run's start to its summary (the rest of the wall time: stop)."""
    marks = outcome.marks
    return (marks["summarised"] - marks["began"]).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
