"""Training curves: per-epoch rows from log lines with the job's MetricDefinitions, drawn
as SVG (one marker per epoch per curve) and PNG."""

from __future__ import annotations

import json
import re
from pathlib import Path

from localcloud.console.plots import parse_epochs, render, write_png

REPO = Path(__file__).resolve().parents[3]
DEFINITIONS = json.loads((REPO / "training" / "metric_definitions.json").read_text())


def epoch_line(epoch: int, loss: float, acc: float) -> str:
    # the format of training/train.py's metric lines, as a host's log shows them
    return (
        f"2026-11-29 12:00:0{epoch} INFO train [metrics] epoch={epoch} train_loss={loss:.6f} "
        f"train_acc={acc:.6f} valid_loss={loss + 0.1:.6f} valid_acc={acc - 0.05:.6f}"
    )


LINES = [
    "Invoking script with the following command: python train.py --epochs 3",
    epoch_line(1, 0.9, 0.5),
    "saved checkpoint /opt/ml/checkpoints/checkpoint.pt (epoch 1)",
    epoch_line(2, 0.6, 0.7),
    epoch_line(2, 0.6, 0.7),  # a second host printed the same epoch
    epoch_line(3, 0.4, 0.85),
    "[final] valid_loss=0.500000 valid_acc=0.800000 test_loss=0.450000 test_acc=0.820000",
]


def test_one_row_per_epoch_and_the_last_value_of_every_metric() -> None:
    metrics = parse_epochs(LINES, DEFINITIONS)
    assert [row["epoch"] for row in metrics.rows] == [1, 2, 3]
    assert metrics.series("train_loss") == ([1, 2, 3], [0.9, 0.6, 0.4])
    assert metrics.series("valid_acc") == ([1, 2, 3], [0.45, 0.65, 0.8])
    assert metrics.names == ["train_loss", "train_acc", "valid_loss", "valid_acc"]
    assert metrics.final["test_acc"] == 0.82 and metrics.final["valid_acc"] == 0.8


def test_bad_or_captureless_regexes_are_skipped() -> None:
    definitions = [*DEFINITIONS, {"Name": "broken", "Regex": "("}, {"Name": "x", "Regex": "x="}]
    assert len(parse_epochs(LINES, definitions).rows) == 3


def test_svg_has_one_marker_per_epoch_on_every_curve() -> None:
    svg = render(parse_epochs(LINES, DEFINITIONS), "job-1 (Completed)", "svg").decode()
    for name in ("train_loss", "valid_loss", "train_acc", "valid_acc"):
        group = re.search(rf'<g id="curve-{name}">(.*?)</g>\s*</g>', svg, re.S)
        assert group is not None, name
        assert group[1].count("<use ") == 3, name
    assert "job-1 (Completed)" in svg  # text stays text
    assert "epoch" in svg


def test_a_job_without_epochs_yet_still_renders(tmp_path: Path) -> None:
    empty = parse_epochs(["starting"], DEFINITIONS)
    assert empty.rows == []
    assert b"no metrics yet" in render(empty, "job-0 (InProgress)", "svg")
    png = write_png(empty, "job-0", tmp_path / "plots" / "job-0.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(png.parent.iterdir()) == [png]  # no temporary file left
