"""The deployment's invariants (docs/architecture.md, "Invariants") hold after every step
of generated sequences of uploads, re-delivered events, approvals, ApprovalMode switches,
faults injected at Task states, stops, killed model servers and bad models: a fixed-seed
budget of sequences run by Hypothesis against the whole deployment in this process
(invariants_steps.py). A longer random budget: ``make bench-invariants``.

The sequences the search found breaking an invariant are kept below as regular tests, each
naming its finding; those whose fix has not landed are strict xfails, so they turn into
failures (remove the mark) once it does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, settings

from tests.localcloud.invariants_steps import OPEN_FINDINGS, Deployment

SEQUENCES = 50
STEPS = 3  # at most, per sequence: the findings so far took two or three


class Budget(Deployment):
    tolerate = OPEN_FINDINGS  # each has a strict xfail below that says when its fix lands


TestDeploymentInvariants = Budget.TestCase
TestDeploymentInvariants.settings = settings(
    max_examples=SEQUENCES,
    stateful_step_count=STEPS,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
# 50 sequences of whole runs: about 3 CPU-minutes (8 minutes on a busy 2-core machine)
TestDeploymentInvariants.pytestmark = [pytest.mark.timeout(1800)]


@contextmanager
def deployment(*tolerate: str) -> Iterator[Deployment]:
    """A sequence driven by hand (as Hypothesis prints a shrunk one); ``tolerate``:
    invariants another finding breaks on the way."""
    state = Deployment()
    state.tolerate = state.observer.tolerate = frozenset(tolerate)
    try:
        yield state
    finally:
        state.teardown()


def steps(state: Deployment, *actions: Callable[[], None]) -> None:
    """Each action, then every invariant, as the state machine does."""
    state.the_deployment_keeps_its_promises()
    for action in actions:
        action()
        state.the_deployment_keeps_its_promises()


def test_the_same_event_again_after_a_failed_deploy_deploys() -> None:
    """Issue 18 finding 1: a rerun of the same trigger reused the version RejectModel had
    rejected, and CreateModel refused it: the trigger could never deploy again (failed
    before 1e9d7df)."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="good", fault=("deploy_model", "error")),
            lambda: state.same_event_again(back=0, fault=None),
        )


def test_the_same_event_again_in_manual_mode_waits_for_a_person() -> None:
    """Issue 18 finding 1: after ApprovalMode auto -> manual, a rerun reused the Approved
    version and deployed it with no person's approval (failed before 1e9d7df)."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="good", fault=None),
            state.switch_approval_mode,
            lambda: state.same_event_again(back=0, fault=None),
        )


def test_a_lost_deploy_response_leaves_the_verified_model_serving() -> None:
    """Issue 18 finding 2: DeployModel's update was accepted, its response lost: the catch-all
    skipped the rollback, the unchecked model went live and was marked Rejected (failed
    before b2f5345)."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="good", fault=None),
            lambda: state.upload_data_set(kind="better", fault=("deploy_model", "lost")),
        )


def test_a_worse_model_never_replaces_a_live_model_whose_artifact_is_damaged() -> None:
    """Issue 18 finding 3: a champion that cannot be loaded was skipped, and a worse model
    passed on the absolute gate alone (failed before 57187b2)."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="good", fault=None),
            state.corrupt_the_live_artifact,
            lambda: state.upload_data_set(kind="worse", fault=None),
        )


def test_a_failed_deploy_after_a_stop_mid_canary_rolls_back_to_the_verified_model() -> None:
    """Issue 18 finding 5: after a StopExecution mid-canary the next run recorded the
    unverified live config as the one to roll back to (failed before b2f5345)."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="good", fault=None),
            lambda: state.upload_data_set(kind="better", fault=("check_endpoint", "stop")),
            lambda: state.upload_data_set(kind="wrong-answers", fault=None),
        )


def test_a_failed_task_is_named_in_the_cause() -> None:
    """Found by this test: a Catch's result does not say which state failed, and the cause
    named none (failed before DescribeFailure read the execution's history)."""
    with deployment() as state:
        steps(state, lambda: state.upload_data_set(kind="good", fault=("quality_gate", "error")))


def test_a_rerun_never_deploys_a_model_worse_than_the_live_one() -> None:
    """Found by the budget (two uploads at once, then the worse one's event again): a
    candidate was compared only with the model live when it trained. Here the worse model
    trains with nothing live and fails at the lock, the good one deploys, and the worse
    one's event delivered again reused its gate result and replaced the good model (failed
    before DeployModel compared it, under the lock, with the model live then)."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="worse", fault=("acquire_lock", "error")),
            lambda: state.upload_data_set(kind="good", fault=None),
            lambda: state.same_event_again(back=1, fault=None),
        )


def test_a_fault_after_a_verified_deploy_keeps_it_serving() -> None:
    """Found while fixing cause-names-the-state: ReleaseLock and Summarize had no Retry for a
    function's own error and no Catch, so one error there failed a run whose model was live
    and verified, with the function's raw error document as its cause, and left the lock
    held (failed before both retried any error and the release's failure was caught)."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="good", fault=("release_lock", "error")),
            lambda: state.upload_data_set(kind="better", fault=("summarize_run", "timeout")),
        )


def test_a_failed_deploy_after_a_stopped_first_deploy_leaves_no_unverified_model() -> None:
    """The first deployment is stopped after its model went live (unverified: here it fails
    every request); the next run's deploy fails its smoke test. Its rollback restored the
    config that was live, the stopped run's, as there was no verified one (found by the long
    budget, seed 309308408566807168052566654133692935656: with that model's version Rejected
    by a rerun of its event, the endpoint served a Rejected version). Now nothing verified
    means nothing to restore: the endpoint is deleted, as after a failed first deploy."""
    with deployment() as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="5xx", fault=("smoke_test", "stop")),
            lambda: state.upload_data_set(kind="wrong-answers", fault=None),
        )


def test_faults_at_every_step_of_a_good_deployment_keep_the_promises() -> None:
    """A throttle and a timeout the ASL retries or survives, a killed model server, an
    approval in manual mode: the invariants the open findings do not touch hold."""
    with deployment(*OPEN_FINDINGS) as state:
        steps(
            state,
            lambda: state.upload_data_set(kind="good", fault=("check_training", "throttle")),
            state.kill_a_model_server,
            state.switch_approval_mode,
            lambda: state.upload_data_set(kind="better", fault=None),
            lambda: state.decide_a_pending_version(approve=True),
            lambda: state.upload_data_set(kind="5xx", fault=None),
        )
