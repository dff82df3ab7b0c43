"""The console's tuning job page: the trials with their hyperparameters, status and
objective, and the objective over the trials as a plot, from a tuning job of the local
SageMaker served by a moto server in this process."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import localcloud.services.sagemaker as local_sagemaker
from localcloud.console.page_server import Console
from localcloud.runtime.connection import CREDENTIALS
from tests.localcloud.sagemaker_support import REGION, assert_no_new_children, children
from tests.localcloud.tuning_support import ACT, tuning_request, upload_script, wait_tuning
from tests.moto_support import moto_server


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Console, Any]]:
    before = children()
    with moto_server() as url:
        local_sagemaker.install(tmp_path / "state")
        console = Console(url, REGION, state_dir=tmp_path / "state")
        console.start()
        try:
            client = {"endpoint_url": url, "region_name": REGION, **CREDENTIALS}
            upload_script(boto3.client("s3", **client))
            yield console, boto3.client("sagemaker", **client)
        finally:
            console.stop()
            local_sagemaker.uninstall()
    assert_no_new_children(before)


def get(console: Console, path: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(console.url + path, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_a_tuning_job_shows_its_trials_and_the_objective_over_them(
    console: tuple[Console, Any],
) -> None:
    page, sagemaker = console
    ranges = {"CategoricalParameterRanges": [ACT]}
    sagemaker.create_hyper_parameter_tuning_job(
        **tuning_request("tune-page", "Grid", None, 2, ranges)
    )
    wait_tuning(sagemaker, "tune-page")
    _, _, body = get(page, "/api/tuning-jobs")
    [listed] = json.loads(body)
    assert (listed["name"], listed["status"], listed["strategy"]) == (
        "tune-page",
        "Completed",
        "Grid",
    )
    _, _, body = get(page, "/api/tuning-jobs/tune-page")
    job = json.loads(body)
    assert job["objective"] == {"Type": "Maximize", "MetricName": "valid_acc"}
    tried = {t["hyperparameters"]["act"]: t for t in job["trials"]}
    assert set(tried) == {"relu", "tanh"}
    assert tried["relu"]["best"] and not tried["tanh"]["best"]
    assert tried["relu"]["objective"] > tried["tanh"]["objective"]
    assert all(t["status"] == "Completed" for t in job["trials"])
    status, kind, svg = get(page, "/api/tuning-jobs/tune-page/plot.svg")
    assert (status, kind) == (200, "image/svg+xml")
    assert b'id="trial-objective"' in svg and b'id="trial-best"' in svg
