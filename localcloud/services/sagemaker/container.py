"""The SageMaker container contract without Docker: each host in a bubblewrap sandbox.

A training host (or endpoint instance) runs under ``bwrap`` with the machine's file system,
except that ``/opt/ml`` is the host's own directory (and ``TMPDIR`` its own), ``/etc/hosts`` makes
every ``algo-N`` of the job resolve to 127.0.0.1, and its UTS namespace carries the hostname
``algo-N``. The network is the machine's (the hosts of a job reach each other on loopback).

What runs inside is what the container would run:

- a job with ``AlgorithmSpecification.ContainerEntrypoint`` (the SageMaker Python SDK v3's
  ``ModelTrainer``: ``/bin/bash -c .../sm_train.sh``) runs that entry point and arguments;
- a script-mode job (``sagemaker_program``) runs the PyTorch containers' entry point,
  AWS's training toolkit (``train`` from ``sagemaker-training``, with
  ``SAGEMAKER_TRAINING_MODULE=sagemaker_pytorch_container.training:main``), when the
  toolkits are installed.

Where bwrap is missing or does not work, ``probe`` says why in one line and the local
SageMaker runs hosts as plain processes (see training.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OPT_ML = "/opt/ml"
OPT_ML_MODEL = "/opt/ml/model"
# SageMaker's drivers (the SDK's sm_train.sh and the PyTorch toolkit) rendezvous on this port.
MASTER_PORT = 7777
TOOLKIT_MODULE = "sagemaker_pytorch_container.training:main"
PROBE_TIMEOUT_S = 15.0
DISABLE_VARIABLE = "LOCALCLOUD_SANDBOX"  # "0" turns the sandbox off


@dataclass(frozen=True)
class Sandbox:
    """How to run a command as one SageMaker host under bwrap."""

    bwrap: str

    def command(
        self,
        argv: Sequence[str],
        *,
        hostname: str,
        opt_ml: Path,
        tmp: Path,
        hosts_file: Path | None = None,
        cwd: str = OPT_ML,
        read_only: Mapping[str, Path] | None = None,
    ) -> list[str]:
        """``argv`` as a host: ``opt_ml`` at /opt/ml (plus ``read_only`` binds under it),
        ``tmp`` as its TMPDIR, ``hosts_file`` at /etc/hosts, hostname ``hostname``.

        /tmp itself stays the machine's: the interpreter or the code may live under it."""
        command = [self.bwrap, "--dev-bind", "/", "/", *_opt_binds()]
        command += ["--bind", str(opt_ml), OPT_ML, "--setenv", "TMPDIR", str(tmp)]
        for target, source in (read_only or {}).items():
            command += ["--ro-bind", str(source), target]
        if hosts_file is not None:
            command += ["--ro-bind", str(hosts_file), "/etc/hosts"]
        command += ["--unshare-uts", "--hostname", hostname, "--die-with-parent"]
        return [*command, "--chdir", cwd, "--", *argv]


def _opt_binds() -> list[str]:
    """A fresh /opt that still holds what the machine has there (but no /opt/ml)."""
    binds = ["--tmpfs", "/opt"]
    opt = Path("/opt")
    if not opt.is_dir():
        return binds
    for entry in sorted(opt.iterdir()):
        if entry.name == "ml":
            continue
        if entry.is_symlink():
            binds += ["--symlink", os.readlink(entry), str(entry)]
        else:
            binds += ["--dev-bind", str(entry), str(entry)]
    return binds


def hosts_file(path: Path, hosts: Sequence[str]) -> Path:
    """The machine's /etc/hosts plus a line that resolves ``hosts`` to 127.0.0.1."""
    try:
        base = Path("/etc/hosts").read_text()
    except OSError:
        base = "127.0.0.1 localhost\n"
    if base and not base.endswith("\n"):
        base += "\n"
    path.write_text(f"{base}127.0.0.1 {' '.join(hosts)}\n")
    return path


def probe(python: str = sys.executable) -> tuple[Sandbox | None, str]:
    """The sandbox, or None and why not (one line)."""
    if os.environ.get(DISABLE_VARIABLE, "").strip().lower() in ("0", "false", "no", "off"):
        return None, f"the sandbox is turned off ({DISABLE_VARIABLE}=0)"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (bwrap) is not installed"
    sandbox = Sandbox(bwrap)
    check = (
        "import os, socket, sys; "
        "sys.exit(0 if socket.gethostname() == 'algo-1' and os.path.isdir('/opt/ml/x') else 3)"
    )
    with tempfile.TemporaryDirectory(prefix="localcloud-probe-") as tmp:
        root = Path(tmp)
        (root / "ml" / "x").mkdir(parents=True)
        (root / "tmp").mkdir()
        argv = sandbox.command(
            [python, "-c", check],
            hostname="algo-1",
            opt_ml=root / "ml",
            tmp=root / "tmp",
            hosts_file=hosts_file(root / "hosts", ["algo-1"]),
            cwd="/",
        )
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"bwrap does not work here: {exc}"
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, f"bwrap does not work here: {detail}"
    return sandbox, "each host runs in a bubblewrap sandbox"


def toolkit_missing() -> str | None:
    """Why the SageMaker training toolkits cannot run script-mode jobs, or None."""
    for module in ("sagemaker_training", "sagemaker_pytorch_container"):
        if importlib.util.find_spec(module) is None:
            return f"{module.replace('_', '-')} is not installed"
    return None


def describe(sandbox: Sandbox | None, reason: str, toolkit: str | None) -> str:
    """The one line the local cloud prints about how SageMaker containers run."""
    if sandbox is None:
        return f"hosts run as plain processes: {reason} (ModelTrainer jobs need the sandbox)"
    if toolkit is not None:
        return f"{reason}; script-mode jobs run without AWS's training toolkit ({toolkit})"
    return f"{reason}; script-mode jobs run AWS's training toolkit"


def toolkit_command(python: str) -> list[str]:
    """The PyTorch training container's entry point: the toolkit's ``train``."""
    return [python, "-c", "from sagemaker_training.cli.train import main; main()"]


def container_path(python: str) -> str:
    """PATH inside the sandbox: the interpreter's bin directory (python3, pip, torchrun)."""
    bin_dir = str(Path(python).parent)
    rest = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return f"{bin_dir}:{rest}"


@contextlib.contextmanager
def master_port_lock(waiting: Callable[[], None], cancelled: Callable[[], bool]) -> Iterator[None]:
    """Hold the machine-wide lock on port 7777 (multi-host jobs share the machine's network
    and SageMaker's drivers all rendezvous on that port): one such job at a time. A job
    cancelled while it waits goes on without the lock (it stops at once anyway)."""
    path = Path(tempfile.gettempdir()) / f"localcloud-sagemaker-port-{MASTER_PORT}.lock"
    with path.open("a") as handle:
        told = False
        while not cancelled():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    waiting()
                    told = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- what a training job runs in its container -----------------------------------------

ENTRYPOINT, TOOLKIT, PROCESS = "entrypoint", "toolkit", "process"


def job_mode(spec: Mapping[str, object], program: object, sandboxed: bool, toolkit: bool) -> str:
    """How a job's hosts run: the job's ContainerEntrypoint, the PyTorch container's toolkit
    (script mode, sandbox and toolkits available) or plain processes (today's fallback)."""
    if spec.get("ContainerEntrypoint"):
        return ENTRYPOINT
    if sandboxed and toolkit and program:
        return TOOLKIT
    return PROCESS


def no_sandbox_reason(note: str) -> str:
    return (
        "ClientError: a ContainerEntrypoint runs against the container contract (/opt/ml, "
        f"algo-N hosts), which the local mode provides in a bubblewrap sandbox: {note}"
    )


def host_argv(mode: str, spec: Mapping[str, object], python: str) -> list[str]:
    if mode == ENTRYPOINT:
        entrypoint = [str(a) for a in spec.get("ContainerEntrypoint") or []]  # type: ignore[union-attr]
        return [*entrypoint, *[str(a) for a in spec.get("ContainerArguments") or []]]  # type: ignore[union-attr]
    return toolkit_command(python)


def host_env(
    base: Mapping[str, str],
    *,
    mode: str,
    python: str,
    job_name: str,
    job_arn: str,
    region: str,
    threads: int,
    environment: Mapping[str, str],
) -> dict[str, str]:
    """What the platform gives a container: the job's Environment and a few variables; the
    toolkit or the SDK's drivers derive the ``SM_*`` ones from /opt/ml themselves."""
    env = dict(base)
    env.update(
        PATH=container_path(python),
        TRAINING_JOB_NAME=job_name,
        TRAINING_JOB_ARN=job_arn,
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=str(threads),
    )
    if mode == TOOLKIT:
        env["SAGEMAKER_TRAINING_MODULE"] = TOOLKIT_MODULE
    env.update(environment)
    return env


def sandboxed_host(
    sandbox: Sandbox, argv: list[str], *, root: Path, host: str, hosts: Sequence[str]
) -> list[str]:
    """``argv`` wrapped to run as ``host``: ``root`` is its /opt/ml."""
    tmp = root.parent / ".tmp" / host
    tmp.mkdir(parents=True, exist_ok=True)
    etc_hosts = hosts_file(root.parent / ".tmp" / "hosts", hosts)
    return sandbox.command(argv, hostname=host, opt_ml=root, tmp=tmp, hosts_file=etc_hosts)


def host_process(
    sandbox: Sandbox,
    mode: str,
    spec: Mapping[str, object],
    python: str,
    *,
    root: Path,
    hosts: tuple[Sequence[str], int],
    job: tuple[str, str, str],
    environment: Mapping[str, str],
    base: Mapping[str, str],
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of host ``hosts[1]`` of the job ``(name, arn, region)``:
    the container's entry point in the sandbox, ``root`` as its /opt/ml."""
    names, index = hosts
    name, arn, region = job
    argv = host_argv(mode, spec, python)
    argv = sandboxed_host(sandbox, argv, root=root, host=names[index], hosts=names)
    env = host_env(
        base,
        mode=mode,
        python=python,
        job_name=name,
        job_arn=arn,
        region=region,
        threads=max(1, (os.cpu_count() or 1) // len(names)),
        environment=environment,
    )
    return argv, env


def checkpoint_dirs(roots: Sequence[Path], config: Mapping[str, str] | None) -> list[Path]:
    """Each host's directory behind CheckpointConfig.LocalPath (default /opt/ml/checkpoints)."""
    local = (config or {}).get("LocalPath") or f"{OPT_ML}/checkpoints"
    if not config or not (local == OPT_ML or local.startswith(OPT_ML + "/")):
        return []  # outside /opt/ml: the local mode keeps only /opt/ml per host
    return [root / os.path.relpath(local, OPT_ML) for root in roots]


# --- what an endpoint instance serves ------------------------------------------------------


def serving_code_problem(model_dir: Path, environment: Mapping[str, str]) -> str | None:
    """Why the model's ``SAGEMAKER_PROGRAM`` cannot be served from its ``code/``, or None.

    The PyTorch serving container imports ``code/<SAGEMAKER_PROGRAM>`` from the model data
    (``SAGEMAKER_SUBMIT_DIRECTORY`` only matters when the code is not in the archive)."""
    program = environment.get("SAGEMAKER_PROGRAM")
    if not program:
        return None
    code = model_dir / "code"
    if not (code / program).is_file():
        found = sorted(p.name for p in code.glob("*.py")) if code.is_dir() else []
        return (
            f"SAGEMAKER_PROGRAM={program} is not in the model data's code/ "
            f"(found: {', '.join(found) or 'no code/ folder'})"
        )
    if program != "inference.py":
        return (
            f"SAGEMAKER_PROGRAM={program}: the local model server runs code/inference.py "
            "(name the handlers file inference.py)"
        )
    return None
