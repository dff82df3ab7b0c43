"""Model-server instances of one production variant: start, health-check, route, stop.

An instance is ``<python> <serve_command> --model-dir D --host 127.0.0.1 --port P`` run
from the repository root with the model container's Environment (CreateModel) applied;
it is in service once ``GET /ping`` answers 200.
"""

from __future__ import annotations

import http.client
import itertools
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .container import OPT_ML_MODEL, serving_code_problem
from .host_processes import Child, LogFile, free_port
from .install_options import REPO_ROOT, Settings
from .metrics import FleetMetrics
from .moto_backends import LogStream

STOP_GRACE_S = 10.0
PING_TIMEOUT_S = 2.0
_POLL_S = 0.2


class DeployError(Exception):
    """An instance did not come up; the message becomes the endpoint's FailureReason."""


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    custom_attributes: str | None


class Instance:
    """One model-server process listening on its own port."""

    def __init__(
        self,
        model_dir: Path,
        env: Mapping[str, str],
        logs: Path,
        stream: Callable[[str], LogStream],
        settings: Settings,
    ) -> None:
        self.id = f"i-{uuid.uuid4().hex[:17]}"
        self.port = free_port()
        self.log = LogFile(logs / f"{self.id}.log")
        served = OPT_ML_MODEL if settings.sandbox is not None else str(model_dir)
        argv = [settings.python, *settings.serve_command, "--model-dir", served]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        if settings.sandbox is not None:  # its own /opt/ml, the model read-only in it
            root = logs.parent / "instances" / self.id
            (root / "ml").mkdir(parents=True, exist_ok=True)
            (root / "tmp").mkdir(exist_ok=True)
            argv = settings.sandbox.command(
                argv,
                hostname=self.id,
                opt_ml=root / "ml",
                tmp=root / "tmp",
                cwd=str(REPO_ROOT),
                read_only={OPT_ML_MODEL: model_dir},
            )
        self.log.write(f"[local] {self.id}: {' '.join(argv)}")
        sinks = [self.log.write, stream(self.id).put]
        self.child = Child(argv, env=env, cwd=REPO_ROOT, sinks=sinks)

    @property
    def alive(self) -> bool:
        return self.child.returncode is None

    def wait_healthy(self, timeout: float, cancelled: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.child.returncode is not None:
                raise DeployError(
                    f"The model server of instance {self.id} exited with code "
                    f"{self.child.returncode} before passing the ping health check: "
                    f"{self.child.stderr_tail()[-700:]}"
                )
            if cancelled():
                raise DeployError("The deployment was cancelled")
            if self._ping():
                return
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"The primary container for production variant did not pass the ping health "
                    f"check within {timeout:.0f} seconds (instance {self.id})"
                )
            time.sleep(_POLL_S)

    def _ping(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PING_TIMEOUT_S)
        try:
            connection.request("GET", "/ping")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def invoke(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
        """POST /invocations; raises TimeoutError or OSError when the server does not answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", "/invocations", body=body, headers=dict(headers))
            response = connection.getresponse()
            return Reply(
                status=response.status,
                content_type=response.getheader("Content-Type", "application/octet-stream"),
                body=response.read(),
                custom_attributes=response.getheader("X-Amzn-SageMaker-Custom-Attributes"),
            )
        finally:
            connection.close()

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        self.child.stop(grace)
        self.log.close()


class VariantFleet:
    """The instances of one production variant, its traffic counter and scaling clock."""

    def __init__(
        self,
        *,
        name: str,
        config_name: str = "",
        model_dir: Path,
        env: Mapping[str, str],
        image: str,
        weight: float,
        logs: Path,
        stream_factory: Callable[[str], LogStream],
        settings: Settings,
        health_timeout: float,
    ) -> None:
        problem = serving_code_problem(model_dir, env)
        if problem:
            raise DeployError(problem)
        self.name = name
        self.config_name = config_name  # the endpoint config this fleet serves
        self.metrics = FleetMetrics()  # CloudWatch metrics of its real traffic
        self.image = image
        self.weight = weight
        self.desired = 0
        self._model_dir = model_dir
        self._env = dict(env)
        self._logs = logs
        self._stream_factory = stream_factory
        self._settings = settings
        self._health_timeout = health_timeout
        self._instances: list[Instance] = []
        self._turn = itertools.count()
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()
        self.last_scale_out = self.last_activity = time.monotonic()

    @property
    def instances(self) -> list[Instance]:
        with self._lock:
            return list(self._instances)

    def live_count(self) -> int:
        return sum(1 for instance in self.instances if instance.alive)

    def _instance_env(self, total: int) -> dict[str, str]:
        env = dict(os.environ)
        # share the cores between the fleet's instances unless the model says otherwise
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(1, total)))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self._env)
        return env

    def resize(self, count: int, cancelled: Callable[[], bool]) -> None:
        """Start or stop instances until ``count`` are in service (dead ones are replaced).

        New instances join the rotation only once all of them passed the health check;
        if one fails, the new ones are stopped and DeployError is raised.
        """
        self.desired = count
        with self._lock:
            dead = [i for i in self._instances if not i.alive]
            self._instances = [i for i in self._instances if i.alive]
            surplus = self._instances[count:]
            self._instances = self._instances[:count]
            missing = count - len(self._instances)
        for instance in dead + surplus:
            instance.stop()
        if missing <= 0:
            return
        env = self._instance_env(count)
        fresh: list[Instance] = []
        try:
            for _ in range(missing):
                instance = Instance(self._model_dir, env, self._logs, self._stream, self._settings)
                fresh.append(instance)
            for instance in fresh:
                instance.wait_healthy(self._health_timeout, cancelled)
        except BaseException:
            for instance in fresh:
                instance.stop(grace=1.0)
            raise
        with self._lock:
            self._instances.extend(fresh)

    def _stream(self, instance_id: str) -> LogStream:
        return self._stream_factory(f"{self.name}/{instance_id}")

    def pick(self) -> Instance | None:
        """The next live instance, round robin."""
        live = [instance for instance in self.instances if instance.alive]
        if not live:
            return None
        return live[next(self._turn) % len(live)]

    def record_call(self) -> None:
        with self._lock:
            self._calls.append(time.monotonic())

    def calls_since(self, since: float) -> int:
        with self._lock:
            while self._calls and self._calls[0] < since - 3600:
                self._calls.popleft()  # an hour of history is plenty for any window
            return sum(1 for t in self._calls if t >= since)

    def stop(self) -> None:
        with self._lock:
            instances, self._instances = self._instances, []
        threads = [threading.Thread(target=instance.stop) for instance in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
