"""One pass over the data: training or evaluation, with sample-weighted metrics.

Each process sums ``loss * batch_size``, correct predictions and images over its shard;
the sums are added over all processes before dividing, so loss and accuracy are exact
averages over every image whatever the batch sizes and shard sizes were.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from imgcls.distributed import all_reduce_sum

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    loss: float
    acc: float
    count: int


@dataclass
class Clock:
    """Where an epoch's time went that the training step does not show."""

    data: float = 0.0  # waiting for batches: decoding, augmentation, collation


def _totals(device: torch.device) -> torch.Tensor:
    return torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count


def summarise(totals: torch.Tensor) -> Result:
    """Add the per-process sums over all processes and turn them into averages."""
    loss_sum, correct, count = all_reduce_sum(totals).tolist()
    if count == 0:
        raise ValueError("no images were processed")
    return Result(loss=loss_sum / count, acc=correct / count, count=int(count))


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    # channels_last speeds up convolutions on CUDA; on CPU it buys nothing here.
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return (
        images.to(device, non_blocking=True, memory_format=fmt),
        labels.to(device, non_blocking=True),
    )


def _accumulate(totals: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, labels):
    n = labels.numel()
    totals[0] += loss.detach().double() * n
    totals[1] += (logits.argmax(dim=1) == labels).sum()
    totals[2] += n


def _keep_frozen_batchnorm_in_eval(model: nn.Module) -> None:
    # A frozen backbone is a fixed feature extractor: its BatchNorm layers keep their
    # (pretrained) running statistics instead of drifting towards the new data.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    amp: bool,
    epoch: int,
    log_interval: int = 0,
    clock: Clock | None = None,
) -> torch.Tensor:
    """Train over ``loader`` once; return this process's (loss sum, correct, count)."""
    model.train()
    _keep_frozen_batchnorm_in_eval(model)
    totals = _totals(device)
    clock = clock or Clock()
    batches = iter(loader)
    for step in range(1, len(loader) + 1):
        waited = time.perf_counter()
        images, labels = next(batches)
        clock.data += time.perf_counter() - waited
        images, labels = _to_device(images, labels, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _accumulate(totals, loss, logits, labels)
        if log_interval and step % log_interval == 0:
            log.info("epoch %d step %d/%d loss %.4f", epoch, step, len(loader), loss.item())
    return totals


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device, amp: bool
) -> torch.Tensor:
    """Evaluate over ``loader``; return this process's (loss sum, correct, count).

    Pass the bare network, not the DDP wrapper: DDP's forward talks to the other
    processes, which a rank-local evaluation must not do.
    """
    model.eval()
    totals = _totals(device)
    for images, labels in loader:
        images, labels = _to_device(images, labels, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
            loss = criterion(logits, labels)
        _accumulate(totals, loss, logits, labels)
    return totals
