"""Training jobs that really run: the submitted script-mode source on N local "hosts".

Each host is a process tree with its own ``/opt/ml``-like directory under
``<state_dir>/training-jobs/<job>/<host>/``. The run goes through SageMaker's statuses
(InProgress: Starting, Downloading, Training, Uploading; then Completed, Failed or
Stopped) on a thread of its own; the moto request that created it returns at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.sagemaker.exceptions import ValidationError

from localcloud.services.stepfunctions import wait_wakeup

from . import container, training_toolkit
from .host_processes import Child, LogFile, free_port
from .install_options import Settings
from .metric_definitions import HostMetrics, MetricParser
from .moto_backends import S3, LogStream, StorageError, extract, link_tree, pack_dirs
from .process_index import Registry

logger = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
STOP_GRACE_S = 120.0  # SageMaker's SIGTERM window before the kill
FAILED_PEER_GRACE_S = 10.0  # the other hosts, once one host failed
DEFAULT_MAX_RUNTIME_S = 86400
# A spot job's BillableTimeInSeconds: the seconds its hosts ran at this share of the
# on-demand price (the local stand-in for the spot market's discount; AWS reports spot
# savings as 1 - BillableTimeInSeconds / TrainingTimeInSeconds).
SPOT_PRICE_SHARE = 0.3
RECLAIM_GRACE_S = 2.0  # a reclaimed host's SIGTERM window (SageMaker: the spot notice)
MAX_REASON_CHARS = 1024
_POLL_S = 0.2


class JobError(Exception):
    """Ends the job as Failed; the message becomes its FailureReason."""


def _now() -> datetime:
    return datetime.now(UTC)


class TrainingRun:
    """Runs one CreateTrainingJob request against a moto ``FakeTrainingJob``."""

    def __init__(
        self, job: Any, account_id: str, region: str, request: dict[str, Any], settings: Settings
    ) -> None:
        self.job = job
        self._account_id = account_id
        self._region = region
        self._request = request
        self._settings = settings
        self._name: str = request["TrainingJobName"]
        count = int(request.get("ResourceConfig", {}).get("InstanceCount", 1))
        self._hosts = [f"algo-{i + 1}" for i in range(count)]
        self._instance_type = request.get("ResourceConfig", {}).get("InstanceType", "ml.m5.xlarge")
        self._dir = settings.state_dir / "training-jobs" / self._name
        self._layouts = [training_toolkit.HostLayout(self._dir / host) for host in self._hosts]
        spec = request.get("AlgorithmSpecification") or {}
        self._metrics = MetricParser(spec.get("MetricDefinitions") or [])
        self._hps = training_toolkit.decode_hyperparameters(request.get("HyperParameters"))
        self._channels: list[dict[str, Any]] = request.get("InputDataConfig") or []
        self._input_mode = spec.get("TrainingInputMode", "File")
        self._data_config = training_toolkit.input_data_config(self._channels, self._input_mode)
        self._spec = spec
        self._mode = container.job_mode(
            spec,
            self._hps.get(training_toolkit.PROGRAM),
            settings.sandbox is not None,
            settings.toolkit,
        )
        self._s3 = S3(account_id, region, request.get("RoleArn"))
        self._children: list[Child] = []
        self._logs: list[LogFile] = []
        self._wake = threading.Event()
        self._abandoned = False
        self._stop_status: str | None = None  # Stopped, MaxRuntimeExceeded, MaxWaitTimeExceeded
        self._spot = bool(request.get("EnableManagedSpotTraining"))
        self._interrupt = threading.Event()  # a spot reclaim, asked for by interrupt()
        self._running_s = 0.0  # how long the hosts ran, over every spot attempt
        self._restored: dict[Path, tuple[int, int]] = {}  # checkpoint file -> (size, mtime)
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"training-{self._name}"
        )

    # --- control, called from moto request threads -------------------------------------

    def observe_metrics(self, callback: Callable[[str, float], None]) -> None:
        """Before start: ``callback(name, value)`` for every metric value the job prints."""
        self._metrics.observe(callback)

    def start(self) -> None:
        job = self.job
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.secondary_status_transitions = []
        job.final_metric_data_list = []
        job.training_start_time = job.training_end_time = None
        self._transition("Starting", "Launching requested ML instances")
        self._thread.start()

    def request_stop(self) -> None:
        with self._lock:
            if self.job.training_job_status != "InProgress":
                raise ValidationError(
                    f"The request was rejected because the training job is in status "
                    f"{self.job.training_job_status}."
                )
            self._stop_status = "Stopped"
            self.job.training_job_status = "Stopping"
            self._transition("Stopping", "Stopping the training job")
        self._wake.set()

    def interrupt(self) -> None:
        """A spot reclaim: the hosts stop mid-epoch, the job goes Interrupted, then starts
        again on new hosts from the checkpoints it saved to CheckpointConfig.S3Uri."""
        if not self._spot:
            raise ValidationError(f"Training job {self._name} is not a managed spot training job.")
        if self.job.training_job_status != "InProgress" or self.job.secondary_status != "Training":
            raise ValidationError(
                f"Training job {self._name} can be interrupted only while Training "
                f"(it is {self.job.training_job_status}, {self.job.secondary_status})."
            )
        self._interrupt.set()
        self._wake.set()

    def abandon(self, timeout: float = 30.0) -> None:
        """Kill the hosts without finishing the job (account reset or shutdown)."""
        self._abandoned = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the run ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._transition("Downloading", "Downloading input data")
            self.job.training_start_time = _now()
            image = (self._request.get("AlgorithmSpecification") or {}).get("TrainingImage", "")
            self._s3.pull_image(str(image))  # as the job's role, like SageMaker
            self._prepare()
            if not self._stopping():
                failure = self._train()
                if failure is not None:
                    self._finish("Failed", "Failed", failure)
                    return
            if self._abandoned:
                return
            self._transition("Uploading", "Uploading generated training model")
            self._upload()
            if self._stop_status in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
                limit = self._stop_status.removesuffix("Exceeded")
                self._finish(
                    "Stopped",
                    self._stop_status,
                    f"Training job runtime exceeded {limit}InSeconds provided",
                )
            elif self._stop_status:
                self._finish("Stopped", "Stopped", "The training job was stopped")
            else:
                self._finish("Completed", "Completed", "Training job completed")
        except (JobError, StorageError) as exc:
            self._finish("Failed", "Failed", str(exc))
        except Exception as exc:  # a local bug must still end the job, never leave it running
            logger.exception("training job %s crashed", self._name)
            self._finish("Failed", "Failed", f"InternalServerError: {exc!r}")
        finally:
            for child in self._children:
                child.stop(grace=1.0)
            for log in self._logs:
                log.close()

    def _stopping(self) -> bool:
        return self._abandoned or self._stop_status is not None

    def _train(self) -> str | None:
        """Run the hosts to the end; after each spot interruption start again on new hosts
        from the saved checkpoints. The failure reason, or None."""
        while True:
            self._transition("Training", "Training in progress.")
            started = time.monotonic()
            with self._port_lock():
                failure = self._supervise()
            self._running_s += time.monotonic() - started
            if failure is not None or not self._interrupt.is_set() or self._stopping():
                return failure
            self._interrupt.clear()
            self._upload_checkpoints()  # SageMaker syncs them to S3 while the hosts run
            self._transition("Interrupted", "Training job interrupted: spot capacity reclaimed")
            if self._out_of_wait_time():
                self._stop_status = "MaxWaitTimeExceeded"
                return None
            self._transition("Starting", "Launching requested ML instances")
            self._transition("Downloading", "Downloading input data")
            self._new_hosts()
            self._prepare(again=True)

    def _out_of_wait_time(self) -> bool:
        """A spot job past MaxWaitTimeInSeconds (the wait for capacity and the training)."""
        limit = (self._request.get("StoppingCondition") or {}).get("MaxWaitTimeInSeconds")
        start = self.job.training_start_time
        return bool(self._spot and limit and start and (_now() - start).total_seconds() > limit)

    def _new_hosts(self) -> None:
        """Fresh hosts after a reclaim: each /opt/ml emptied (its log kept)."""
        self._children = []
        for layout in self._layouts:
            for path in layout.root.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.name != "training.log":
                    path.unlink()

    def _prepare(self, again: bool = False) -> None:
        program, submit = (
            self._hps.get(training_toolkit.PROGRAM),
            self._hps.get(training_toolkit.SUBMIT_DIRECTORY),
        )
        if self._mode == container.ENTRYPOINT:
            if self._settings.sandbox is None:
                raise JobError(container.no_sandbox_reason(self._settings.sandbox_note))
        elif not program or not submit:
            raise JobError(
                "ClientError: the local mode runs script-mode source: set the hyperparameters "
                f"{training_toolkit.PROGRAM} and {training_toolkit.SUBMIT_DIRECTORY} (an s3:// "
                f"sourcedir.tar.gz)"
            )
        elif not str(program).endswith(".py"):
            raise JobError(
                f"ClientError: entry point {program!r}: the local mode runs .py programs"
            )
        if self._dir.exists() and not again:  # a job of the same name in an earlier session
            stamp = _now().strftime("%Y%m%dT%H%M%S%f")
            self._dir.rename(self._dir.with_name(f"{self._name}.before-{stamp}"))
        for layout in self._layouts:
            layout.make([c["ChannelName"] for c in self._channels])
        if self._mode != container.ENTRYPOINT:
            sourcedir = self._dir / "sourcedir.tar.gz"
            self._s3.download(str(submit), sourcedir)
            for layout in self._layouts:
                extract(sourcedir, layout.code)
                if not (layout.code / program).is_file():
                    raise JobError(f"ClientError: entry point {program!r} is not in {submit}")
        for channel in self._channels:
            self._download_channel(channel)
        self._prepare_checkpoints()
        self._write_config_files()

    def _checkpoint_dirs(self) -> list[Path]:
        config = self._request.get("CheckpointConfig") if self._mode != container.PROCESS else None
        return container.checkpoint_dirs([layout.root for layout in self._layouts], config)

    def _prepare_checkpoints(self) -> None:
        """Each host's checkpoint directory, holding what CheckpointConfig.S3Uri has."""
        self._restored = {}
        for path in self._checkpoint_dirs():
            path.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(StorageError):  # nothing saved yet
                self._s3.download_prefix(self._request["CheckpointConfig"]["S3Uri"], path)
            self._restored.update({file: _version(file) for file in _files(path)})

    def _download_channel(self, channel: dict[str, Any]) -> None:
        name = channel["ChannelName"]
        source = channel.get("DataSource", {}).get("S3DataSource")
        if source is None:
            raise JobError(
                f"ClientError: channel {name!r}: the local mode reads S3 data sources only"
            )
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise JobError(
                f"ClientError: channel {name!r}: S3DataType {source['S3DataType']} "
                "is not supported by the local mode (use S3Prefix)"
            )
        if (channel.get("InputMode") or self._input_mode) == "Pipe":
            raise JobError(
                f"ClientError: channel {name!r}: Pipe input mode is not supported "
                "by the local mode (use File or FastFile)"
            )
        if source.get("S3DataDistributionType") == "ShardedByS3Key":
            for index, layout in enumerate(self._layouts):
                self._s3.download_prefix(
                    source["S3Uri"], layout.channel(name), shard=(index, len(self._layouts))
                )
            return
        first = self._layouts[0].channel(name)
        self._s3.download_prefix(source["S3Uri"], first)
        for layout in self._layouts[1:]:
            link_tree(first, layout.channel(name))

    def _write_config_files(self) -> None:
        for host, layout in zip(self._hosts, self._layouts, strict=True):
            files = {
                "hyperparameters.json": self._request.get("HyperParameters") or {},
                "resourceconfig.json": {
                    "current_host": host,
                    "current_instance_type": self._instance_type,
                    "current_group_name": "homogeneousCluster",
                    "hosts": self._hosts,
                    "instance_groups": [
                        {
                            "instance_group_name": "homogeneousCluster",
                            "instance_type": self._instance_type,
                            "hosts": self._hosts,
                        }
                    ],
                    "network_interface_name": "lo",
                },
                "inputdataconfig.json": self._data_config,
            }
            for filename, content in files.items():
                (layout.config / filename).write_text(json.dumps(content, indent=2))

    def _host_env(self, index: int, master_port: int) -> dict[str, str]:
        threads = max(1, (os.cpu_count() or 1) // len(self._hosts))
        env = {
            key: value
            for key, value in os.environ.items()
            if not training_toolkit.launcher_variable(key)
        }
        env.update(self._request.get("Environment") or {})
        env.setdefault("OMP_NUM_THREADS", str(threads))
        env.update(
            training_toolkit.training_env(
                job_name=self._name,
                layout=self._layouts[index],
                hosts=self._hosts,
                current_host=self._hosts[index],
                hyperparameters=self._hps,
                data_config=self._data_config,
                num_cpus=threads,
                module_dir=str(self._hps[training_toolkit.SUBMIT_DIRECTORY]),
                program=str(self._hps[training_toolkit.PROGRAM]),
            )
        )
        env.update(
            AWS_REGION=self._region,
            AWS_DEFAULT_REGION=self._region,
            PYTHONUNBUFFERED="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(master_port),
        )
        return env

    def _start_hosts(self) -> None:
        args = training_toolkit.to_cmd_args(training_toolkit.user_hyperparameters(self._hps))
        master_port = free_port()
        started = int(time.time())
        for index, (host, layout) in enumerate(zip(self._hosts, self._layouts, strict=True)):
            if self._mode != container.PROCESS:
                (argv, env), cwd = self._container_host(index), layout.root
            else:
                argv, env = self._process_host(index, args, master_port), None
                cwd = layout.code
            log = LogFile(layout.root / "training.log")
            self._logs.append(log)
            stream = LogStream(  # as the job's role, like SageMaker
                self._account_id,
                self._region,
                LOG_GROUP,
                f"{self._name}/{host}-{started}",
                self._request.get("RoleArn"),
            )
            published = HostMetrics(  # CloudWatch's, as the job's role
                self._account_id,
                self._region,
                self._spec.get("MetricDefinitions") or [],
                f"{self._name}/{host}",
                self._request.get("RoleArn"),
            )
            log.write(f"[local] {host}: {' '.join(argv)}")
            self._children.append(
                Child(
                    argv,
                    env=env or self._host_env(index, master_port),
                    cwd=cwd,
                    sinks=[log.write, stream.put, self._metrics.feed, published.feed],
                )
            )

    def _container_host(self, index: int) -> tuple[list[str], dict[str, str]]:
        assert self._settings.sandbox is not None
        return container.host_process(
            self._settings.sandbox,
            self._mode,
            self._spec,
            self._settings.python,
            root=self._layouts[index].root,
            hosts=(self._hosts, index),
            job=(self._name, self.job.arn, self._region),
            environment=self._request.get("Environment") or {},
            base={k: v for k, v in os.environ.items() if not training_toolkit.launcher_variable(k)},
        )

    def _process_host(self, index: int, args: list[str], master_port: int) -> list[str]:
        return training_toolkit.launch_command(
            python=self._settings.python,
            program=str(self._hps[training_toolkit.PROGRAM]),
            args=args,
            torch_distributed=bool(self._hps.get(training_toolkit.TORCH_DISTRIBUTED)),
            num_hosts=len(self._hosts),
            host_index=index,
            master_port=master_port,
        )

    def _supervise(self) -> str | None:
        """Run the hosts to the end; the failure reason, or None on success or stop."""
        self._start_hosts()
        stopping = self._request.get("StoppingCondition") or {}
        max_runtime = float(stopping.get("MaxRuntimeInSeconds") or DEFAULT_MAX_RUNTIME_S)
        deadline = time.monotonic() + max_runtime
        while True:
            if self._abandoned:
                self._stop_hosts(grace=1.0)
                return None
            if self._stop_status is not None:
                self._stop_hosts(STOP_GRACE_S)
                return None
            chance = self._settings.spot_interruptions * _POLL_S / 3600
            if self._spot and random.random() < chance:
                self._interrupt.set()  # the spot market took the capacity back
            if self._interrupt.is_set():
                self._stop_hosts(RECLAIM_GRACE_S)
                return None
            if self._out_of_wait_time():
                with self._lock:
                    self._stop_status = "MaxWaitTimeExceeded"
                    self.job.training_job_status = "Stopping"
                    self._transition("Stopping", "Stopping the training job")
                self._stop_hosts(STOP_GRACE_S)
                return None
            if time.monotonic() >= deadline:
                with self._lock:
                    self._stop_status = "MaxRuntimeExceeded"
                    self.job.training_job_status = "Stopping"
                    self._transition("Stopping", "Stopping the training job")
                self._stop_hosts(STOP_GRACE_S)
                return None
            codes = [child.returncode for child in self._children]
            for index, code in enumerate(codes):
                if code not in (None, 0):
                    self._stop_hosts(FAILED_PEER_GRACE_S)
                    return self._failure_reason(index, code)
            if all(code == 0 for code in codes):
                return None
            self._wake.wait(_POLL_S)

    def _stop_hosts(self, grace: float) -> None:
        threads = [threading.Thread(target=child.stop, args=(grace,)) for child in self._children]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _failure_reason(self, index: int, code: int) -> str:
        """The failing host's ``output/failure`` (first 1024 chars), else its stderr tail."""
        for layout in [self._layouts[index], *self._layouts]:
            if layout.failure_file.is_file():
                text = layout.failure_file.read_text(errors="replace").strip()
                if text:
                    return text[:MAX_REASON_CHARS]
        head = f'AlgorithmError: ExecuteUserScriptError: ExitCode {code} on {self._hosts[index]}: "'
        tail = self._children[index].stderr_tail().strip()
        budget = MAX_REASON_CHARS - len(head) - 1
        return f'{head}{tail[-budget:]}"'

    def _upload(self) -> None:
        output = self._request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        prefix = f"{output}/{self._name}/output"
        for source, archive in (("model", "model.tar.gz"), ("output_data", "output.tar.gz")):
            path = self._dir / archive
            pack_dirs([getattr(layout, source) for layout in self._layouts], path)
            self._s3.upload(path, f"{prefix}/{archive}")
        self.job.model_artifacts = {"S3ModelArtifacts": f"{prefix}/model.tar.gz"}
        self._upload_checkpoints()

    def _upload_checkpoints(self) -> None:
        """What SageMaker syncs from the checkpoint directories to CheckpointConfig.S3Uri:
        the files the hosts wrote, not those restored from S3 and left as they were (a host
        that saves none, as train.py's rank 1, would put the checkpoint the job resumed
        from back over a newer one)."""
        checkpoints = (self._request.get("CheckpointConfig") or {}).get("S3Uri", "")
        for folder in self._checkpoint_dirs():
            for path in _files(folder):
                if self._restored.get(path) != _version(path):
                    self._s3.upload(path, f"{checkpoints.rstrip('/')}/{path.relative_to(folder)}")

    def _port_lock(self) -> contextlib.AbstractContextManager[None]:
        """Sandboxed multi-host jobs rendezvous on port 7777 of the machine: one at a time."""
        if self._mode == container.PROCESS or len(self._hosts) < 2:
            return contextlib.nullcontext()
        return container.master_port_lock(
            lambda: self._transition("Training", "Waiting for port 7777 (another job holds it)"),
            self._stopping,
        )

    # --- status bookkeeping -------------------------------------------------------------

    def _transition(self, status: str, message: str) -> None:
        now = _now()
        transitions = self.job.secondary_status_transitions
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1]["EndTime"] = now
        transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
        self.job.secondary_status = status
        self.job.last_modified_time = now

    def _finish(self, status: str, secondary: str, message: str) -> None:
        if self._abandoned:
            return
        end = _now()
        job = self.job
        with self._lock:
            self._transition(secondary, message)
            job.secondary_status_transitions[-1]["EndTime"] = end
            job.final_metric_data_list = self._metrics.final()
            if status == "Failed":
                job.failure_reason = message
            start = job.training_start_time or end
            job.training_end_time = end
            seconds = max(1, int((end - start).total_seconds()))
            job.training_time_in_seconds = job.billable_time_in_seconds = seconds
            if self._spot:  # the hosts' running time at the spot share of the price
                job.billable_time_in_seconds = max(1, round(self._running_s * SPOT_PRICE_SHARE))
            job.training_job_status = status
        # a Wait polling this job ends now (localcloud/services/stepfunctions/wait_wakeup.py)
        wait_wakeup.settled(self._name)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _version(path: Path) -> tuple[int, int]:
    """A file's size and modification time: what tells a rewritten checkpoint file."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


TRAINING_RUNS: Registry[TrainingRun] = Registry()
