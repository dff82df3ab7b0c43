"""Fixtures of the end-to-end modules. test_pipeline_e2e and test_faults share one local cloud
(session scope) with the first model already deployed: one cloud start and one first training
for both. Modules that need a cloud of their own (another ApprovalMode, a fixture stack, an
account profile) define their own ``cloud``. And every moto server a test here starts
validates its requests as the local cloud's does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import traffic, validation
from localcloud.client import Connection
from localcloud.launcher import LocalCloudProcess
from tests.localcloud.pipeline_support import (
    SHARED_CLOUD_MODULES,
    deploy_first_model,
    local_cloud,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared cloud's modules run one after the other, in SHARED_CLOUD_MODULES' order
    (which their tests rely on), where the first of them would have run."""
    shared = [i for i in items if i.path.name in SHARED_CLOUD_MODULES]
    if not shared:
        return
    first = items.index(shared[0])
    rest = [i for i in items if i.path.name not in SHARED_CLOUD_MODULES]
    shared.sort(key=lambda i: SHARED_CLOUD_MODULES.index(i.path.name))  # stable: file order kept
    items[:] = rest[:first] + shared + rest[first:]


@pytest.fixture(scope="session", autouse=True)
def _validated_moto_servers() -> None:
    """A test's own moto server (``ThreadedMotoServer``) refuses what AWS refuses, as the
    local cloud's does: the suite's requests must be ones AWS accepts."""
    validation.install()


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloudProcess]:
    yield from local_cloud(tmp_path_factory.mktemp("e2e-cloud"))


@pytest.fixture(scope="session")
def conn(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


@pytest.fixture(scope="session")
def deployed(conn: Connection, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first, successful run: its execution and what it deployed."""
    return deploy_first_model(conn, tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="session")
def probes(deployed: dict[str, Any]) -> list[traffic.Probe]:
    """A cat and a dog of the first model's test set, each as JPEG and as PNG (the
    canary tests' traffic)."""
    test_dir = Path(deployed["image"]).parents[1]
    return traffic.probes([max((test_dir / label).iterdir()) for label in ("cat", "dog")])
