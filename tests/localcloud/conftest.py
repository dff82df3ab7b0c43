"""Fixtures of the end-to-end modules. test_pipeline_e2e and test_faults share one local cloud
(session scope, stopped after their last test) with the first model already deployed: one
cloud start and one first training for both. Modules that need a cloud of their own (another
ApprovalMode, a fixture stack, an account profile) define their own ``cloud``. And every moto
server a test here starts validates its requests as the local cloud's does."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud import validation
from localcloud.cli import probe_traffic
from localcloud.runtime.connection import Connection
from localcloud.runtime.launcher import LocalCloudProcess
from tests.localcloud.pipeline_support import (
    SHARED_CLOUD_MODULES,
    deploy_first_model,
    local_cloud,
)

# The shared cloud once started: stopped after the last test of SHARED_CLOUD_MODULES.
_shared_cloud = contextlib.ExitStack()


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
def cloud(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> LocalCloudProcess:
    request.addfinalizer(_shared_cloud.close)  # a run cut short stops it at the session's end
    started = contextlib.contextmanager(local_cloud)(tmp_path_factory.mktemp("e2e-cloud"))
    return _shared_cloud.enter_context(started)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop the shared cloud after its modules' last test, not at the session's end: the
    modules after them would find its processes among their own children."""
    yield
    if item.path.name in SHARED_CLOUD_MODULES and (
        nextitem is None or nextitem.path.name not in SHARED_CLOUD_MODULES
    ):
        _shared_cloud.close()


@pytest.fixture(scope="session")
def conn(cloud: LocalCloudProcess) -> Connection:
    assert cloud.connection is not None
    return cloud.connection


@pytest.fixture(scope="session")
def deployed(conn: Connection, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first, successful run: its execution and what it deployed."""
    return deploy_first_model(conn, tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="session")
def probes(deployed: dict[str, Any]) -> list[probe_traffic.Probe]:
    """A cat and a dog of the first model's test set, each as JPEG and as PNG (the
    canary tests' traffic)."""
    test_dir = Path(deployed["image"]).parents[1]
    return probe_traffic.probes([max((test_dir / label).iterdir()) for label in ("cat", "dog")])
