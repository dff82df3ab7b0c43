"""Settings given to ``install()``: where state goes, which Python runs the children."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localcloud.runtime.account_profiles import AccountProfile

from .container import Sandbox

# The repository root: model servers run ``python -m training.serve`` from here.
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SERVE_COMMAND = ("-m", "training.serve")


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    python: str
    time_scale: float = 1.0
    # arguments after the interpreter; ``--model-dir D --host H --port P`` are appended
    serve_command: tuple[str, ...] = DEFAULT_SERVE_COMMAND
    # instance quotas per type; None: no limit
    quotas: AccountProfile | None = None
    # the bubblewrap sandbox hosts run in (None: plain processes), and why / why not
    sandbox: Sandbox | None = None
    sandbox_note: str = "the sandbox is off"
    # whether script-mode jobs can run AWS's training toolkit in the sandbox
    toolkit: bool = False
    # random reclaims of managed spot training jobs, on average per hour of training
    spot_interruptions: float = 0.0

    def scaled(self, seconds: float) -> float:
        """A duration on the accelerated clock (autoscaling windows and cooldowns)."""
        return seconds * self.time_scale


_current: Settings | None = None


def configure(settings: Settings) -> None:
    global _current
    _current = settings


def current() -> Settings:
    if _current is None:
        raise RuntimeError("localcloud.services.sagemaker.install() has not been called")
    return _current
