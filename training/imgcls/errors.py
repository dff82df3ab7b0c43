"""The one error type for bad requests, shared by inference.py and serve.py.

``InputError`` carries the HTTP status to answer with. Under the SageMaker inference
toolkit (present in the PyTorch serving containers) it is also a
``BaseInferenceToolkitError``: the toolkit then answers with its ``status_code`` instead
of turning every exception into a 500, so a bad image reaches InvokeEndpoint callers as a
``ModelError`` with ``OriginalStatusCode`` 400/413/415/406.
"""

from __future__ import annotations

from http import HTTPStatus

try:  # the toolkit is optional: serve.py and training do not need it
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # pragma: no cover - depends on the host
    _ToolkitError = Exception  # type: ignore[assignment,misc]


class InputError(ValueError, _ToolkitError):
    """The request cannot be served as sent; ``message`` says what to change."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        ValueError.__init__(self, message)
        # the attributes the toolkit reads when answering
        self.status_code = status_code
        self.message = message
        self.phrase = HTTPStatus(status_code).phrase
