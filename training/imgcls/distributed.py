"""Who this process is in the job, and the process group that joins it to the others.

Three ways to run, told apart by the environment:
- torchrun (also SageMaker's ``torch_distributed``): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``;
- one process per SageMaker host: ``SM_HOSTS`` lists more than one host; the rank is the
  index of ``SM_CURRENT_HOST``, the master is the first host on port 7777, unless
  ``MASTER_ADDR``/``MASTER_PORT`` say otherwise;
- anything else is a single process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

SAGEMAKER_MASTER_PORT = 7777
# A peer that is gone makes the others fail after this long instead of hanging the job.
DEFAULT_TIMEOUT = timedelta(minutes=30)


class ConfigError(ValueError):
    """The environment describes an impossible job."""


@dataclass(frozen=True)
class DistConfig:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"  # "single", "torchrun" or "sagemaker-hosts"
    init_method: str = "env://"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def log_prefix(self) -> str:
        return f"[rank {self.rank}/{self.world_size}] " if self.enabled else ""


def from_env(environ: Mapping[str, str] = os.environ) -> DistConfig:
    """Read this process's place in the job from torchrun's or SageMaker's variables."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return DistConfig(
            rank=int(environ["RANK"]),
            world_size=int(environ["WORLD_SIZE"]),
            local_rank=int(environ.get("LOCAL_RANK", "0")),
            launcher="torchrun",
        )
    hosts = json.loads(environ.get("SM_HOSTS") or "[]")
    if len(hosts) > 1:
        current = environ.get("SM_CURRENT_HOST", "")
        if current not in hosts:
            raise ConfigError(f"SM_CURRENT_HOST={current!r} is not one of SM_HOSTS={hosts}")
        addr = environ.get("MASTER_ADDR", hosts[0])
        port = int(environ.get("MASTER_PORT", SAGEMAKER_MASTER_PORT))
        return DistConfig(
            rank=hosts.index(current),
            world_size=len(hosts),
            launcher="sagemaker-hosts",
            init_method=f"tcp://{addr}:{port}",
        )
    return DistConfig()


def device_for(cfg: DistConfig) -> torch.device:
    """This process's GPU (by local rank) when there is one, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(cfg.local_rank)
        return torch.device("cuda", cfg.local_rank)
    return torch.device("cpu")


@contextmanager
def process_group(
    cfg: DistConfig, device: torch.device, timeout: timedelta = DEFAULT_TIMEOUT
) -> Iterator[None]:
    """Join the job's process group (nccl on GPU, gloo on CPU) for the block's duration;
    leave it on the way out, also on error. Does nothing for a single process."""
    if not cfg.enabled:
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=cfg.init_method,
        rank=cfg.rank,
        world_size=cfg.world_size,
        timeout=timeout,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place (a no-op for a single process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (a no-op for a single process)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def step_timings(model: torch.nn.Module) -> dict[str, float] | None:
    """DDP's own per-step averages in seconds (it samples some iterations): forward,
    backward compute, gradient all-reduce, and the part of the all-reduce that the
    backward did not hide. None when DDP has not sampled a step yet."""
    if not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return None
    data = model._get_ddp_logging_data()  # what torch's own DDP logging reports
    names = ("forward_compute", "backward_compute", "backward_comm")
    if not all(data.get(f"avg_{name}_time") for name in names):
        return None
    seconds = {name: data[f"avg_{name}_time"] / 1e9 for name in names}
    overlap = data.get("avg_backward_compute_comm_overlap_time", 0) / 1e9
    seconds["exposed_comm"] = max(0.0, seconds["backward_comm"] - overlap)
    return seconds
