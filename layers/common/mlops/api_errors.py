"""Errors of the HTTP inference API, each carrying the status and code it answers with.

The classify function turns any of these into ``{"error": code, "message": message}``
with ``status``; the message is written for the caller, so it never holds a stack trace,
an ARN or an account id. Anything that is not an ``ApiError`` is a bug and answers 500.
A 503 always carries ``Retry-After`` (the class default unless the raiser knows better).
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_retry_after: ClassVar[int | None] = None

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        # seconds, sent as Retry-After when set
        self.retry_after = self.default_retry_after if retry_after is None else retry_after

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class ImageTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class UrlRefused(ApiError):
    """The URL is not allowed: scheme, credentials, port or a non-public address."""

    status, code = 422, "url_refused"


class UrlUnusable(ApiError):
    """The URL was allowed but gave no image: unreachable, an HTTP error, not an image."""

    status, code = 422, "url_unusable"


class UrlTimeout(ApiError):
    status, code = 504, "url_timeout"


class ModelFailed(ApiError):
    status, code = 502, "model_error"


class EndpointUnavailable(ApiError):
    status, code = 503, "endpoint_unavailable"
    default_retry_after = 5


class EndpointTimeout(ApiError):
    status, code = 504, "endpoint_timeout"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"
