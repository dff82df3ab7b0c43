"""The local S3 and CloudWatch Logs, reached through moto's backends in this process.

Going through the backend objects (not boto3) behaves the same inside the moto server and
under ``mock_aws``: no endpoint, credentials or HTTP round trip to ourselves, and the data
lands in the account that owns the job. ``put_object`` still sends the S3 event
notifications a PUT sends.
"""

from __future__ import annotations

import contextlib
import os
import re
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

from . import execution_role

_CHUNK = 1 << 20
_ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)")


class StorageError(Exception):
    """An S3 location or archive the job cannot use; the message is shown to the user."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise StorageError(f"{uri!r} is not an S3 URI (s3://bucket/key)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


class S3:
    """Reads and writes objects of one account's local S3 (as ``role_arn``, when given and
    IAM is enforced: SageMaker uses the job's or model's execution role)."""

    def __init__(self, account_id: str, region: str, role_arn: str | None = None) -> None:
        self._backend = s3_backends[account_id][get_partition(region)]
        self._role_arn = role_arn

    def _authorize(self, operation: str, action: str, resource: str, **context: Any) -> None:
        denied = execution_role.denied(self._role_arn, action, resource, **context)
        if denied:
            raise StorageError(
                f"ClientError: An error occurred (AccessDenied) when calling the {operation} "
                f"operation: {denied}"
            )

    def _bucket(self, name: str) -> Any:
        try:
            return self._backend.get_bucket(name)
        except MissingBucket:
            raise StorageError(f"ClientError: S3 bucket {name!r} does not exist") from None

    def pull_image(self, image: str) -> None:
        """SageMaker pulls a private ECR image as the execution role: the role needs
        ecr:GetAuthorizationToken and the layer and image reads on the image's repository
        (nothing is pulled locally; other registries are not checked)."""
        match = _ECR_IMAGE.match(image)
        if not match:
            return
        account, region, repository = match.groups()
        repo = f"arn:{get_partition(region)}:ecr:{region}:{account}:repository/{repository}"
        reads = ("BatchCheckLayerAvailability", "GetDownloadUrlForLayer", "BatchGetImage")
        for action, resource in [("GetAuthorizationToken", "*"), *((r, repo) for r in reads)]:
            denied = execution_role.denied(self._role_arn, f"ecr:{action}", resource)
            if denied:
                raise StorageError(f"ClientError: Cannot pull the image {image}: {denied}")

    def download_prefix(self, uri: str, dest: Path, shard: tuple[int, int] = (0, 1)) -> None:
        """Copy the objects under the prefix into ``dest`` (S3Prefix semantics).

        ``shard=(i, n)`` takes every n-th object from the i-th (ShardedByS3Key).
        """
        bucket_name, prefix = parse_s3_uri(uri)
        context = {"s3:prefix": prefix}
        self._authorize("ListObjectsV2", "s3:ListBucket", f"arn:aws:s3:::{bucket_name}", **context)
        bucket = self._bucket(bucket_name)
        keys, _, _, _ = self._backend.list_objects(bucket, prefix, None, None, None)
        # Like SageMaker, paths are kept relative to the prefix when it names a "folder"
        # (s3://b/input/code holds code/train.py -> train.py), else to its last "/": a
        # prefix that is a whole key (s3://b/datasets/digits.tar.gz) downloads that object
        # as digits.tar.gz.
        folder = prefix.endswith("/") or any(k.name.startswith(prefix + "/") for k in keys)
        base = prefix if folder else prefix[: prefix.rfind("/") + 1]
        files = [k for k in keys if not k.name.endswith("/")]  # "folder" markers are not files
        if not files:
            raise StorageError(f"ClientError: No S3 objects found under S3 URL {uri!r}")
        index, count = shard
        for key in files[index::count]:
            self._authorize("GetObject", "s3:GetObject", f"arn:aws:s3:::{bucket_name}/{key.name}")
            relative = key.name[len(base) :].lstrip("/")
            _copy_key(key, dest / _safe_relative(relative, uri))

    def download(self, uri: str, dest: Path) -> None:
        bucket_name, key_name = parse_s3_uri(uri)
        self._authorize("GetObject", "s3:GetObject", f"arn:aws:s3:::{bucket_name}/{key_name}")
        self._bucket(bucket_name)
        key = self._backend.get_object(bucket_name, key_name)
        if not isinstance(key, FakeKey):
            # S3 answers 404 only to a caller that may list the bucket, else 403
            self._authorize("GetObject", "s3:ListBucket", f"arn:aws:s3:::{bucket_name}")
            raise StorageError(f"ClientError: S3 object {uri!r} does not exist")
        _copy_key(key, dest)

    def upload(self, path: Path, uri: str) -> None:
        bucket_name, key_name = parse_s3_uri(uri)
        self._authorize("PutObject", "s3:PutObject", f"arn:aws:s3:::{bucket_name}/{key_name}")
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
    """One CloudWatch Logs stream in the local account (created if missing), written as
    ``role_arn`` when given: SageMaker writes a job's or endpoint's logs as its execution
    role. A role that may not (``logs:CreateLogGroup`` for a missing group,
    ``logs:CreateLogStream``, ``logs:PutLogEvents``) gets no logs in CloudWatch while the job
    or endpoint runs on, as on AWS; ``denied`` says why (None when it is written)."""

    def __init__(
        self, account_id: str, region: str, group: str, stream: str, role_arn: str | None = None
    ) -> None:
        self._backend = logs_backends[account_id][region]
        self.group = group
        self.stream = stream
        self.group_arn = log_group_arn(account_id, region, group)
        self.arn = f"{self.group_arn}:log-stream:{stream}"
        with _logs_lock:
            missing = group not in self._backend.groups
        needed = [("logs:CreateLogGroup", self.group_arn)] if missing else []
        needed += [("logs:CreateLogStream", self.arn), ("logs:PutLogEvents", self.arn)]
        self.denied = next(
            (d for a, r in needed if (d := execution_role.denied(role_arn, a, r))), None
        )
        if self.denied:
            return
        with _logs_lock:
            with contextlib.suppress(ResourceAlreadyExistsException):
                self._backend.create_log_group(group, tags={})
            with contextlib.suppress(ResourceAlreadyExistsException):
                self._backend.create_log_stream(group, stream)

    def put(self, message: str) -> None:
        if self.denied:
            return
        event = {"timestamp": int(time.time() * 1000), "message": message}
        # the group is gone when the account's state was reset while the process still ran
        with _logs_lock, contextlib.suppress(ResourceNotFoundException):
            self._backend.put_log_events(self.group, self.stream, [event])
