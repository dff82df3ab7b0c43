"""Small S3 helpers: URIs, existence checks, write-once uploads and streaming tar reads."""

from __future__ import annotations

import tarfile
from collections.abc import Collection
from typing import Any

from botocore.exceptions import ClientError

# HeadObject answers 404 for a missing key or version, 405 for a delete marker.
_MISSING = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NotFound", "405", "MethodNotAllowed"})
# ... and 403 for a missing key when the caller may not list the bucket (see head_object).
_DENIED = frozenset({"403", "AccessDenied", "Forbidden"})


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); ValueError naming the problem otherwise."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} must name a bucket and a key: s3://bucket/key")
    return bucket, key


def head_object(
    client: Any, bucket: str, key: str, version_id: str | None = None
) -> dict[str, Any] | None:
    """The object's metadata, or None when the key (or that version) does not exist.

    S3 answers a missing key with 404 only to a caller allowed ``s3:ListBucket`` on the
    whole bucket; a role that may list only under a prefix gets 403. So a 403 is checked
    with a listing of the key as prefix (which that role may make): no such key, None.
    """
    kwargs: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        return client.head_object(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in _MISSING:
            return None
        if code in _DENIED and not _listed(client, bucket, key):
            return None
        raise


def _listed(client: Any, bucket: str, key: str) -> bool:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(item["Key"] == key for item in listing.get("Contents", []))


# CopyObject copies up to 5 GiB in one call; larger objects are copied in parts.
COPY_LIMIT = 5 * 1024**3
COPY_PART = 512 * 1024**2


def copy_object(
    client: Any, source: dict[str, str], size: int, bucket: str, key: str, **extra: str
) -> None:
    """Server-side copy of ``source`` (Bucket, Key, optional VersionId) of ``size`` bytes.

    Needs only GetObject(Version) on the source and PutObject on the target, unlike the
    managed transfer, which also heads the bucket. ``extra`` (e.g. CopySourceIfMatch)
    goes with every request.
    """
    if size <= COPY_LIMIT:
        client.copy_object(CopySource=source, Bucket=bucket, Key=key, **extra)
        return
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, COPY_PART), start=1):
            end = min(start + COPY_PART, size) - 1
            result = client.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={start}-{end}",
                **extra,
            )
            parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        raise


def put_if_absent(client: Any, bucket: str, key: str, body: bytes) -> bool:
    """Upload ``body`` unless the key exists (content-addressed keys); True if uploaded."""
    if head_object(client, bucket, key) is not None:
        return False
    client.put_object(Bucket=bucket, Key=key, Body=body)
    return True


def read_tar_members(client: Any, uri: str, names: Collection[str]) -> dict[str, bytes]:
    """Read the named top-level members of a .tar.gz in S3 without downloading all of it.

    The object is streamed (``r|gz``) and the read stops once every name was seen, so
    only the bytes up to the last wanted member cross the network.
    """
    bucket, key = parse_s3_uri(uri)
    wanted = set(names)
    found: dict[str, bytes] = {}
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        with tarfile.open(fileobj=body, mode="r|gz") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        found[name] = extracted.read()
                    if found.keys() == wanted:
                        break
    finally:
        body.close()
    return found
