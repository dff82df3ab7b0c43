"""Fixtures of the end-to-end modules: each module gets its own local cloud (module scope),
with the first model already deployed. And every moto server a test here starts validates
its requests as the local cloud's does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import traffic, validation
from localcloud.client import Connection
from localcloud.launcher import LocalCloudProcess
from tests.localcloud.pipeline_support import deploy_first_model, local_cloud


@pytest.fixture(scope="session", autouse=True)
def _validated_moto_servers() -> None:
    """A test's own moto server (``ThreadedMotoServer``) refuses what AWS refuses, as the
    local cloud's does: the suite's requests must be ones AWS accepts."""
    validation.install()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    yield from local_cloud(tmp_path_factory.mktemp("e2e-cloud"))


@pytest.fixture(scope="module")
def conn(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


@pytest.fixture(scope="module")
def deployed(conn: Connection, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first, successful run: its execution and what it deployed."""
    return deploy_first_model(conn, tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def probes(deployed: dict[str, Any]) -> list[traffic.Probe]:
    """A cat and a dog of the first model's test set, each as JPEG and as PNG (the
    canary tests' traffic)."""
    test_dir = Path(deployed["image"]).parents[1]
    return traffic.probes([max((test_dir / label).iterdir()) for label in ("cat", "dog")])
