"""What SageMaker does as a job's or model's execution role, checked when IAM is enforced.

SageMaker reads the channels and writes the model (S3), pulls the image (ECR), writes the
job's and endpoint's logs (CloudWatch Logs) and reads the auto-rollback alarms of a
deployment (CloudWatch) as the execution role, never as the caller. The local cloud sets
``AUTHORIZE`` when it enforces IAM (``localcloud.services.iam.install``); without it nothing is
checked (``--no-iam``, tests of stock behaviour).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (role ARN, action, resource ARN, condition keys) -> None if the role may, else AWS's
# AccessDenied message.
Authorize = Callable[[str, str, str, dict[str, Any]], str | None]
AUTHORIZE: Authorize | None = None


def denied(role_arn: str | None, action: str, resource: str, **context: Any) -> str | None:
    """AWS's AccessDenied message if the role may not, else None (also when IAM is not
    enforced or there is no role)."""
    if AUTHORIZE is None or not role_arn:
        return None
    return AUTHORIZE(role_arn, action, resource, context)
