"""No allowed parameters can make a run outgrow Step Functions' 25,000-event history."""

from __future__ import annotations

from mlops.polling import (
    EVENTS_PER_POLL,
    HISTORY_LIMIT,
    deployment_window,
    training_wait,
)
from tests.template_support import template

DAY = 24 * 3600


def template_parameter(name: str) -> dict:
    return template()["Parameters"][name]


def training_polls(duration: float, base: int) -> int:
    elapsed, polls = 0.0, 0
    while elapsed < duration:
        elapsed += training_wait(elapsed, base)
        polls += 1
    return polls


def test_the_longest_run_the_template_allows_stays_within_the_history_limit() -> None:
    longest_training = 2 * template_parameter("MaxTrainingRuntimeSeconds")["MaxValue"]  # spot
    lock_attempts = template_parameter("DeploymentLockMaxAttempts")["MaxValue"]
    poll = template_parameter("PollIntervalSeconds")["MinValue"]
    lease = 10 * DAY  # more lease only widens the window up to its poll bound
    deploy_polls = deployment_window(poll, lease) / poll
    polls = training_polls(longest_training, poll) + lock_attempts + 2 * deploy_polls
    assert polls * EVENTS_PER_POLL + 100 < HISTORY_LIMIT


def test_a_short_job_is_still_checked_every_poll_interval() -> None:
    assert training_wait(0, 60) == 60
    assert training_wait(1800, 60) == 60  # half an hour in: still every minute
    assert training_wait(6 * 3600, 60) == 720  # six hours in: every 12 minutes
    assert training_wait(30 * DAY, 60) == 7200


def test_the_deployment_window_fits_the_lock_lease() -> None:
    # Deployment and rollback together end before the lock's lease can lapse.
    assert 2 * deployment_window(60, 21600) < 21600
    assert deployment_window(1, 21600) == 400
