"""SageMaker's failure file: why a training job failed, shown as its FailureReason.

SageMaker reads ``/opt/ml/output/failure`` when the job ends; outside SageMaker there is
no such file and the log alone tells the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

FAILURE_MESSAGE_LIMIT = 1024  # SageMaker keeps this much of /opt/ml/output/failure


def failure_path() -> Path | None:
    """SageMaker's failure file (``/opt/ml/output/failure``), found as the parent of
    ``SM_OUTPUT_DATA_DIR``; None outside SageMaker."""
    output_data = os.environ.get("SM_OUTPUT_DATA_DIR")
    return Path(output_data).parent / "failure" if output_data else None


def write_failure(message: str) -> None:
    """Record why the job failed (SageMaker shows it as FailureReason). The first process
    to fail writes it: the others usually fail only because a peer went away."""
    path = failure_path()
    if path is None:
        return
    try:
        with path.open("x") as fh:
            fh.write(message[:FAILURE_MESSAGE_LIMIT])
    except OSError:
        pass  # written already, or no output directory: the log still has the message
