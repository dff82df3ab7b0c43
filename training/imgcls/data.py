"""Find, unpack and check the data set, and turn it into datasets and loaders.

The layout is ``train/ valid/ test/``, each with one folder per class, either as a folder
or as one ``.zip``/``.tar.gz``/``.tgz`` archive, possibly under one top folder
(``dogImages/``). Every problem with the data raises :class:`DatasetError` with a message
that names what is wrong, before any training starts.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from imgcls.layout import (
    ARCHIVE_SUFFIXES,
    IMAGE_SUFFIXES,
    SPLITS,
    DatasetError,
    archive_suffix,
    check_layout,
    folder_entries,
    unreadable,
)
from imgcls.transforms import Stages

log = logging.getLogger(__name__)

__all__ = ["ARCHIVE_SUFFIXES", "IMAGE_SUFFIXES", "SPLITS", "DatasetError"]  # re-exported
# Bounds on what an archive may unpack to: far above any image data set (dogImages is
# 8,351 files, 1.1 GB) and low enough that a hostile or broken archive cannot fill the disk.
MAX_ARCHIVE_MEMBERS = 2_000_000
MAX_ARCHIVE_BYTES = 200 * 1024**3
# What one split's decoded images may keep in memory (digits at 32 px: 5 MB; dogImages'
# valid split at 224 px: 130 MB).
CACHE_BYTES = 1024**3


@dataclass(frozen=True)
class DataSplits:
    """The checked data set: class names (index order) and (path, label) lists per split."""

    root: Path
    classes: list[str]
    samples: dict[str, list[tuple[Path, int]]]


def _check_member(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DatasetError(
            f"archive {archive.name} holds an unsafe path {name!r}; refusing to unpack"
        )


def _check_totals(
    archive: Path, members: int, size: int, dest: Path, limits: tuple[int, int]
) -> None:
    max_members, max_bytes = limits
    if members > max_members:
        raise DatasetError(
            f"archive {archive.name} holds {members} entries, more than the limit of {max_members}"
        )
    if size > max_bytes:
        raise DatasetError(
            f"archive {archive.name} unpacks to {size} bytes, more than the limit of {max_bytes}"
        )
    free = shutil.disk_usage(dest).free
    if size > free:
        raise DatasetError(
            f"archive {archive.name} unpacks to {size} bytes but only {free} are free at {dest}"
        )


def _extract_tar(archive: Path, dest: Path, limits: tuple[int, int]) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member.name, archive)
            if member.issym() or member.islnk():
                # A symlink resolves from its own folder, a hard link from the archive root.
                base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
                target = base / member.linkname
                if target.is_absolute() or _escapes(target):
                    raise DatasetError(
                        f"archive {archive.name} holds a link {member.name!r} -> "
                        f"{member.linkname!r} that points outside it; refusing to unpack"
                    )
        _check_totals(
            archive, len(members), sum(m.size for m in members if m.isfile()), dest, limits
        )
        # The "data" filter also refuses devices and strips modes; it backs up the checks above.
        tar.extractall(dest, filter="data")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def _extract_zip(archive: Path, dest: Path, limits: tuple[int, int]) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_member(info.filename, archive)
        _check_totals(archive, len(infos), sum(i.file_size for i in infos), dest, limits)
        zf.extractall(dest)


def extract_archive(
    archive: Path,
    dest: Path,
    max_members: int = MAX_ARCHIVE_MEMBERS,
    max_bytes: int = MAX_ARCHIVE_BYTES,
) -> Path:
    """Unpack ``archive`` into ``dest`` after checking every entry; return ``dest``.

    Refuses absolute paths, ``..`` components and links that point outside the archive,
    and archives over ``max_members`` entries or ``max_bytes`` unpacked (or over the free
    space at ``dest``).
    """
    dest.mkdir(parents=True, exist_ok=True)
    limits = (max_members, max_bytes)
    zipped = archive_suffix(archive.name) == ".zip"
    try:
        if zipped:
            _extract_zip(archive, dest, limits)
        else:
            _extract_tar(archive, dest, limits)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(unreadable(archive.name, "zip" if zipped else "tar.gz", exc)) from None
    return dest


def dataset_name(data_dir: Path) -> str:
    """How messages name the data set: its archive's file name (the name the user uploaded;
    the pipeline adds the S3 URI), else the folder."""
    if data_dir.is_file():
        return data_dir.name
    archives = [p for p in data_dir.iterdir() if p.is_file() and archive_suffix(p.name)]
    return archives[0].name if len(archives) == 1 else f"data set at {data_dir}"


def locate(data_dir: Path, scratch: Path) -> Path:
    """The folder holding train/valid/test: ``data_dir`` itself (or its single top folder),
    or the contents of the one archive in it (or that it is), unpacked under ``scratch``."""
    if not data_dir.exists():
        raise DatasetError(f"data set at {data_dir} does not exist")
    if data_dir.is_file():
        if archive_suffix(data_dir.name) is None:
            raise DatasetError(f"{data_dir} is a file but not a .zip, .tar.gz or .tgz archive")
        archive = data_dir
    else:
        if all((data_dir / split).is_dir() for split in SPLITS):
            return data_dir
        archives = [p for p in data_dir.iterdir() if p.is_file() and archive_suffix(p.name)]
        if len(archives) > 1:
            names = ", ".join(sorted(p.name for p in archives))
            raise DatasetError(f"data set at {data_dir} holds several archives ({names}); keep one")
        if not archives:
            return _layout_root(data_dir, f"data set at {data_dir}")
        archive = archives[0]
    log.info("unpacking %s into %s", archive, scratch)
    return _layout_root(extract_archive(archive, scratch), archive.name)


def _layout_root(folder: Path, where: str) -> Path:
    """``folder`` or its single top folder (``dogImages/``): the one holding the splits."""
    return folder / check_layout(folder_entries(folder), where).prefix


def scan(root: Path, where: str | None = None) -> DataSplits:
    """Check the layout under ``root`` and list every split's images with their labels;
    ``where`` names the data set in messages (default: the folder)."""
    layout = check_layout(folder_entries(root), where or f"data set at {root}")
    samples = {
        split: [
            (root / name, label)
            for label, class_name in enumerate(layout.classes)
            for name in layout.images[split][class_name]
        ]
        for split in SPLITS
    }
    return DataSplits(root=root / layout.prefix, classes=layout.classes, samples=samples)


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageList(Dataset):
    """(image tensor, label) pairs from a list of (path, label)."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: Callable[[Any], Any]):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            image = open_rgb(path)
        except OSError as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from exc
        return self.transform(image), label


class CachedImageList(ImageList):
    """An :class:`ImageList` that decodes each image once: it keeps the output of the
    transform's deterministic part (``stages.fixed``, a uint8 tensor) while the kept
    tensors stay under ``budget`` bytes, and runs only ``stages.varying`` on later uses.
    On small images decoding and resizing cost more than the training step itself. Meant
    for loading in the training process (``--num-workers 0``): a worker's copy would go
    with the worker at the end of the epoch."""

    def __init__(
        self, samples: Sequence[tuple[Path, int]], stages: Stages, budget: int = CACHE_BYTES
    ):
        super().__init__(samples, stages.fixed)
        self.stages = stages
        self.budget = budget
        self._kept: dict[int, torch.Tensor] = {}
        self._bytes = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        fixed = self._kept.get(index)
        if fixed is None:
            fixed, _ = super().__getitem__(index)
            if self._bytes + fixed.nbytes <= self.budget:
                self._kept[index] = fixed
                self._bytes += fixed.nbytes
        return self.stages.varying(fixed), self.samples[index][1]


def train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    rank: int,
    world_size: int,
    seed: int,
) -> DataLoader:
    """Shuffled batches of this rank's shard of ``dataset``.

    The sampler gives each rank a disjoint shard of ``len // world_size`` images (the
    ``len % world_size`` left over change every epoch with the shuffle); call
    ``loader.sampler.set_epoch(epoch)`` before each epoch.
    """
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    # A last batch of one sample breaks BatchNorm in train mode when the feature map is 1x1.
    drop_last = len(sampler) % batch_size == 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        # Fresh workers each epoch take their seeds from the per-epoch seed, which keeps
        # a resumed run's augmentation the same as an uninterrupted run's.
        persistent_workers=False,
    )


def eval_loader(
    dataset: Dataset, batch_size: int, num_workers: int, rank: int, world_size: int
) -> DataLoader:
    """This rank's share of ``dataset`` in order, without the padding DistributedSampler
    adds, so that summing over ranks counts every image exactly once."""
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
