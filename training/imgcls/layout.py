"""The data set's layout, checked from its entries' names alone.

``train/ valid/ test/``, each with the same class folders (at least two), each class with at
least one image, possibly under one top folder (``dogImages/``). The same rules check a
folder on disk (train.py, after unpacking) and an archive's member list before it is
uploaded (``python -m localcloud upload``), so a data set is refused for the same reason,
in the same words, before it costs a training job.

This module imports only the standard library: the local cloud's CLI loads it without the
package, whose ``__init__`` imports torch.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


class DatasetError(ValueError):
    """The data set is missing, malformed or unsafe; the message says what and where."""


@dataclass(frozen=True)
class Layout:
    """A checked layout: the top folder (``""`` or ``"dogImages/"``), the class names in
    label order, and each split's images per class (names relative to the data set)."""

    prefix: str
    classes: list[str]
    images: dict[str, dict[str, list[str]]]


def visible(name: str) -> bool:
    return not name.startswith((".", "__MACOSX"))


def archive_suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def check_layout(entries: Iterable[str], where: str) -> Layout:
    """Check the layout from ``entries``: paths relative to the data set, ``/``-separated,
    folders ending in ``/`` (a folder is also implied by the files in it). ``where`` names
    the data set in messages (the user's file or the S3 object, never a scratch path)."""
    folders: set[PurePosixPath] = set()
    files: list[PurePosixPath] = []
    for entry in entries:
        path = PurePosixPath(entry.replace("\\", "/").removeprefix("./"))
        if not path.parts or not all(visible(part) for part in path.parts):
            continue
        folders.update(path.parents[:-1])  # every parent but "."
        if entry.endswith("/"):
            folders.add(path)
        else:
            files.append(path)
    prefix = _top_folder(folders, files, where)
    classes = _children(folders, prefix / "train")
    if len(classes) < 2:
        raise DatasetError(
            f"train/ in {where} needs at least 2 class folders, found {len(classes)}"
        )
    for split in SPLITS[1:]:
        other = _children(folders, prefix / split)
        if other != classes:
            missing = sorted(set(classes) - set(other))
            extra = sorted(set(other) - set(classes))
            raise DatasetError(
                f"class folders differ between train/ and {split}/ in {where}: "
                f"missing in {split}/: {missing or 'none'}; only in {split}/: {extra or 'none'}"
            )
    images: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        images[split] = {name: [] for name in classes}
        for path in files:
            parts = path.relative_to(prefix).parts if path.is_relative_to(prefix) else ()
            if len(parts) >= 3 and parts[:1] == (split,) and parts[1] in images[split]:
                images[split][parts[1]] += [path.as_posix()] if is_image(path.name) else []
        for name, found in images[split].items():
            if not found:
                raise DatasetError(f"no images in {split}/{name} in {where}")
            found.sort()
    top = "" if prefix == PurePosixPath() else f"{prefix.as_posix()}/"
    return Layout(prefix=top, classes=classes, images=images)


def _children(folders: set[PurePosixPath], parent: PurePosixPath) -> list[str]:
    return sorted(f.name for f in folders if f.parent == parent)


def _top_folder(
    folders: set[PurePosixPath], files: list[PurePosixPath], where: str
) -> PurePosixPath:
    """Where train/valid/test are: the data set itself, or its single top folder."""
    root = PurePosixPath()
    top = sorted({*_children(folders, root), *(f.name for f in files if f.parent == root)})
    if all(root / split in folders for split in SPLITS):
        return root
    if len(top) == 1 and PurePosixPath(top[0]) in folders and top[0] not in SPLITS:
        inner = PurePosixPath(top[0])
        if all(inner / split in folders for split in SPLITS):
            return inner
        root, top = (
            inner,
            sorted({*_children(folders, inner), *(f.name for f in files if f.parent == inner)}),
        )
    missing = next(split for split in SPLITS if root / split not in folders)
    found = ", ".join(top) or "nothing"
    place = where if root == PurePosixPath() else f"{where} (under {root.as_posix()}/)"
    raise DatasetError(f"{place} has no {missing}/ folder (found: {found})")


def folder_entries(folder: Path) -> list[str]:
    """A folder's entries, relative to it, as check_layout reads them."""
    return [
        p.relative_to(folder).as_posix() + ("/" if p.is_dir() else "") for p in folder.rglob("*")
    ]


def archive_entries(archive: Path) -> list[str]:
    """An archive's member names, without unpacking it; DatasetError, in one sentence, if
    it is not a readable .zip or .tar.gz."""
    kind = "zip" if archive_suffix(archive.name) == ".zip" else "tar.gz"
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                return zf.namelist()
        with tarfile.open(archive, "r:*") as tar:
            return [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DatasetError(unreadable(archive.name, kind, exc)) from None


def unreadable(name: str, kind: str, exc: BaseException) -> str:
    """One sentence for an archive that does not open (tarfile's own message lists every
    compression it tried, over several lines)."""
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, tarfile.ReadError) and "method" in str(exc):
        detail = "it is not a gzip, bzip2, xz or plain tar archive"
    return f"{name} is not a readable {kind} archive: {detail}"
