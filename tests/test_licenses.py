"""The licences we depend on: every one allowed (or accepted for a stated use),
THIRD_PARTY.md what the installed packages say, and the AGPL IAM evaluator kept out of
everything that ships to AWS."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud.cloudformation import yaml_loader
from tools import licenses

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dependencies() -> list[licenses.Dependency]:
    return licenses.python_dependencies() + licenses.node_dependencies()


def test_every_licence_is_allowed_or_accepted(dependencies: list[licenses.Dependency]) -> None:
    assert len(dependencies) > 100
    refused = [f"{d.name} {d.version}: {d.licence}" for d in dependencies if not d.allowed]
    assert refused == []


def test_a_licence_outside_the_list_is_refused() -> None:
    assert not licenses.Dependency("x", "1", "AGPL-3.0-only", "runtime").allowed
    assert not licenses.Dependency("x", "1", "UNKNOWN", "runtime").allowed
    assert not licenses.Dependency("x", "1", "GPL-3.0-only AND MIT", "runtime").allowed
    assert licenses.Dependency("x", "1", "GPL-2.0-only OR EPL-1.0", "runtime").allowed


def test_third_party_md_is_what_the_packages_say(dependencies: list[licenses.Dependency]) -> None:
    assert (REPO / "THIRD_PARTY.md").read_text() == licenses.render(dependencies), (
        "run `make licenses`"
    )


def test_the_iam_evaluator_ships_in_nothing_built_for_aws() -> None:
    """Lambda packages and layers are built from their CodeUri/ContentUri folders, model
    artifacts from training/ (inference.py and imgcls/): none holds node packages."""
    template = yaml_loader.load(REPO / "template.yaml")
    sources = {
        str(resource["Properties"][key])
        for resource in template["Resources"].values()
        for key in ("CodeUri", "ContentUri")
        if isinstance(resource.get("Properties", {}).get(key), str)
    }
    assert len(sources) > 10 and "training/" in sources  # every function, both layers
    for source in sorted(sources):
        folder = REPO / source
        assert folder.is_dir(), source
        shipped = {p.relative_to(REPO).as_posix() for p in folder.rglob("*")}
        assert not any("node_modules" in p or "cloud-copilot" in p for p in shipped), source
        assert not any(p.endswith((".mjs", ".js")) for p in shipped), source
