"""Image type sniffing by magic bytes.

The classify function checks what it holds before forwarding anything to the endpoint:
a caller's Content-Type header or a web server's answer is only a claim, the first bytes
are not. Only the formats the model server decodes (Pillow) are recognised.
"""

from __future__ import annotations

# (prefix, media type); WebP is RIFF....WEBP, checked separately below.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)

#: The longest prefix :func:`sniff` needs: enough to read before deciding.
SNIFF_BYTES = 12

#: Media types the endpoint's contract names; anything else goes as application/x-image
#: (the model server sniffs the bytes itself).
_ENDPOINT_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


def sniff(data: bytes) -> str | None:
    """The image media type of ``data`` from its first bytes, or None if it is no image we read."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for prefix, media_type in _SIGNATURES:
        if data.startswith(prefix):
            return media_type
    return None


def endpoint_content_type(media_type: str) -> str:
    """The ContentType to send the endpoint for a sniffed image type."""
    return media_type if media_type in _ENDPOINT_TYPES else "application/x-image"
