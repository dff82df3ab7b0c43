"""How long the state machine's polling loops wait, so that no run outgrows its history.

Step Functions ends an execution at 25,000 history events, and every check of a loop costs
about nine (the Wait, Task and Choice states entered and exited, and the Lambda call's
events). So every loop is bounded for any allowed parameters:

- the training loop waits longer as the job ages (a thirtieth of its age, at most two
  hours), so even a 56-day spot job is checked well under a thousand times;
- the deployment (and then its rollback) has a window of at most ``DEPLOY_POLLS`` checks
  and a third of the lock's lease each, so a deploying execution never outlives its lock;
- the lock loop is bounded by the template's ``DeploymentLockMaxAttempts`` maximum.
"""

from __future__ import annotations

import math

HISTORY_LIMIT = 25_000
EVENTS_PER_POLL = 9
TRAINING_AGE_FRACTION = 30
TRAINING_WAIT_CAP_SECONDS = 7200
DEPLOY_POLLS = 400


def training_wait(age_seconds: float, base_seconds: int) -> int:
    """Seconds until the next check of a training job that started ``age_seconds`` ago."""
    cap = max(base_seconds, TRAINING_WAIT_CAP_SECONDS)
    return int(min(cap, max(base_seconds, math.ceil(age_seconds / TRAINING_AGE_FRACTION))))


def deployment_window(poll_seconds: int, lease_seconds: int) -> int:
    """Seconds a deployment may take to come up (and again for its rollback)."""
    return int(min(lease_seconds / 3, DEPLOY_POLLS * poll_seconds))


def deployment_deadlines(now: float, poll_seconds: int, lease_seconds: int) -> dict[str, int]:
    """Epoch seconds by which the deployment, then its rollback, must be done."""
    window = deployment_window(poll_seconds, lease_seconds)
    return {"deploy": int(now) + window, "rollback": int(now) + 2 * window}
