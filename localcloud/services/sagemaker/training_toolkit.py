"""What the SageMaker training toolkit does inside a container, as plain functions.

Mirrors aws/sagemaker-training-toolkit (``mapping.py``, ``environment.py``,
``torch_distributed.py``) and the PyTorch toolkit's launcher choice: hyperparameters are
JSON-decoded, ``sagemaker_*`` keys are stripped, the rest become ``--key value`` arguments
sorted by key, and the ``SM_*`` environment describes the host, its channels and its peers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Hyperparameters the toolkits read for themselves; never passed to the user script.
PROGRAM = "sagemaker_program"
SUBMIT_DIRECTORY = "sagemaker_submit_directory"
TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"


def decode_hyperparameters(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """JSON-decode every value, keeping the raw string where it is not JSON (like the toolkit)."""
    decoded: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


# Set by a tuning job on each of its training jobs; the toolkit keeps it from the script too.
TUNING_OBJECTIVE = "_tuning_objective_metric"


def user_hyperparameters(decoded: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in decoded.items() if not k.startswith("sagemaker_") and k != TUNING_OBJECTIVE
    }


def to_cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """``{"epochs": 2, "lr": 0.1}`` -> ``["--epochs", "2", "--lr", "0.1"]``, sorted by key."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        args.append(f"--{key}" if len(key) > 1 else f"-{key}")
        if isinstance(value, Mapping):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(str(value))
    return args


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class HostLayout:
    """One host's ``/opt/ml`` equivalent under the job's state directory."""

    root: Path

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def config(self) -> Path:
        return self.input / "config"

    def channel(self, name: str) -> Path:
        return self.input / "data" / name

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def failure_file(self) -> Path:
        return self.output / "failure"

    def make(self, channels: list[str]) -> None:
        for folder in (self.code, self.config, self.model, self.output_data):
            folder.mkdir(parents=True, exist_ok=True)
        for name in channels:
            self.channel(name).mkdir(parents=True, exist_ok=True)


def input_data_config(channels: list[dict[str, Any]], input_mode: str) -> dict[str, Any]:
    """The ``inputdataconfig.json`` content: per channel, its input mode and distribution."""
    config = {}
    for channel in channels:
        s3 = channel.get("DataSource", {}).get("S3DataSource", {})
        config[channel["ChannelName"]] = {
            "TrainingInputMode": channel.get("InputMode") or input_mode,
            "S3DistributionType": s3.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
    return config


def training_env(
    *,
    job_name: str,
    layout: HostLayout,
    hosts: list[str],
    current_host: str,
    hyperparameters: Mapping[str, Any],
    data_config: Mapping[str, Any],
    num_cpus: int,
    module_dir: str,
    program: str,
) -> dict[str, str]:
    """The ``SM_*`` variables (and ``TRAINING_JOB_NAME``) a training container sees."""
    channels = sorted(data_config)
    resource_config = {"current_host": current_host, "hosts": hosts}
    user_hps = user_hyperparameters(hyperparameters)
    env_dict: dict[str, Any] = {
        "channel_input_dirs": {c: str(layout.channel(c)) for c in channels},
        "current_host": current_host,
        "hosts": hosts,
        "hyperparameters": user_hps,
        "input_config_dir": str(layout.config),
        "input_data_config": dict(data_config),
        "input_dir": str(layout.input),
        "job_name": job_name,
        "log_level": 20,
        "master_hostname": hosts[0],
        "model_dir": str(layout.model),
        "module_dir": module_dir,
        "module_name": Path(program).stem,
        "network_interface_name": "lo",
        "num_cpus": num_cpus,
        "num_gpus": 0,
        "output_data_dir": str(layout.output_data),
        "output_dir": str(layout.output),
        "resource_config": resource_config,
        "user_entry_point": program,
    }
    env = {
        "TRAINING_JOB_NAME": job_name,
        "SM_TRAINING_ENV": _env_value(env_dict),
        "SM_USER_ARGS": _env_value(to_cmd_args(user_hps)),
        "SM_HPS": _env_value(user_hps),
        "SM_CHANNELS": _env_value(channels),
        "SM_INPUT_DATA_CONFIG": _env_value(dict(data_config)),
        "SM_RESOURCE_CONFIG": _env_value(resource_config),
        "SM_HOSTS": _env_value(hosts),
        "SM_CURRENT_HOST": current_host,
        "SM_MODEL_DIR": str(layout.model),
        "SM_OUTPUT_DIR": str(layout.output),
        "SM_OUTPUT_DATA_DIR": str(layout.output_data),
        "SM_INPUT_DIR": str(layout.input),
        "SM_INPUT_CONFIG_DIR": str(layout.config),
        "SM_MODULE_DIR": module_dir,
        "SM_MODULE_NAME": Path(program).stem,
        "SM_USER_ENTRY_POINT": program,
        "SM_LOG_LEVEL": "20",
        "SM_NETWORK_INTERFACE_NAME": "lo",
        "SM_NUM_GPUS": "0",
        "SM_NUM_NEURONS": "0",
        "SM_NUM_CPUS": str(num_cpus),
    }
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(layout.channel(channel))
    for key, value in user_hps.items():
        env[f"SM_HP_{key.upper()}"] = _env_value(value)
    return env


def launch_command(
    *,
    python: str,
    program: str,
    args: list[str],
    torch_distributed: bool,
    num_hosts: int,
    host_index: int,
    master_port: int,
) -> list[str]:
    """The command one host runs: ``torchrun`` when torch_distributed is on, else the script.

    Like the toolkit, ``--master_addr/--master_port/--node_rank`` are only added with more
    than one host (a single-node torchrun then picks a free rendezvous port by itself).
    """
    if not torch_distributed:
        return [python, program, *args]
    command = [python, "-m", "torch.distributed.run", "--nnodes", str(num_hosts)]
    command += ["--nproc_per_node", "1"]
    if num_hosts > 1:
        command += ["--master_addr", "127.0.0.1", "--master_port", str(master_port)]
        command += ["--node_rank", str(host_index)]
    return [*command, program, *args]


def launcher_variable(name: str) -> bool:
    """Variables of this process that would confuse a host: another job's SageMaker or
    torchrun settings (the host gets its own)."""
    return name.startswith(("SM_", "PET_", "TORCHELASTIC_")) or name in LAUNCHER_NAMES


LAUNCHER_NAMES = {
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TRAINING_JOB_NAME",
}
