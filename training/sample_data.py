"""Write a small real data set in the train/valid/test/<class>/ layout, with no download.

The images are scikit-learn's bundled handwritten digits (1,797 scans of 8x8 pixels, ten
classes "0".."9"), upscaled to RGB JPEGs and split 70/15/15 per class (stratified,
deterministic for a given seed). They are read from scikit-learn's data file without
importing scikit-learn (1 s of imports, which the local run's start shared its cores with)::

    python -m training.sample_data --out data/digits
    python -m training.sample_data --archive data/digits.tar.gz   # what an S3 upload takes
"""

from __future__ import annotations

import argparse
import importlib.util
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "valid", "test")
FRACTIONS = (0.70, 0.15, 0.15)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as 8x8 arrays of 0..16 and their labels, from scikit-learn's file."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-learn is not installed: its bundled digits are the sample data")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    rows = np.loadtxt(path, delimiter=",")  # 64 pixels, then the label
    return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)


def _apportion(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` shared out over groups in proportion to ``sizes`` (largest remainders)."""
    exact = total * sizes / sizes.sum()
    shares = np.floor(exact).astype(int)
    shares[np.argsort(shares - exact, kind="stable")[: total - shares.sum()]] += 1
    return shares


def stratified_split(labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """Indices of the train, valid and test splits: FRACTIONS of the whole, each class
    shared out in proportion to its size, members drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    sizes = np.array([len(m) for m in members])
    n_train = int(FRACTIONS[0] * len(labels))
    train = _apportion(n_train, sizes)
    valid = _apportion(round(FRACTIONS[1] * len(labels)), sizes - train)
    cuts = [np.split(m, [t, t + v]) for m, t, v in zip(members, train, valid, strict=True)]
    return [np.sort(np.concatenate([parts[i] for parts in cuts])) for i in range(len(SPLITS))]


def write_digits(out_dir: str | Path, image_size: int = 64, seed: int = 0) -> dict[str, int]:
    """Write the digits under ``out_dir``; return the number of images per split."""
    images, labels = load_digits()
    pixels = (images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    counts = {}
    for split, members in zip(SPLITS, stratified_split(labels, seed), strict=True):
        for index in members:
            folder = Path(out_dir) / split / str(labels[index])
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels[index], mode="L").convert("RGB")
            image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
            image.save(folder / f"{index:04d}.jpg", quality=95)
        counts[split] = len(members)
    return counts


def make_archive(data_dir: str | Path, archive: str | Path, top_folder: str | None = None) -> Path:
    """Pack ``data_dir``'s contents into ``archive`` (.tar.gz, .tgz or .zip, by its name),
    under ``top_folder`` when given (as ``dogImages/`` in the original data set)."""
    data_dir, archive = Path(data_dir), Path(archive)
    if not archive.name.endswith(ARCHIVE_SUFFIXES):
        raise ValueError(f"{archive} must end in one of {', '.join(ARCHIVE_SUFFIXES)}")
    archive.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in data_dir.rglob("*") if p.is_file())
    prefix = Path(top_folder) if top_folder else Path()
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, (prefix / path.relative_to(data_dir)).as_posix())
    else:
        # JPEGs barely compress: gzip's fastest level, not its slowest (the default)
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            for path in files:
                tar.add(path, (prefix / path.relative_to(data_dir)).as_posix())
    return archive


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.sample_data",
        description="Write the scikit-learn digits as a train/valid/test image-folder data set.",
    )
    parser.add_argument("--out", type=Path, help="folder to write train/ valid/ test/ into")
    parser.add_argument(
        "--archive",
        type=Path,
        help="also (or only, without --out) pack the data set into this .tar.gz/.tgz/.zip, "
        "under a top folder digits/",
    )
    parser.add_argument("--image-size", type=int, default=64, help="side of each image (px)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified split")
    args = parser.parse_args(argv)
    if args.out is None and args.archive is None:
        parser.error("give --out, --archive or both")
    if args.archive is not None and not args.archive.name.endswith(ARCHIVE_SUFFIXES):
        parser.error(f"--archive must end in one of {', '.join(ARCHIVE_SUFFIXES)}")
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        counts = write_digits(out, args.image_size, args.seed)
        written = [str(out)] if args.out else []
        if args.archive is not None:
            written.append(str(make_archive(out, args.archive, top_folder="digits")))
    print(f"wrote {counts} images at {args.image_size} px to {', '.join(written)}")


if __name__ == "__main__":
    main()
