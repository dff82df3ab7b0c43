"""Tiny image data sets for tests: any test area may use these.

``write_image_folder(root)`` writes train/valid/test/<class>/ JPEGs whose classes differ in
colour (plus noise), so a small network learns them in an epoch or two. ``make_archive``
(from training.sample_data) packs such a folder as a .tar.gz/.tgz/.zip, optionally under
a top folder. ``free_port()`` gives a TCP port for servers and process groups;
``held_port()`` one that stays taken while it is open.
"""

from __future__ import annotations

import io
import socket
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from training.sample_data import make_archive
from training.server_process import free_port

__all__ = ["free_port", "held_port", "make_archive", "write_image_folder"]

DEFAULT_CLASSES = ("cat", "dog", "owl")
DEFAULT_COUNTS = {"train": 8, "valid": 4, "test": 4}
# One base colour per class index (cycled when there are more classes).
_COLOURS = ((220, 40, 40), (40, 200, 40), (40, 60, 220), (220, 200, 40), (200, 40, 200))


def write_image_folder(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    counts: Mapping[str, int] = DEFAULT_COUNTS,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``counts[split]`` JPEGs of ``size`` x ``size`` px per class under
    ``root/<split>/<class>/``; return ``root``. Deterministic for a given seed."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array(_COLOURS[label % len(_COLOURS)], dtype=np.int16)
            for i in range(count):
                noise = rng.integers(-40, 40, size=(size, size, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i:03d}.jpg", quality=90)
    return root


@contextmanager
def held_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that is bound and listening until the block ends: a server
    started on it must find it taken."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def tar_gz(members: Mapping[str, bytes]) -> bytes:
    """A ``.tar.gz`` holding ``members`` (name -> bytes), e.g. a model.tar.gz."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
