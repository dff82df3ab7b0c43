"""The champion: the live model, evaluated on the candidate's held-out test split.

The pipeline gives the training job the live model's ``model.tar.gz`` as the ``champion``
channel (``SM_CHANNEL_CHAMPION``). After training, rank 0 scores it on the same test
images the candidate was scored on, with the champion's own preprocessing (its image size
may differ), and prints ``[champion] champion_acc=...``; the job's ``champion_test_acc``
metric (metric_definitions.json) and the pipeline's champion gate read that line. A
champion trained on other classes cannot be compared: the line says so with
``champion_comparable=0`` (the job's ``champion_comparable`` metric) and the gate decides on
the absolute threshold. A champion that cannot be loaded is a different thing: its line has
neither number, and the gate fails (unless the stack's ``ChampionLoadFailure`` is ``pass``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from imgcls.data import DatasetError, extract_archive
from imgcls.imaging import Preprocessor
from imgcls.model import load_model

log = logging.getLogger("imgcls.champion")
BATCH = 32


@dataclass(frozen=True)
class ChampionScore:
    accuracy: float | None  # None: not compared (see reason)
    reason: str
    images: int = 0
    comparable: bool = True  # False: a valid champion this data set cannot score

    def line(self) -> str:
        """The stdout line the metric regexes read: the champion's accuracy, or
        ``champion_comparable=0`` when it cannot be compared, or neither when it failed."""
        if self.accuracy is not None:
            return f"[champion] champion_acc={self.accuracy:.6f} images={self.images}"
        if not self.comparable:
            return f"[champion] champion_comparable=0 not compared: {self.reason}"
        return f"[champion] not scored: {self.reason}"


def _model_dir(source: Path, scratch: Path) -> Path:
    """The champion's model directory: ``source`` itself, or its model.tar.gz unpacked."""
    if (source / "model.json").is_file():
        return source
    archives = [source] if source.is_file() else sorted(source.glob("*.tar.gz"))
    if not archives:
        raise DatasetError(f"the champion channel {source} holds no model.tar.gz")
    return extract_archive(archives[0], scratch / "champion")


def evaluate(
    source: Path, samples: Sequence[tuple[Path, int]], classes: Sequence[str], scratch: Path
) -> ChampionScore:
    """The champion's top-1 accuracy on ``samples`` (the candidate's test split)."""
    try:
        net, meta = load_model(_model_dir(source, scratch), "cpu")
    except (DatasetError, OSError, KeyError, ValueError, RuntimeError) as exc:
        return ChampionScore(None, f"the champion cannot be loaded ({exc})")
    if list(meta.get("classes", [])) != list(classes):
        return ChampionScore(None, "the champion was trained on other classes", comparable=False)
    if not samples:
        return ChampionScore(None, "the test split is empty", comparable=False)
    preprocess = Preprocessor(int(meta["image_size"]))
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(samples), BATCH):
            chunk = samples[start : start + BATCH]
            batch = torch.cat([preprocess(path.read_bytes()) for path, _ in chunk])
            predicted = net(batch).argmax(dim=1).tolist()
            correct += sum(int(p == label) for p, (_, label) in zip(predicted, chunk, strict=True))
    return ChampionScore(correct / len(samples), "compared", len(samples))
