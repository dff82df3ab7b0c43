"""Decoding request images the way training saw them, fast and safely.

Training reads files with ImageFolder (PIL, ``convert("RGB")``) and ``eval_transform``;
serving must feed the network the same tensor. Two things differ on purpose:
- EXIF orientation is applied (a phone photo arrives the way it was taken, sideways
  pixels plus an orientation tag), and
- JPEGs are decoded in draft mode: libjpeg scales by 1/2, 1/4 or 1/8 while decoding, to
  the smallest scale that still covers the resize, so a 6-megapixel photo decodes in a
  fraction of the time and memory. Small images (under twice the resize) are unaffected.
"""

from __future__ import annotations

import io

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from imgcls.errors import InputError
from imgcls.transforms import eval_transform, resize_size_for

# Formats PIL may open. Listing them keeps out plugins that shell out (EPS runs
# Ghostscript) or that nobody sends to a classifier. (JPEG covers MPO, the multi-picture
# JPEG some cameras write.)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def decode_image(data: bytes, min_side: int) -> Image.Image:
    """RGB image from encoded bytes, upright, decoded at no less than ``min_side``.

    Raises InputError: 400 for bytes that are not a readable image, 413 for images over
    PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``, a decompression-bomb guard).
    """
    if not data:
        raise InputError("the request body is empty; send the image bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        _check_pixels(image.size)
        image.draft("RGB", (min_side, min_side))  # JPEG only; a no-op for other formats
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return image.convert("RGB")
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"image too large: {exc}", 413) from exc
    except UnidentifiedImageError as exc:
        raise InputError(
            f"the body is not an image this endpoint reads ({', '.join(FORMATS)})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # truncated or corrupt data: PIL reports it with these types
        raise InputError(f"the image could not be decoded: {exc}") from exc


def _check_pixels(size: tuple[int, int]) -> None:
    # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS; refuse the whole range.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise InputError(
            f"image too large: {size[0]}x{size[1]} pixels is over the limit of {limit}", 413
        )


class Preprocessor:
    """Bytes -> the normalised ``1 x 3 x image_size x image_size`` tensor the model takes."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size
        self.resize_size = resize_size_for(image_size)
        self._transform = eval_transform(image_size)

    def __call__(self, data: bytes) -> torch.Tensor:
        image = decode_image(data, self.resize_size)
        return self._transform(image).unsqueeze(0)
