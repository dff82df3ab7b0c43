"""IAM for the local cloud: a real policy evaluator (iam-simulate over the Service
Authorization Reference, in one node helper process), the request context of each AWS call,
the policies of the stack's roles, and the enforcement in the server process."""

from localcloud.services.iam.authorize import Authorizer, Denial, Principal
from localcloud.services.iam.enforce import Enforcer, install, uninstall
from localcloud.services.iam.evaluator import EvaluatorError, check_installed
from localcloud.services.iam.request_context import Check, required_checks

__all__ = [
    "Authorizer",
    "Check",
    "Denial",
    "Enforcer",
    "EvaluatorError",
    "Principal",
    "check_installed",
    "install",
    "required_checks",
    "uninstall",
]
