"""Server-side validation of every request the local cloud serves, against the service
models' constraints, as AWS's servers validate them (see ``middleware``)."""

from localcloud.validation.constraints import check, message
from localcloud.validation.middleware import install, report_uncompilable, validate, wrap

__all__ = ["check", "install", "message", "report_uncompilable", "validate", "wrap"]
