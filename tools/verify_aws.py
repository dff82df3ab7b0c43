"""``make verify-aws``: the acceptance test on a real AWS account, then everything deleted.

It deploys a uniquely named stack (``sam build`` + ``sam deploy``, non-interactive), runs
the acceptance test against it (tests/acceptance/test_promise_aws.py: the sample digits
uploaded, the execution followed, what the local end-to-end test asserts), and then always
deletes everything the stack and its run created (tools/cleanup.py), also when a step fails
or the run is interrupted (SIGINT, SIGTERM). Before anything it refuses to run without AWS
credentials and prints the estimated cost, which it needs confirmed (``CONFIRM=yes`` or the
prompt). docs/deploy.md has the walkthrough.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

import boto3
import botocore.exceptions
import yaml
from botocore.client import BaseClient

from localcloud.cloudformation import yaml_loader
from localcloud.runtime.settings import DEFAULT_PARAMETERS
from tools import costs
from tools.cleanup import Names, cleanup

REPO = Path(__file__).resolve().parents[1]
ACCEPTANCE_TEST = "tests/acceptance/test_promise_aws.py"
# The local runs' small model and gates (localcloud/parameters.yaml): minutes of training on
# the sample digits instead of the reference ResNet-50's hours.
FROM_LOCAL_PARAMETERS = (
    "TrainingHyperparameters",
    "MaxTrainingRuntimeSeconds",
    "MinValidationAccuracy",
    "SmokeTestMinAccuracy",
)
# What the run is assumed to take (the estimate): the DLC's start and the digits' training;
# the endpoint from its creation until the cleanup deletes it.
TRAINING_MINUTES = 15
ENDPOINT_MINUTES = 30
LAMBDA_REQUESTS = 300
LAMBDA_GB_SECONDS = 300
STATE_TRANSITIONS = 400
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
STACK_PREFIX = "icp-verify-"
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    pass


def say(message: str) -> None:
    print(f"verify-aws: {message}", flush=True)


def fail(message: str) -> int:
    print(f"verify-aws: {message}", file=sys.stderr)
    return EXIT_REFUSED


def credentials_problem(session: boto3.Session) -> str | None:
    """Why botocore's credential chain finds no credentials (no network call), or None."""
    try:
        found = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:  # a named profile that is not there
        return f"{exc} (set AWS_PROFILE to a configured profile)"
    if found is None:
        return (
            "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run `aws configure`)"
        )
    return None


def unique_stack_name(now: datetime.datetime | None = None) -> str:
    """``icp-verify-<UTC time>-<4 hex>``: lower case (it is also the endpoint's name), short."""
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{STACK_PREFIX}{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def stack_name_problem(name: str, template: Path = REPO / "template.yaml") -> str | None:
    """Why ``name`` cannot be a verification stack: everything named after it is deleted, so
    it must carry the prefix; it is also the endpoint's name (the template's rules)."""
    rule = yaml_loader.load(template)["Parameters"]["EndpointName"]
    if not name.startswith(STACK_PREFIX):
        return (
            f"--stack {name}: a verification stack's name starts with {STACK_PREFIX} "
            "(everything named after it is deleted)"
        )
    if not re.fullmatch(rule["AllowedPattern"], name) or len(name) > int(rule["MaxLength"]):
        return (
            f"--stack {name}: it is also the endpoint's name: lower-case letters, digits and "
            f"hyphens, at most {rule['MaxLength']} characters"
        )
    return None


def parameters(stack: str, local_parameters: Path = DEFAULT_PARAMETERS) -> dict[str, str]:
    """The stack's parameter overrides: the local runs' model and gates, the endpoint named
    after the stack (so cleanup finds everything by name), a signed-only API, short logs."""
    local = yaml.safe_load(local_parameters.read_text(encoding="utf-8"))
    return {
        **{key: str(local[key]) for key in FROM_LOCAL_PARAMETERS},
        "EndpointName": stack,
        "ApiAuth": "AWS_IAM",
        "PollIntervalSeconds": "15",
        "LogRetentionDays": "1",
    }


def _sam_value(value: str) -> str:
    """A value for ``--parameter-overrides Key=Value``, quoted as SAM CLI unquotes it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sam_commands(
    sam: str, stack: str, region: str, overrides: Mapping[str, str]
) -> list[list[str]]:
    """``sam build`` and a non-interactive ``sam deploy`` of a new stack (samconfig.toml's
    confirmation, stack name and prefix overridden)."""
    return [
        [sam, "build", "--template-file", "template.yaml"],
        [
            sam,
            "deploy",
            "--stack-name",
            stack,
            "--region",
            region,
            "--s3-prefix",
            stack,
            "--resolve-s3",
            "--no-confirm-changeset",
            "--no-fail-on-empty-changeset",
            "--capabilities",
            "CAPABILITY_IAM",
            "CAPABILITY_AUTO_EXPAND",
            "--tags",
            f"verify-aws={stack}",
            "--parameter-overrides",
            *(f"{key}={_sam_value(value)}" for key, value in overrides.items()),
        ],
    ]


def test_command(python: str = sys.executable) -> list[str]:
    """The acceptance test (pytest's per-test limit raised: a first run on AWS is minutes)."""
    return [
        python,
        "-m",
        "pytest",
        ACCEPTANCE_TEST,
        "-q",
        "-o",
        "timeout=5400",
        "-p",
        "no:cacheprovider",
    ]


def template_defaults(template: Path = REPO / "template.yaml") -> dict[str, str]:
    declared = yaml_loader.load(template)["Parameters"]
    return {name: str(spec.get("Default", "")) for name, spec in declared.items()}


def usage(overrides: Mapping[str, str]) -> costs.Usage:
    values = {**template_defaults(), **overrides}
    return costs.Usage(
        training_instance_type=values["TrainingInstanceType"],
        training_instances=int(values["TrainingInstanceCount"]),
        training_minutes=TRAINING_MINUTES,
        endpoint_instance_type=values["EndpointInstanceType"],
        endpoint_instances=int(values["EndpointInitialInstanceCount"]),
        endpoint_minutes=ENDPOINT_MINUTES,
        lambda_gb_seconds=LAMBDA_GB_SECONDS,
        lambda_requests=LAMBDA_REQUESTS,
        state_transitions=STATE_TRANSITIONS,
    )


def confirmed(environ: Mapping[str, str], ask: Callable[[str], str] | None) -> bool:
    """``CONFIRM=yes``, or a "yes" at the prompt (``ask`` is None without a terminal)."""
    if environ.get("CONFIRM", "").lower() == "yes":
        return True
    if ask is None:
        return False
    try:
        return ask("Deploy it and run the pipeline? Type yes to go on: ").strip().lower() == "yes"
    except EOFError:
        return False


def _unblock_stops() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def run(command: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run a command in the repository; stopped (SIGTERM, then SIGKILL) if this is interrupted.

    SIGINT and SIGTERM wait (blocked) while the child starts, so no interruption can come
    between its start and the handler that stops it; the child starts with them unblocked."""
    say(f"$ {' '.join(command[:2])} ...")
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        proc = subprocess.Popen(
            list(command),
            cwd=REPO,
            env=dict(env) if env is not None else None,
            preexec_fn=_unblock_stops,
        )
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a stop meanwhile lands here
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def guarded(work: Callable[[], int], clean: Callable[[], list[str]], again: str = "") -> int:
    """``work()``'s exit status, with ``clean()`` always run after it; SIGINT and SIGTERM stop
    the work (status 130) but not the cleanup. Whatever ``clean()`` leaves fails the run and
    is listed, with ``again``: the command that cleans up once more."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    def shielded(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        say(f"{name} ignored: still deleting what the run created")

    for s in STOP_SIGNALS:
        signal.signal(s, stop)
    status = 1
    try:
        status = work()
    except Interrupted as exc:
        say(f"{exc} received: stopping and deleting what the run created")
        status = EXIT_INTERRUPTED
    finally:
        for s in STOP_SIGNALS:
            signal.signal(s, shielded)
        try:
            left = clean()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if left:
        say("NOT deleted (delete by hand, or again: " + again + "):\n  " + "\n  ".join(left))
        return status or 1
    say("everything the run created is deleted")
    return status


def _sam() -> str | None:
    beside = Path(sys.executable).with_name("sam")
    return os.environ.get("SAM") or (str(beside) if beside.exists() else shutil.which("sam"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.verify_aws",
        description="Deploy a uniquely named stack to your AWS account, run the acceptance "
        "test against it (the local end-to-end test's assertions), then delete everything "
        "it created. Needs AWS credentials and CONFIRM=yes (or a yes at the prompt).",
    )
    parser.add_argument(
        "--stack", help=f"stack name, {STACK_PREFIX}... (default: {STACK_PREFIX}<time>-<hex>)"
    )
    parser.add_argument("--region", help="AWS region (default: your profile's, else us-east-1)")
    parser.add_argument(
        "--cleanup-only",
        action="store_true",
        help="only delete what a verification stack (--stack) left, e.g. after a killed run",
    )
    args = parser.parse_args(argv)
    try:
        session = boto3.Session(region_name=args.region)
    except botocore.exceptions.BotoCoreError as exc:
        return fail(f"{exc} (set AWS_PROFILE to a configured profile)")
    if problem := credentials_problem(session):
        return fail(problem)
    region = session.region_name or "us-east-1"
    if args.cleanup_only and not args.stack:
        return fail("--cleanup-only needs --stack NAME")
    stack = args.stack or unique_stack_name()
    if problem := stack_name_problem(stack):
        return fail(problem)
    overrides = parameters(stack)
    names = Names(stack=stack, endpoint=overrides["EndpointName"])
    clients: dict[str, BaseClient] = {}

    def client(service: str) -> BaseClient:
        if service not in clients:
            clients[service] = session.client(service, region_name=region)
        return clients[service]

    again = f"python -m tools.verify_aws --cleanup-only --stack {stack}"
    if args.cleanup_only:
        return guarded(lambda: 0, lambda: cleanup(client, names, say), again)
    try:
        lines = costs.estimate(usage(overrides), costs.Prices.load())
    except costs.UnknownPrice as exc:
        return fail(str(exc))
    print(f"verify-aws: stack {stack} in {region}; estimated cost of the run:")
    print(costs.render(lines, costs.Prices.load()))
    if region != "us-east-1":
        print(f"  (the table is us-east-1's; {region} may cost a little more)")
    ask = input if sys.stdin.isatty() else None
    if not confirmed(os.environ, ask):
        return fail("not confirmed: run `make verify-aws CONFIRM=yes` (or answer the prompt)")
    sam = _sam()
    if sam is None:
        return fail("the SAM CLI (sam) is not installed: run `make setup-dev`, or set SAM=path")
    env = {**os.environ, "VERIFY_TARGET": "aws", "VERIFY_STACK": stack, "AWS_REGION": region}

    def work() -> int:
        for command in [*sam_commands(sam, stack, region, overrides), test_command()]:
            status = run(command, env)
            if status:
                say(f"FAILED: `{' '.join(command[:2])}` exited {status}")
                return status
        say(f"PASSED on stack {stack}")
        return 0

    return guarded(work, lambda: cleanup(client, names, say), again)


if __name__ == "__main__":
    sys.exit(main())
