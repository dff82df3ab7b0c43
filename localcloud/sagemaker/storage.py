"""The local S3 and CloudWatch Logs, reached through moto's backends in this process.

Going through the backend objects (not boto3) behaves the same inside the moto server and
under ``mock_aws``: no endpoint, credentials or HTTP round trip to ourselves, and the data
lands in the account that owns the job. ``put_object`` still sends the S3 event
notifications a PUT sends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

from moto.logs.exceptions import ResourceAlreadyExistsException, ResourceNotFoundException
from moto.logs.models import logs_backends
from moto.s3.exceptions import MissingBucket
from moto.s3.models import FakeKey, s3_backends
from moto.utilities.utils import get_partition

_CHUNK = 1 << 20


class StorageError(Exception):
    """An S3 location or archive the job cannot use; the message is shown to the user."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise StorageError(f"{uri!r} is not an S3 URI (s3://bucket/key)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


class S3:
    """Reads and writes objects of one account's local S3."""

    def __init__(self, account_id: str, region: str) -> None:
        self._backend = s3_backends[account_id][get_partition(region)]

    def _bucket(self, name: str) -> Any:
        try:
            return self._backend.get_bucket(name)
        except MissingBucket:
            raise StorageError(f"ClientError: S3 bucket {name!r} does not exist") from None

    def download_prefix(self, uri: str, dest: Path, shard: tuple[int, int] = (0, 1)) -> None:
        """Copy the objects under the prefix into ``dest`` (S3Prefix semantics).

        ``shard=(i, n)`` takes every n-th object from the i-th (ShardedByS3Key).
        """
        bucket_name, prefix = parse_s3_uri(uri)
        bucket = self._bucket(bucket_name)
        keys, _, _, _ = self._backend.list_objects(bucket, prefix, None, None, None)
        # Like SageMaker, paths are kept relative to the prefix's last "/": a prefix that is a
        # whole key (s3://b/datasets/digits.tar.gz) downloads that object as digits.tar.gz.
        base = prefix[: prefix.rfind("/") + 1]
        files = [k for k in keys if not k.name.endswith("/")]  # "folder" markers are not files
        if not files:
            raise StorageError(f"ClientError: No S3 objects found under S3 URL {uri!r}")
        index, count = shard
        for key in files[index::count]:
            relative = key.name[len(base) :].lstrip("/")
            _copy_key(key, dest / _safe_relative(relative, uri))

    def download(self, uri: str, dest: Path) -> None:
        bucket_name, key_name = parse_s3_uri(uri)
        self._bucket(bucket_name)
        key = self._backend.get_object(bucket_name, key_name)
        if not isinstance(key, FakeKey):
            raise StorageError(f"ClientError: S3 object {uri!r} does not exist")
        _copy_key(key, dest)

    def upload(self, path: Path, uri: str) -> None:
        bucket_name, key_name = parse_s3_uri(uri)
        self._bucket(bucket_name)
        self._backend.put_object(bucket_name, key_name, path.read_bytes())


def _safe_relative(relative: str, uri: str) -> Path:
    parts = PurePosixPath(relative).parts
    if ".." in parts:
        raise StorageError(f"S3 key under {uri!r} escapes the channel directory: {relative!r}")
    return Path(*parts)


def _copy_key(key: FakeKey, dest: Path) -> None:
    # Stream moto's spooled buffer to disk instead of ``key.value`` (a full copy in memory):
    # data sets can be large. moto is pinned exactly, so this private field is stable.
    dest.parent.mkdir(parents=True, exist_ok=True)
    with key.lock, dest.open("wb") as out:
        key._value_buffer.seek(0)
        shutil.copyfileobj(key._value_buffer, out, _CHUNK)


def link_tree(src: Path, dest: Path) -> None:
    """Give ``dest`` the files of ``src`` (hard links, copies across file systems)."""
    for path in src.rglob("*"):
        if path.is_dir():
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def pack_dirs(sources: list[Path], archive: Path) -> None:
    """Write the contents of ``sources`` at the root of one gzip tar, like SageMaker's
    model.tar.gz; where two hosts wrote the same path, the first source's file wins."""
    seen: set[str] = set()
    with tarfile.open(archive, "w:gz") as tar:
        for src in sources:
            for path in sorted(src.rglob("*")):
                name = path.relative_to(src).as_posix()
                if name not in seen:
                    seen.add(name)
                    tar.add(path, arcname=name, recursive=False)


def extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing absolute paths, ``..``, links out and device files."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise StorageError(f"cannot extract {archive.name}: {exc}") from None


_logs_lock = threading.Lock()


def log_group_arn(account_id: str, region: str, group: str) -> str:
    return f"arn:{get_partition(region)}:logs:{region}:{account_id}:log-group:{group}"


class LogStream:
    """One CloudWatch Logs stream in the local account (created if missing)."""

    def __init__(self, account_id: str, region: str, group: str, stream: str) -> None:
        self._backend = logs_backends[account_id][region]
        self.group = group
        self.stream = stream
        self.group_arn = log_group_arn(account_id, region, group)
        self.arn = f"{self.group_arn}:log-stream:{stream}"
        with _logs_lock:
            with contextlib.suppress(ResourceAlreadyExistsException):
                self._backend.create_log_group(group, tags={})
            with contextlib.suppress(ResourceAlreadyExistsException):
                self._backend.create_log_stream(group, stream)

    def put(self, message: str) -> None:
        event = {"timestamp": int(time.time() * 1000), "message": message}
        # the group is gone when the account's state was reset while the process still ran
        with _logs_lock, contextlib.suppress(ResourceNotFoundException):
            self._backend.put_log_events(self.group, self.stream, [event])
