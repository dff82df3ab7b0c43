"""mlops.images: magic-byte sniffing of the formats the model server reads."""

from __future__ import annotations

import pytest

from mlops.images import SNIFF_BYTES, endpoint_content_type, sniff
from tests.functions.classify_helpers import image_bytes


@pytest.mark.parametrize(
    ("fmt", "media_type", "sent_as"),
    [
        ("JPEG", "image/jpeg", "image/jpeg"),
        ("PNG", "image/png", "image/png"),
        ("WEBP", "image/webp", "image/webp"),
        ("GIF", "image/gif", "application/x-image"),
        ("BMP", "image/bmp", "application/x-image"),
        ("TIFF", "image/tiff", "application/x-image"),
    ],
)
def test_sniffs_real_images(fmt: str, media_type: str, sent_as: str) -> None:
    data = image_bytes(fmt)
    assert sniff(data) == media_type
    assert sniff(data[:SNIFF_BYTES]) == media_type  # the prefix is enough
    assert endpoint_content_type(media_type) == sent_as


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"<html></html>", b"%PDF-1.7", b"RIFF\0\0\0\0WAVE", b"GIF90a", b"\0" * 64],
)
def test_refuses_other_bytes(data: bytes) -> None:
    assert sniff(data) is None
