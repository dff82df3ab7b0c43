"""`python -m tools.verify_aws` (`make verify-aws`) before it touches an account: it refuses
without credentials or confirmation in one line, prints the estimated cost first, and the
`sam` command lines it runs parse, with SAM CLI's own parser, as a non-interactive deploy of
a new stack. What it deletes, also when interrupted: test_cleanup.py."""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from samcli.commands.deploy.command import cli as sam_deploy

from mlops.naming import ENDPOINT_NAME_MAX, check_endpoint_name
from tests.acceptance.verify_support import REPO, bare_environment, fake_sam
from tools import costs, verify_aws


def verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.verify_aws", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,  # no terminal: no prompt
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_credentials_it_refuses_in_one_line(tmp_path: Path) -> None:
    done = verify(bare_environment(tmp_path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "verify-aws: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or run `aws configure`)"
    ]


def test_a_missing_profile_is_refused_in_one_line(tmp_path: Path) -> None:
    done = verify({**bare_environment(tmp_path), "AWS_PROFILE": "nowhere"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "verify-aws: The config profile (nowhere) could not be found "
        "(set AWS_PROFILE to a configured profile)"
    ]


@pytest.mark.parametrize("confirm", [None, "no"])
def test_without_confirmation_it_prints_the_cost_and_refuses(
    tmp_path: Path, confirm: str | None
) -> None:
    sam = fake_sam(tmp_path, f"touch {tmp_path / 'ran'}")  # a mark if anything ran
    env = {
        **bare_environment(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "SAM": str(sam),
        **({"CONFIRM": confirm} if confirm else {}),
    }
    done = verify(env)
    assert done.returncode == 2
    assert "estimated cost of the run" in done.stdout
    assert "total" in done.stdout and "recorded" in done.stdout
    assert done.stderr.splitlines() == [
        "verify-aws: not confirmed: run `make verify-aws CONFIRM=yes` (or answer the prompt)"
    ]
    assert not (tmp_path / "ran").exists()


def test_the_prompt_takes_only_an_explicit_yes() -> None:
    def answer(text: str):  # type: ignore[no-untyped-def]
        return lambda _question: text

    def closed(_question: str) -> str:
        raise EOFError

    assert verify_aws.confirmed({"CONFIRM": "yes"}, None)
    assert not verify_aws.confirmed({}, None)
    assert verify_aws.confirmed({}, answer(" YES\n"))
    assert not verify_aws.confirmed({}, answer("y"))
    assert not verify_aws.confirmed({}, closed)


def test_the_sam_commands_are_a_non_interactive_deploy_of_a_new_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)  # SAM CLI reads samconfig.toml (confirm_changeset = true) from here
    stack = "icp-verify-20261208-010203-ab12"
    overrides = verify_aws.parameters(stack)
    build, deploy = verify_aws.sam_commands("sam", stack, "eu-west-1", overrides)
    assert build == ["sam", "build", "--template-file", "template.yaml"]
    assert deploy[:2] == ["sam", "deploy"]
    parsed = sam_deploy.make_context("deploy", deploy[2:])
    assert parsed.params["stack_name"] == stack
    assert parsed.params["confirm_changeset"] is False
    assert parsed.params["fail_on_empty_changeset"] is False
    assert parsed.params["resolve_s3"] is True
    assert parsed.params["s3_prefix"] == stack
    assert parsed.params["capabilities"] == ("CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND")
    assert parsed.obj.region == "eu-west-1"
    assert parsed.params["parameter_overrides"] == overrides  # quoted JSON survives
    hyperparameters = json.loads(overrides["TrainingHyperparameters"])
    assert hyperparameters["arch"] == "resnet18"  # the local runs' small model
    assert overrides["EndpointName"] == stack and overrides["ApiAuth"] == "AWS_IAM"


def test_stack_names_are_unique_and_fit_the_endpoint_name() -> None:
    now = datetime.datetime(2026, 12, 8, 1, 2, 3, tzinfo=datetime.UTC)
    names = {verify_aws.unique_stack_name(now) for _ in range(20)}
    assert len(names) > 1
    for name in names:
        assert name.startswith("icp-verify-20261208-010203-")
        assert check_endpoint_name(name) == name and len(name) <= ENDPOINT_NAME_MAX


def test_the_estimate_prices_each_meter_from_the_dated_table() -> None:
    prices = costs.Prices.load()
    assert prices.table["recorded"] and set(prices.table["sources"]) == {
        "sagemaker",
        "lambda",
        "stepfunctions",
    }
    usage = costs.Usage(
        training_instance_type="ml.m5.xlarge",
        training_instances=2,
        training_minutes=30,
        endpoint_instance_type="ml.m5.large",
        endpoint_instances=2,
        endpoint_minutes=60,
        lambda_gb_seconds=1000,
        lambda_requests=1_000_000,
        state_transitions=2000,
    )
    lines = costs.estimate(usage, prices)
    t = prices.table
    assert [round(cost, 6) for _, cost in lines] == [
        round(2 * 0.5 * t["sagemaker_training_per_hour"]["ml.m5.xlarge"], 6),
        round(2 * 1 * t["sagemaker_hosting_per_hour"]["ml.m5.large"], 6),
        round(1000 * t["lambda_per_gb_second"] + t["lambda_per_million_requests"], 6),
        round(2 * t["stepfunctions_per_thousand_transitions"], 6),
    ]
    assert "total" in costs.render(lines, prices)


def test_an_instance_type_without_a_price_is_named() -> None:
    overrides = {**verify_aws.parameters("s"), "EndpointInstanceType": "ml.p5.48xlarge"}
    with pytest.raises(costs.UnknownPrice, match=r"no hosting price for ml.p5.48xlarge in tools/"):
        costs.estimate(verify_aws.usage(overrides), costs.Prices.load())


@pytest.mark.parametrize(
    ("stack", "why"),
    [
        ("image-classifier-pipeline", "a verification stack's name starts with icp-verify-"),
        ("icp-verify-Upper", "it is also the endpoint's name"),
        ("icp-verify-" + "x" * 36, "at most 46 characters"),
    ],
)
def test_cleanup_only_refuses_a_stack_that_is_no_verification_stack(
    tmp_path: Path, stack: str, why: str
) -> None:
    env = {**bare_environment(tmp_path), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    # an endpoint where nothing answers: the refusal calls nothing
    done = verify(
        {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "--cleanup-only", "--stack", stack
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"verify-aws: --stack {stack}: ") and why in line


def test_a_cleanup_that_cannot_reach_the_account_says_so_without_a_traceback(
    tmp_path: Path,
) -> None:
    with socket.socket() as unreachable:  # bound, never listening: connections are refused
        unreachable.bind(("127.0.0.1", 0))
        port = unreachable.getsockname()[1]
        env = {
            **bare_environment(tmp_path),
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_MAX_ATTEMPTS": "1",
        }
        done = verify(env, "--cleanup-only", "--stack", "icp-verify-gone")
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert "could not delete the stack: Could not connect" in done.stdout
    assert (
        "NOT deleted (delete by hand, or again: python -m tools.verify_aws --cleanup-only "
        "--stack icp-verify-gone)" in done.stdout
    )
