"""Checkpoints: written every epoch, atomically, and resumed from (managed spot)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from imgcls import checkpoint
from tests.training.conftest import FAST_FLAGS, run_train


def _train(data: Path, base: Path, epochs: int, checkpoints: Path, *extra: str):
    result = run_train(
        [
            "--data-dir", str(data), "--model-dir", str(base / "model"),
            "--output-dir", str(base / "output"), "--checkpoint-dir", str(checkpoints),
            "--epochs", str(epochs), "--early-stopping-patience", "0", *FAST_FLAGS, *extra,
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def _lines(stdout: str, tag: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(tag)]


@pytest.fixture(scope="module")
def first_epoch(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 1-epoch run with checkpoints: (its stdout, the checkpoint dir). Copy it to change it."""
    base = tmp_path_factory.mktemp("first")
    result = _train(tiny_data, base, 1, base / "checkpoints")
    return result.stdout, base / "checkpoints"


def test_checkpoint_holds_the_full_state_as_plain_values(first_epoch) -> None:
    _, checkpoints = first_epoch
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint.pth"]  # no temp file left
    state = torch.load(checkpoints / "checkpoint.pth", weights_only=True)
    assert {
        "format", "epoch", "model", "optimizer", "best", "best_model",
        "epochs_without_improvement", "history", "arch", "classes", "args",
    } <= set(state)  # fmt: skip
    assert state["epoch"] == 1
    assert state["args"]["epochs"] == 1 and state["args"]["fine_tune"] == "all"
    assert state["classes"] == ["cat", "dog", "owl"]
    assert state["optimizer"]["state"]  # AdamW moments, needed to continue exactly


def test_a_resumed_run_continues_where_it_stopped(
    first_epoch, tiny_data: Path, tmp_path: Path
) -> None:
    first_stdout, saved = first_epoch
    checkpoints = shutil.copytree(saved, tmp_path / "checkpoints")
    assert [line.split()[1] for line in _lines(first_stdout, "[metrics]")] == ["epoch=1"]

    resumed = _train(tiny_data, tmp_path / "b", 2, checkpoints)
    assert re.search(
        r"resuming from the checkpoint in \S+: 1 epoch\(s\) done, continuing at epoch 2",
        resumed.stderr,
    )
    assert [line.split()[1] for line in _lines(resumed.stdout, "[metrics]")] == ["epoch=2"]

    # The same numbers as a run that was never interrupted.
    straight = _train(tiny_data, tmp_path / "c", 2, tmp_path / "other")
    assert _lines(resumed.stdout, "[metrics]") == _lines(straight.stdout, "[metrics]")[1:]
    assert _lines(resumed.stdout, "[final]") == _lines(straight.stdout, "[final]")
    state = checkpoint.load(checkpoints)
    assert state is not None and state["epoch"] == 2
    assert [row["epoch"] for row in state["history"]] == [1, 2]


def test_early_stopping_also_holds_after_a_resume(
    first_epoch, tiny_data: Path, tmp_path: Path
) -> None:
    _, saved = first_epoch
    checkpoints = tmp_path / "checkpoints"
    checkpoint.save(checkpoints, {**checkpoint.load(saved), "epochs_without_improvement": 2})
    result = _train(tiny_data, tmp_path / "b", 5, checkpoints, "--early-stopping-patience", "2")
    assert "early stop: no better valid accuracy for 2 epochs" in result.stderr
    assert not _lines(result.stdout, "[metrics]")
    assert len(_lines(result.stdout, "[final]")) == 1
    assert (tmp_path / "b" / "model" / "model.json").is_file()


def test_a_checkpoint_for_other_classes_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoint.save(checkpoints, {"arch": "resnet18", "classes": ["ant", "bee"]})
    result = run_train(
        ["--data-dir", str(tiny_data), "--model-dir", str(tmp_path / "m"),
         "--checkpoint-dir", str(checkpoints), *FAST_FLAGS]
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "was written for resnet18 on 2 classes ['ant', 'bee'], not for" in result.stderr
    assert "this run's resnet18 on 3 classes ['cat', 'dog', 'owl']" in result.stderr
    assert "choose another --checkpoint-dir" in result.stderr
    assert not (tmp_path / "m").exists()


def test_save_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint.save(tmp_path, {"epoch": 1})

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, {"epoch": 2})
    assert checkpoint.load(tmp_path)["epoch"] == 1  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]
