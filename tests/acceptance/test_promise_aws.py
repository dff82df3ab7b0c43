"""The acceptance test on a real account: `make verify-aws` deploys a new stack and runs this
with VERIFY_TARGET=aws and VERIFY_STACK=<stack> (tools/verify_aws.py), then deletes it all.

The sample digits (``python -m training.sample_data``) are uploaded to the stack's bucket,
the execution the upload starts is followed to its end, and tests/acceptance/promise.py's
checks run. Locally the same checks run on the local cloud's first run, in
tests/localcloud/test_pipeline_e2e.py (one local cloud and one first training for both).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.acceptance import promise
from training.sample_data import make_archive, write_digits

pytestmark = pytest.mark.skipif(
    os.environ.get("VERIFY_TARGET") != "aws",
    reason="runs on AWS through `make verify-aws` (VERIFY_TARGET=aws); locally the same "
    "checks are test_pipeline_e2e's first test",
)
RUN_TIMEOUT_S = 3600  # the DLC's start, training on two hosts, a new endpoint
POLL_S = 15
RESIZE_S = 1200  # a scale-out that the run's traffic started: new instances, minutes


def test_an_upload_to_a_new_stack_trains_deploys_and_serves(tmp_path: Path) -> None:
    target = promise.target_from_environment(os.environ)
    data = tmp_path / "digits"
    write_digits(data)
    archive = make_archive(data, tmp_path / "digits.tar.gz", top_folder="digits")
    description = promise.first_run(
        target, archive, "datasets/digits.tar.gz", RUN_TIMEOUT_S, interval=POLL_S
    )
    promise.assert_promise(
        target,
        description,
        promise.held_out(data / "test"),
        min_accuracy=float(target.parameters["SmokeTestMinAccuracy"]),
        settle_s=RESIZE_S,
    )
