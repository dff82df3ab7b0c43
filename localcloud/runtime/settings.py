"""Settings of one local cloud, shared by the server process and the command line."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.cloudformation.intrinsics import TemplateError
from localcloud.cloudformation.template import load_overrides, stack_name_from_samconfig
from localcloud.runtime.account_profiles import DEFAULT_ACCOUNT_FILE, load_profile
from localcloud.runtime.statefile import STATE_FILE

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = PROJECT_ROOT / "template.yaml"
DEFAULT_PARAMETERS = Path(__file__).resolve().parents[1] / "parameters.yaml"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".localcloud"
STATE_VARIABLE = "LOCALCLOUD_STATE"  # `up` exports it: <state dir>/<STATE_FILE>
DEFAULT_REGION = "us-east-1"
# Autoscaling windows and cooldowns run 20x faster locally (300 s -> 15 s).
DEFAULT_TIME_SCALE = 0.05


@dataclass(frozen=True)
class Settings:
    template: Path = DEFAULT_TEMPLATE
    parameters_file: Path | None = DEFAULT_PARAMETERS
    parameter_overrides: tuple[str, ...] = ()
    state_dir: Path = DEFAULT_STATE_DIR
    region: str = DEFAULT_REGION
    stack_name: str = ""
    port: int = 0
    api_port: int = 0
    time_scale: float = DEFAULT_TIME_SCALE
    python: str = sys.executable
    overrides: dict[str, Any] = field(default_factory=dict)
    account_profile: str = ""  # empty: the one localcloud/account.yaml chooses
    enforce_iam: bool = True  # each role's calls are checked against its policies
    spot_interruptions: float = 0.0  # random reclaims of a spot job, per hour of its training

    def server_argv(self) -> list[str]:
        """The same settings as ``python -m localcloud.runtime.server`` arguments."""
        argv = [
            "--template", str(self.template),
            "--state-dir", str(self.state_dir),
            "--region", self.region,
            "--stack-name", self.stack_name,
            "--port", str(self.port),
            "--api-port", str(self.api_port),
            "--time-scale", str(self.time_scale),
        ]  # fmt: skip
        argv += ["--parameters", str(self.parameters_file or "none")]
        if self.account_profile:
            argv += ["--account-profile", self.account_profile]
        if not self.enforce_iam:
            argv += ["--no-iam"]
        if self.spot_interruptions:
            argv += ["--spot-interruptions", str(self.spot_interruptions)]
        for item in self.parameter_overrides:
            argv += ["--parameter", item]
        return argv


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("local cloud")
    group.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help="the SAM template to deploy (default: %(default)s)",
    )
    group.add_argument(
        "--parameters",
        type=Path,
        default=DEFAULT_PARAMETERS,
        help="YAML file of template parameter overrides for local runs "
        "(default: %(default)s; 'none' for the template's defaults)",
    )
    group.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one template parameter (repeatable; wins over --parameters)",
    )
    group.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help=f"where artifacts, logs and histories are kept (default: ${STATE_VARIABLE}'s "
        "folder, else %(default)s)",
    )
    group.add_argument("--region", default=DEFAULT_REGION, help="AWS region (default: %(default)s)")
    group.add_argument(
        "--stack-name", default="", help="stack name (default: samconfig.toml's stack_name)"
    )
    group.add_argument(
        "--port", type=int, default=0, help="port of the AWS endpoint (default: a free port)"
    )
    group.add_argument(
        "--api-port", type=int, default=0, help="port of the HTTP API (default: a free port)"
    )
    group.add_argument(
        "--account-profile",
        default="",
        metavar="NAME",
        help="the account's quotas: a profile of "
        f"{DEFAULT_ACCOUNT_FILE.relative_to(PROJECT_ROOT)} (e.g. typical, new-account; "
        "default: the one that file chooses)",
    )
    group.add_argument(
        "--no-iam",
        action="store_true",
        help="do not enforce IAM: every call of the functions, the state machine, the rule and "
        "SageMaker is allowed (default: enforced against the template's roles)",
    )
    group.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE,
                       help="multiplier for autoscaling windows and cooldowns "
                       "(default: %(default)s)")  # fmt: skip
    group.add_argument("--spot-interruptions", type=float, default=0.0, metavar="PER_HOUR",
                       help="reclaim managed spot training jobs at random, on average this "
                       "many times per hour of training (default: never; `interrupt JOB` "
                       "reclaims one now)")  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> Settings:
    parameters_file = None if str(args.parameters) == "none" else args.parameters
    overrides: dict[str, Any] = {}
    if parameters_file is not None:
        if not parameters_file.is_file():
            raise SystemExit(f"localcloud: parameters file {parameters_file} does not exist")
        overrides.update(load_overrides(parameters_file))
    for item in args.parameter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"localcloud: --parameter expects NAME=VALUE, got {item!r}")
        overrides[name] = value
    try:
        account_profile = load_profile(args.account_profile or None).name
    except TemplateError as exc:
        raise SystemExit(f"localcloud: {exc}") from None
    template = args.template.resolve()
    if not template.is_file():
        raise SystemExit(f"localcloud: template {template} does not exist")
    stack_name = (
        args.stack_name or stack_name_from_samconfig(template.parent) or template.parent.name
    )
    return Settings(
        template=template,
        parameters_file=parameters_file.resolve() if parameters_file else None,
        parameter_overrides=tuple(args.parameter),
        state_dir=args.state_dir.resolve(),
        region=args.region,
        stack_name=stack_name,
        port=args.port,
        api_port=args.api_port,
        time_scale=args.time_scale,
        overrides=overrides,
        account_profile=account_profile,
        enforce_iam=not args.no_iam,
        spot_interruptions=args.spot_interruptions,
    )


__all__ = ["Settings", "TemplateError", "add_settings_arguments", "settings_from_args"]


def default_state_dir() -> Path:
    """The state dir that `up` exported (``LOCALCLOUD_STATE``: its state file, or the dir
    itself), else the repository's .localcloud/."""
    exported = os.environ.get(STATE_VARIABLE)
    if not exported:
        return DEFAULT_STATE_DIR
    path = Path(exported)
    return path.parent if path.name == STATE_FILE else path
