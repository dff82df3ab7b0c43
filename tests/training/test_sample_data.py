"""The digits sample data set."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls.data import locate, scan
from training.sample_data import load_digits, main, make_archive, stratified_split, write_digits


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("digits")
    return root, write_digits(root, image_size=16)


def test_all_digits_are_split_stratified(digits) -> None:
    root, counts = digits
    assert sum(counts.values()) == 1797
    assert counts == {"train": 1257, "valid": 270, "test": 270}
    splits = scan(root)
    assert splits.classes == [str(d) for d in range(10)]
    for split, samples in splits.samples.items():
        per_class = [sum(1 for _, label in samples if label == c) for c in range(10)]
        assert max(per_class) - min(per_class) <= max(per_class) * 0.1, (split, per_class)


def test_the_digits_are_scikit_learns_without_importing_it() -> None:
    images, labels = load_digits()
    from sklearn.datasets import load_digits as sklearn_digits

    reference = sklearn_digits()
    assert np.array_equal(images, reference.images)
    assert np.array_equal(labels, reference.target)


def test_the_splits_are_disjoint_cover_every_image_and_follow_the_seed() -> None:
    labels = load_digits()[1]
    parts = stratified_split(labels, seed=0)
    assert [len(part) for part in parts] == [1257, 270, 270]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))
    assert not np.array_equal(stratified_split(labels, seed=1)[2], parts[2])


def test_images_are_rgb_at_the_requested_size(digits) -> None:
    root, _ = digits
    with Image.open(next((root / "train" / "3").iterdir())) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (16, 16))


def test_the_split_is_deterministic(digits, tmp_path: Path) -> None:
    root, _ = digits
    write_digits(tmp_path, image_size=16)
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jpg"))
    assert listing == sorted(p.relative_to(root) for p in root.rglob("*.jpg"))


def test_cli_writes_an_archive_under_a_top_folder(tmp_path: Path, capsys) -> None:
    main(["--archive", str(tmp_path / "digits.tar.gz"), "--image-size", "8"])
    assert "digits.tar.gz" in capsys.readouterr().out
    with tarfile.open(tmp_path / "digits.tar.gz") as tar:
        assert all(name.startswith("digits/") for name in tar.getnames())
    splits = scan(locate(tmp_path / "digits.tar.gz", tmp_path / "scratch"))
    assert len(splits.samples["train"]) == 1257


def test_cli_needs_a_destination(capsys) -> None:
    with pytest.raises(SystemExit):
        main([])
    assert "give --out, --archive or both" in capsys.readouterr().err


def test_make_archive_refuses_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must end in one of"):
        make_archive(tmp_path, tmp_path / "data.rar")
