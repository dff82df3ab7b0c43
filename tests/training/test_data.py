"""Finding, unpacking and checking the data set; sharding it over processes."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from imgcls.data import (
    CachedImageList,
    DatasetError,
    dataset_name,
    eval_loader,
    extract_archive,
    locate,
    scan,
    train_loader,
)
from imgcls.transforms import stages
from tests.data_helpers import make_archive, write_image_folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data", counts={"train": 3, "valid": 2, "test": 2})


def check(path: Path, scratch: Path):
    return scan(locate(path, scratch))


def test_a_good_folder_lists_every_image(data: Path, tmp_path: Path) -> None:
    splits = check(data, tmp_path / "scratch")
    assert splits.root == data
    assert splits.classes == ["cat", "dog", "owl"]
    assert {k: len(v) for k, v in splits.samples.items()} == {"train": 9, "valid": 6, "test": 6}
    assert {label for _, label in splits.samples["train"]} == {0, 1, 2}
    assert not (tmp_path / "scratch").exists()  # nothing unpacked for a plain folder


def test_missing_split_is_named(data: Path, tmp_path: Path) -> None:
    shutil.rmtree(data / "valid")
    with pytest.raises(DatasetError, match=r"data set at .*data has no valid/ folder"):
        check(data, tmp_path)


def test_a_folder_without_the_layout_names_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels.csv").write_text("x")
    with pytest.raises(DatasetError, match=r"has no train/ folder \(found: images, labels.csv\)"):
        check(tmp_path / "data", tmp_path / "scratch")


def test_mismatched_classes_are_listed(data: Path, tmp_path: Path) -> None:
    (data / "test" / "owl").rename(data / "test" / "eagle")
    with pytest.raises(DatasetError) as error:
        check(data, tmp_path)
    message = str(error.value)
    assert "class folders differ between train/ and test/" in message
    assert "missing in test/: ['owl']" in message
    assert "only in test/: ['eagle']" in message


def test_empty_class_folder_is_named(data: Path, tmp_path: Path) -> None:
    for image in (data / "train" / "cat").iterdir():
        image.unlink()
    (data / "train" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"no images in train/cat"):
        check(data, tmp_path)


def test_a_single_class_is_refused(tmp_path: Path) -> None:
    data = write_image_folder(
        tmp_path / "data", classes=["only"], counts={"train": 1, "valid": 1, "test": 1}
    )
    with pytest.raises(DatasetError, match="at least 2 class folders"):
        check(data, tmp_path / "scratch")


def test_hidden_folders_are_ignored(data: Path, tmp_path: Path) -> None:
    (data / "train" / ".ipynb_checkpoints").mkdir()
    (data / "__MACOSX").mkdir()
    assert check(data, tmp_path / "scratch").classes == ["cat", "dog", "owl"]


@pytest.mark.parametrize(
    ("name", "top"),
    [
        ("data.tar.gz", "dogImages"),
        ("data.tgz", None),
        ("data.zip", "dogImages"),
        ("data.zip", None),
    ],
)
def test_archives_in_the_channel_are_unpacked(data: Path, tmp_path: Path, name: str, top) -> None:
    channel = tmp_path / "channel"
    make_archive(data, channel / name, top_folder=top)
    splits = check(channel, tmp_path / "scratch")
    assert splits.root == (tmp_path / "scratch" / top if top else tmp_path / "scratch")
    assert {k: len(v) for k, v in splits.samples.items()} == {"train": 9, "valid": 6, "test": 6}


def test_the_data_dir_may_be_the_archive_itself(data: Path, tmp_path: Path) -> None:
    archive = make_archive(data, tmp_path / "digits.tar.gz", top_folder="digits")
    assert check(archive, tmp_path / "scratch").classes == ["cat", "dog", "owl"]


def test_an_unpacked_top_folder_is_accepted(data: Path, tmp_path: Path) -> None:
    channel = tmp_path / "channel"
    shutil.move(data, channel / "dogImages")
    assert check(channel, tmp_path / "scratch").root == channel / "dogImages"


def test_several_archives_are_refused(data: Path, tmp_path: Path) -> None:
    make_archive(data, tmp_path / "channel" / "a.zip")
    make_archive(data, tmp_path / "channel" / "b.tar.gz")
    with pytest.raises(DatasetError, match=r"several archives \(a.zip, b.tar.gz\)"):
        check(tmp_path / "channel", tmp_path / "scratch")


def test_a_missing_data_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        check(tmp_path / "nope", tmp_path / "scratch")


def test_a_corrupt_archive_is_one_sentence_naming_the_archive(tmp_path: Path) -> None:
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError) as error:
        check(tmp_path / "broken.tar.gz", tmp_path / "scratch")
    # not tarfile's list of every compression it tried, nor the scratch path
    assert str(error.value) == (
        "broken.tar.gz is not a readable tar.gz archive: "
        "it is not a gzip, bzip2, xz or plain tar archive"
    )


def test_problems_inside_an_archive_name_the_archive_not_the_scratch_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "one-class"
    for split in ("train", "valid", "test"):
        (folder / split / "cat").mkdir(parents=True)
        (folder / split / "cat" / "0.png").write_bytes(b"png")
    archive = tmp_path / "upload" / "pets.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="pets")
    scratch = tmp_path / "scratch"
    with pytest.raises(DatasetError) as error:
        scan(locate(archive.parent, scratch), dataset_name(archive.parent))
    assert str(error.value) == "train/ in pets.tar.gz needs at least 2 class folders, found 1"


def _tar(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            data = b"evil" if member.isfile() else None
            if data is not None:
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../evil.txt"),
        tarfile.TarInfo("train/../../evil.txt"),
        tarfile.TarInfo("/tmp/evil.txt"),
        _link("train/cat/link", "../../../evil.txt", tarfile.SYMTYPE),
        _link("train/cat/abs", "/etc/passwd", tarfile.SYMTYPE),
        _link("train/cat/hard", "../evil.txt", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out"],
)
def test_tar_entries_that_escape_are_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", member)
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(DatasetError, match="refusing to unpack"):
        extract_archive(archive, dest)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not any(dest.iterdir())


def test_a_link_inside_the_archive_is_fine(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "ok.tar.gz",
        tarfile.TarInfo("train/a.txt"),
        _link("train/b.txt", "a.txt", tarfile.SYMTYPE),
    )
    extract_archive(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "train" / "b.txt").read_bytes() == b"evil"


def test_zip_entries_that_escape_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/cat/ok.jpg", b"x")
        zf.writestr("../evil.txt", b"evil")
    with pytest.raises(DatasetError, match=r"unsafe path '../evil.txt'"):
        extract_archive(archive, tmp_path / "dest")
    assert not list(tmp_path.rglob("evil.txt"))


def test_archive_limits_are_enforced(data: Path, tmp_path: Path) -> None:
    archive = make_archive(data, tmp_path / "data.zip")
    with pytest.raises(DatasetError, match="more than the limit of 5"):
        extract_archive(archive, tmp_path / "d1", max_members=5)
    with pytest.raises(DatasetError, match=r"unpacks to \d+ bytes, more than the limit of 100"):
        extract_archive(archive, tmp_path / "d2", max_bytes=100)


def test_training_shards_are_disjoint_and_equal() -> None:
    dataset = TensorDataset(torch.arange(25))
    shards = [
        list(train_loader(dataset, 4, 0, rank=rank, world_size=2, seed=0).sampler)
        for rank in (0, 1)
    ]
    assert [len(s) for s in shards] == [12, 12]
    assert not set(shards[0]) & set(shards[1])


def test_a_last_batch_of_one_is_dropped() -> None:
    loader = train_loader(TensorDataset(torch.arange(9)), 4, 0, rank=0, world_size=1, seed=0)
    assert [len(batch[0]) for batch in loader] == [4, 4]


def test_evaluation_shards_cover_every_sample_once() -> None:
    dataset = TensorDataset(torch.arange(11))
    seen = [
        value
        for rank in range(3)
        for (batch,) in eval_loader(dataset, 4, 0, rank=rank, world_size=3)
        for value in batch.tolist()
    ]
    assert sorted(seen) == list(range(11))


def test_a_cached_list_decodes_each_image_once(data: Path) -> None:
    samples = scan(data).samples["valid"]
    cached = CachedImageList(samples, stages(32))
    first = [cached[i] for i in range(len(cached))]
    for path, _ in samples:
        path.unlink()  # read once: later epochs need no file
    again = [cached[i] for i in range(len(cached))]
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(first, again, strict=True))
    assert first[0][0].shape == (3, 32, 32) and first[0][0].dtype == torch.float32


def test_a_cached_list_keeps_no_more_than_its_budget(data: Path) -> None:
    samples = scan(data).samples["valid"]
    one_image = 3 * 37 * 37  # uint8, resized to 37 px for a 32 px crop
    cached = CachedImageList(samples, stages(32), budget=one_image)
    cached[0], cached[1]
    samples[0][0].unlink()
    samples[1][0].unlink()
    cached[0]  # kept
    with pytest.raises(DatasetError, match="cannot read image"):
        cached[1]  # over the budget: read again
