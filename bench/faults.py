"""The faults injected into a running pipeline and whether each was survived: the table of
tests/localcloud/test_faults.py, one row per fault.

    python -m bench.faults        (make bench-faults; needs the test tools: make setup-dev)

Each scenario breaks one thing in a local cloud while the real pipeline runs (see that
module) and checks the end state a user relies on: the model answers correctly through the
HTTP API, a failed execution's cause is one readable sentence, the deployment lock is free,
and no process is left once the local cloud stops. Survived means every check passed.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import pytest

MODULE = Path(__file__).resolve().parents[1] / "tests" / "localcloud" / "test_faults.py"


class Table:
    """A pytest plugin that keeps each scenario's fault, outcome and duration."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, str]] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        failed_setup = report.when == "setup" and report.failed
        if report.when != "call" and not failed_setup:
            return
        item_doc = getattr(report, "fault", "") or report.nodeid.rsplit("::", 1)[-1]
        why = "" if report.passed else str(report.longrepr).strip().splitlines()[-1][:100]
        outcome = "survived" if report.passed else "NOT survived"
        self.rows.append((item_doc, outcome, report.duration, why))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: Any, call: Any) -> Any:
        outcome = yield
        doc = (item.function.__doc__ or "").strip()
        outcome.get_result().fault = doc.removeprefix("Fault: ").split("\n")[0]


def main() -> int:
    table = Table()
    began = time.monotonic()
    code = pytest.main(
        [str(MODULE), "-q", "-p", "no:cacheprovider", "--no-header"], plugins=[table]
    )
    print(
        f"\nFaults injected into the local pipeline ({platform.machine()}, "
        f"{platform.python_version()}), {time.monotonic() - began:.0f} s in all:\n"
    )
    width = max((len(row[0]) for row in table.rows), default=10)
    print(f"{'fault':<{width}}  {'end state':<12}  {'seconds':>7}")
    for fault, outcome, seconds, why in table.rows:
        print(f"{fault:<{width}}  {outcome:<12}  {seconds:7.1f}  {why}")
    survived = sum(1 for row in table.rows if row[1] == "survived")
    print(f"\n{survived} of {len(table.rows)} faults survived")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
