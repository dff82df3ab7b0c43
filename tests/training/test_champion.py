"""The champion channel: the live model scored on the candidate's test split."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from imgcls import champion
from imgcls.data import DataSplits, scan
from tests.training.conftest import FAST_FLAGS, REPO, run_train

METRIC_DEFINITIONS = json.loads((REPO / "training" / "metric_definitions.json").read_text())


@pytest.fixture(scope="module")
def live_model(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the tiny data set, packed as SageMaker packs it (model.tar.gz)."""
    base = tmp_path_factory.mktemp("champion")
    result = run_train(
        ["--data-dir", str(tiny_data), "--model-dir", str(base / "model"),
         "--output-dir", str(base / "output"), "--epochs", "1", *FAST_FLAGS]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    channel = base / "channel"
    channel.mkdir()
    with tarfile.open(channel / "model.tar.gz", "w:gz") as tar:
        for path in sorted((base / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return channel


def test_the_champion_is_scored_on_the_test_split_before_the_final_line(
    tiny_data: Path, live_model: Path, tmp_path: Path
) -> None:
    result = run_train(
        ["--data-dir", str(tiny_data), "--model-dir", str(tmp_path / "model"),
         "--output-dir", str(tmp_path / "output"), "--epochs", "1", *FAST_FLAGS],
        env={"SM_CHANNEL_CHAMPION": str(live_model)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"\[champion\] champion_acc=[0-9.]+ images=12", lines[-2])
    assert lines[-1].startswith("[final] ")
    log = result.stdout + result.stderr
    found = {d["Name"]: re.findall(d["Regex"], log) for d in METRIC_DEFINITIONS}
    assert found["champion_test_acc"] == [lines[-2].split("=")[1].split()[0]]
    # the champion's line is no test_acc value: the candidate's stays the [final] one
    assert found["test_acc"] == [lines[-1].split("test_acc=")[1]]


def test_a_champion_with_other_classes_is_not_compared(
    tiny_data: Path, live_model: Path, tmp_path: Path
) -> None:
    splits: DataSplits = scan(tiny_data)
    score = champion.evaluate(live_model, splits.samples["test"], ["cat", "dog", "emu"], tmp_path)
    assert score.accuracy is None
    assert score.line() == (
        "[champion] champion_comparable=0 not compared: the champion was trained on other classes"
    )
    found = {d["Name"]: re.findall(d["Regex"], score.line()) for d in METRIC_DEFINITIONS}
    assert (found["champion_comparable"], found["champion_test_acc"]) == (["0"], [])


def test_a_champion_on_the_same_classes_gets_a_number(
    tiny_data: Path, live_model: Path, tmp_path: Path
) -> None:
    splits = scan(tiny_data)
    score = champion.evaluate(live_model, splits.samples["test"], splits.classes, tmp_path)
    assert score.accuracy is not None and 0.0 <= score.accuracy <= 1.0
    assert score.images == len(splits.samples["test"])


def test_an_unreadable_champion_is_not_compared(tmp_path: Path) -> None:
    (tmp_path / "channel").mkdir()
    score = champion.evaluate(tmp_path / "channel", [], ["a"], tmp_path)
    assert score.accuracy is None
    assert "holds no model.tar.gz" in score.reason
    # A load failure is no "cannot be compared": neither metric, so the gate fails closed.
    assert score.line().startswith("[champion] not scored: ")
    found = {d["Name"]: re.findall(d["Regex"], score.line()) for d in METRIC_DEFINITIONS}
    assert (found["champion_comparable"], found["champion_test_acc"]) == ([], [])
