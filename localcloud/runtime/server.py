"""The local cloud process: moto + real Lambda + real SageMaker + the HTTP API.

``python -m localcloud.runtime.server --state-dir D ...`` starts moto's threaded server on
127.0.0.1 (every service on one port), applies the local cloud's patches in this process,
deploys the template through the AWS APIs, serves the HTTP API and writes
``D/localcloud.json`` (endpoint, API URL, stack names) once ready. SIGTERM or SIGINT stops
everything it started and removes that file. It normally runs under ``python -m
localcloud`` (which ties it to its own lifetime); see docs/local-mode.md.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcloud import validation
from localcloud.cloudformation import describe_stacks
from localcloud.cloudformation.deployer import clients_for, deploy
from localcloud.cloudformation.intrinsics import TemplateError
from localcloud.cloudformation.stack import Function, Stack
from localcloud.cloudformation.template import resolve_stack
from localcloud.runtime import admin_api, moto_hooks, processes
from localcloud.runtime.account_profiles import AccountProfile, load_profile
from localcloud.runtime.launcher import port_not_free
from localcloud.runtime.settings import Settings, add_settings_arguments, settings_from_args
from localcloud.runtime.statefile import STATE_FILE, write_state
from localcloud.services.apigateway.http_api import HttpApi
from localcloud.services.lambda_.worker_pool import LambdaRuntime
from localcloud.services.sagemaker import model_registry
from localcloud.services.stepfunctions import wait_wakeup

log = logging.getLogger("localcloud")
MOTO_LINE = 300  # characters of a moto log record in server.log
# Functions whose environments start before the deploy: a run's first two states.
EARLY_FUNCTIONS = 2
# A step of the stop that takes this long is logged.
SLOW_STOP_S = 0.3


class StartError(Exception):
    """The local cloud cannot start (a port is taken): one line for the user."""


def _no_delay_handler() -> type:
    from moto.moto_server import threaded_moto_server as moto_server

    class NoDelay(moto_server.MotoRequestHandler):
        disable_nagle_algorithm = True  # ~1 ms less per API call here (werkzeug writes twice)

    return NoDelay


class MotoServer:
    """moto's threaded server on 127.0.0.1, bound in the caller's thread.

    ``moto.server.ThreadedMotoServer`` binds in its own thread and waits, unbounded, for
    that thread to say it is ready; on a port that is taken, werkzeug ends that thread
    (``sys.exit``) and the wait never ends. Here the socket is bound first and handed to
    werkzeug, so a taken port raises at once. The app is looked up on moto's module now,
    so a dispatcher the IAM enforcer installed there is the one that serves. Each service's
    app validates its requests (``localcloud.validation``), after the IAM check."""

    def __init__(self, port: int) -> None:
        from moto.moto_server import threaded_moto_server as moto_server

        validation.install()
        listener = socket.socket()
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
            self._server = moto_server.make_server(
                "127.0.0.1",
                port,
                admin_api.wrap(
                    moto_server.DomainDispatcherApplication(moto_server.create_backend_app)
                ),
                True,
                request_handler=_no_delay_handler(),
                fd=listener.fileno(),  # the server listens on its own duplicate of it
            )
        except OSError as exc:
            raise StartError(port_not_free("--port", port, exc)) from None
        finally:
            listener.close()
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            # werkzeug checks for shutdown every poll_interval (0.5 s): stopping waited for it
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="moto-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def app(self) -> Any:
        """The WSGI app the server serves (requests can be handed to it in process)."""
        return self._server.app

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


def pipeline_order(stack: Stack) -> list[str]:
    """The stack's function names in the order its state machines' definitions first
    name them (the states are written in the order they run), the others after."""
    definitions = "\n".join(m.definition for m in stack.state_machines)
    found = {f.name: definitions.find(f'"{f.arn}"') for f in stack.functions}
    named = sorted((at, name) for name, at in found.items() if at >= 0)
    return [name for _, name in named] + [name for name, at in found.items() if at < 0]


class FunctionLogs:
    """Function log lines -> CloudWatch Logs (the function's group) and a file per function."""

    def __init__(self, directory: Path, account_id: str, region: str) -> None:
        from moto.logs.models import logs_backends

        self._logs = logs_backends[account_id][region]
        self._directory = directory
        self._directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def __call__(self, fn: Function, stream: str, line: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            with (self._directory / f"{fn.name}.log").open("a") as f:
                f.write(f"{now:%Y-%m-%dT%H:%M:%S.%f}Z {stream} {line}\n")
            try:
                if fn.log_group not in self._logs.groups:
                    self._logs.create_log_group(fn.log_group, tags={})
                self._logs.ensure_log_stream(fn.log_group, stream)
                event = {"timestamp": int(now.timestamp() * 1000), "message": line}
                self._logs.put_log_events(fn.log_group, stream, [event])
            except Exception:  # the file copy above still has the line
                log.exception("writing a log line of %s to CloudWatch Logs failed", fn.name)


class LocalCloud:
    """Everything the server process runs; ``start`` then ``stop`` (bounded, idempotent)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stops: list[Callable[[], None]] = []
        self.stack: Stack | None = None
        self.endpoint_url = ""
        self.api: HttpApi | None = None
        self.containers = ""  # how SageMaker hosts run (sandbox or plain processes)

    def start(self) -> dict[str, Any]:
        s = self.settings
        moto_hooks.check_moto_version()
        stack = resolve_stack(
            s.template, region=s.region, stack_name=s.stack_name, overrides=s.overrides
        )
        self.stack = stack
        profile = load_profile(s.account_profile or None)
        moto_hooks.configure()
        moto_hooks.install_lambda_quota(profile)
        enforcer = self._install_iam(stack)  # before the server starts: it wraps its app
        # the models' patterns that cannot be checked, logged once (not on the start's path)
        threading.Thread(
            target=validation.report_uncompilable, name="validation-patterns", daemon=True
        ).start()
        server = MotoServer(s.port)
        self._stops.append(server.stop)
        port = server.port
        # moto's state-machine interpreter calls Lambda etc. at localhost:$MOTO_PORT
        os.environ["MOTO_PORT"] = str(port)
        self.endpoint_url = f"http://127.0.0.1:{port}"

        runtime = LambdaRuntime(
            stack.functions,
            region=stack.region,
            endpoint_url=self.endpoint_url,
            sink=FunctionLogs(s.state_dir / "logs" / "lambda", stack.account_id, stack.region),
            python=s.python,
            credentials=enforcer.function_credentials if enforcer else None,
        )
        self._stops.append(runtime.close)
        # The first states' environments start now, while the template deploys (handlers
        # only create clients at import: nothing calls AWS before a request), the others
        # once ready, one at a time in the state machine's order: no state of a run waits
        # for a cold start, and neither the deploy nor the run's first states share the
        # cores with a dozen inits.
        order = pipeline_order(stack)
        threading.Thread(
            target=runtime.prewarm,
            args=(order[:EARLY_FUNCTIONS],),
            kwargs={"rest": False},
            name="prewarm-first",
            daemon=True,
        ).start()
        moto_hooks.install_lambda(runtime)
        moto_hooks.install_trigger()
        # package events, CreateModel from a package, a new version InProgress a moment
        model_registry.install(validation_seconds=model_registry.VALIDATION_SECONDS)
        wait_wakeup.install()  # a Wait polling a training job ends when the job does
        self._stops.append(wait_wakeup.uninstall)
        moto_hooks.install_history_archive(s.state_dir / "executions")
        moto_hooks.install_execution_names()
        self._install_sagemaker(profile)

        clients = clients_for(self.endpoint_url, stack.region, server.app)
        notes = deploy(stack, clients, profile)
        describe_stacks.install(stack)  # DescribeStacks & co. answer for it
        self._stops.append(describe_stacks.uninstall)
        try:
            self.api = HttpApi(
                stack.functions,
                runtime.invoke,
                account_id=stack.account_id,
                region=stack.region,
                port=s.api_port,
            )
        except OSError as exc:
            raise StartError(port_not_free("--api-port", s.api_port, exc)) from None
        self.api.start()
        self._stops.append(self.api.stop)
        threading.Thread(
            target=runtime.prewarm, args=(order, 1), name="prewarm", daemon=True
        ).start()
        state = {
            "pid": os.getpid(),
            # the command that started it (`up`, `run`, a test): what a user would stop
            "owner_pid": os.getppid(),
            "owner": _command_line(os.getppid()),
            "endpoint_url": self.endpoint_url,
            "api_url": self.api.url,
            "region": stack.region,
            "stack_name": stack.name,
            "state_dir": str(s.state_dir),
            "started_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "buckets": [r.name for r in stack.of_type("AWS::S3::Bucket")],
            "state_machines": [m.arn for m in stack.state_machines],
            "routes": [r.route_key for r in self.api.router.routes],
            "outputs": stack.outputs,
            "parameters": stack.parameters,
            "account_profile": profile.name,
            "iam": "enforced" if enforcer else "off",
            "not_emulated": notes,
            "sagemaker_containers": self.containers,
        }
        write_state(s.state_dir, state)
        self._stops.append(lambda: (s.state_dir / STATE_FILE).unlink(missing_ok=True))
        return state

    def _install_iam(self, stack: Stack) -> Any:
        """Each role's calls checked against its policies (None with --no-iam)."""
        from localcloud.services import iam

        if not self.settings.enforce_iam:
            iam.uninstall()
            return None
        try:
            iam.check_installed()
        except iam.EvaluatorError as exc:
            raise TemplateError(f"IAM cannot be enforced: {exc}, or start with --no-iam") from None
        enforcer = iam.Enforcer(stack)
        iam.install(enforcer)
        self._stops.append(iam.uninstall)
        # start the evaluator now: the first call does not wait for node to load its data
        threading.Thread(target=enforcer.warm_up, name="iam-warm-up", daemon=True).start()
        return enforcer

    def _install_sagemaker(self, profile: AccountProfile) -> None:
        from localcloud.services import sagemaker

        s = self.settings
        self.containers = sagemaker.install(
            s.state_dir / "sagemaker",
            python=s.python,
            time_scale=s.time_scale,
            quotas=profile,
            sandbox=True,
            spot_interruptions=s.spot_interruptions,
        )
        log.info("local SageMaker: %s", self.containers)
        self._stops.append(sagemaker.shutdown)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            began = time.monotonic()
            try:
                stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s failed", stop)
            took = time.monotonic() - began
            if took >= SLOW_STOP_S:  # where a slow stop goes (bench.pipeline's "stop")
                log.info("stopping: %s took %.1f s", getattr(stop, "__qualname__", stop), took)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud.runtime.server",
        description="Run the local cloud in the foreground (normally started by `python -m "
        "localcloud up` or `run`).",
    )
    add_settings_arguments(parser)
    settings = settings_from_args(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per API call
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLineFromMoto())
    # If whoever started us dies, stop cleanly (and take our children down with us).
    processes.die_with_parent(signal.SIGTERM)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    cloud = LocalCloud(settings)
    try:
        state = cloud.start()
    except (TemplateError, StartError) as exc:
        print(f"localcloud: {exc}", file=sys.stderr, flush=True)
        cloud.stop()
        return 2
    except BaseException:
        cloud.stop()
        raise
    print(f"localcloud ready {json.dumps(state)}", flush=True)
    try:
        while not stopping.wait(1):
            pass
    finally:
        cloud.stop()
    log.info("stopped")
    return 0


class OneLineFromMoto(logging.Filter):
    """moto's own records (a failed execution's cause with a function's stack trace, several
    KB) as one line of at most MOTO_LINE characters; ``LOCALCLOUD_DEBUG=1`` keeps them whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("moto") and not os.environ.get("LOCALCLOUD_DEBUG"):
            text = " ".join(record.getMessage().split())
            record.msg = text if len(text) <= MOTO_LINE else text[: MOTO_LINE - 3] + "..."
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: once everything is stopped, freeing moto's
    state and botocore's models object by object took seconds of ``run``'s wall time. The
    exit handlers still run (the IAM evaluator's helper is stopped and reaped)."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
