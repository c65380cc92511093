"""What the performance measurements share: random inputs, waiting for the device's queued
work, timing a call, timing the trainer's steps."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from corruptions import Process
from spdbench.budgets import TrainConfig
from spdbench.train import TrainState, train


def random_images(shape: tuple[int, ...], count: int) -> Tensor:
    """``count`` random 8-bit images of C×H×W ``shape`` as float32 in [-1, 1] on the CPU, as
    the dataset loaders give them."""
    pixels = torch.randint(0, 256, (count, *shape), generator=torch.Generator().manual_seed(0))
    return pixels.float() / 127.5 - 1


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calls_per_second(device: torch.device, call: Callable[[], object], calls: int, warm: int) -> float:
    """Calls per second of ``call`` over ``calls`` calls after ``warm`` untimed ones."""
    for _ in range(warm):
        call()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    synchronize(device)
    return calls / (time.perf_counter() - start)


@dataclass(frozen=True)
class Training:
    """A timed training run.

    Attributes:
        images_per_s: over the steps after the first ``warm`` (the last step, which writes the
            checkpoint, left out).
        warm_s: the seconds of the first ``warm`` steps (compilation included).
        net: the trained network.
    """

    images_per_s: float
    warm_s: float
    net: nn.Module


def timed_training(
    process: Process, net: nn.Module, images: Tensor, config: TrainConfig, device: torch.device, warm: int
) -> Training:
    """Train ``net`` with :func:`spdbench.train.train` for ``config.train_steps`` (a checkpoint and
    a log entry at the end only) and time it between synchronisations after steps ``warm`` and
    ``train_steps − 1``: nothing else waits for the device."""
    last = config.train_steps - 1
    if not 0 < warm < last:
        raise ValueError(f"warm must lie in [1, {last - 1}] for {config.train_steps} steps, got {warm}")
    config = dataclasses.replace(config, checkpoint_every=config.train_steps, log_every=config.train_steps)
    marks: dict[int, float] = {}

    def mark(state: TrainState) -> None:
        if state.starting or state.step in (warm, last):
            synchronize(device)
            marks[-1 if state.starting else state.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as run_dir:
        train(process, net, images, config, Path(run_dir), mark, device=device, quiet=True)
    rate = (last - warm) * config.batch / (marks[last] - marks[warm])
    return Training(rate, marks[warm] - marks[-1], net)
