"""Numbers in HTTP field values and query strings, read as RFC 9110 writes them.

``str.isdigit`` is also True for "²" and "٣", which ``int`` then refuses (a 500 where the
caller sent bad input), and ``int`` itself accepts "+7", "-5", " 7" and "1_000". A length or
a count on the wire is ``1*DIGIT``: ASCII digits and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

# Far above any size or count handled here; larger values compare as this one, so ``int``
# never meets its 4,300-digit limit (a ValueError) on a long run of digits.
HUGE = 10**18


class InvalidLength(ValueError):
    """A Content-Length that is not a length: the message says why."""


def decimal(raw: str) -> int | None:
    """``raw`` as a non-negative integer when it is ASCII digits only, else None; values
    past ``HUGE`` come back as ``HUGE``."""
    if not (raw.isascii() and raw.isdigit()):
        return None
    significant = raw.lstrip("0") or "0"
    return int(significant) if len(significant) <= len(str(HUGE)) - 1 else HUGE


def content_length(values: Iterable[str]) -> int | None:
    """The body's length from every ``Content-Length`` field of a message (None when there
    is none): digits only, one value or a comma list of identical values (RFC 9110 8.6).
    Raises InvalidLength for anything else."""
    seen = {item.strip(" \t") for value in values for item in value.split(",")}
    for item in sorted(seen):
        if decimal(item) is None:
            raise InvalidLength(f"Content-Length {item[:20]!r} is not a number of bytes")
    if len(seen) > 1:
        raise InvalidLength(f"conflicting Content-Length values {', '.join(sorted(seen))}")
    return decimal(seen.pop()) if seen else None
