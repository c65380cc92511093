"""How fast the trainer runs, and how little of a step the corruption costs.

Prints, on this machine:

1. the training images per second of the network through :func:`spdbench.train.train` in each
   variant asked for, measured side by side in one run: ``eager`` or ``compiled``
   (``torch.compile``), ``fp32`` or ``bf16`` (autocast), and ``-cl`` for channels-last memory
   format; the first ``--warm`` steps (for ``compiled``, the compilation) are timed on their own;
2. for every registered process, the time of ``process.sample_time`` + ``process.corrupt`` on one
   batch, as a fraction of one training step of the first variant (the target is under 2%);
3. the time of one AdamW step with gradient clipping in each of its implementations (for-loop,
   foreach, fused), as a fraction of that step.

The machine's load average is printed before and after: other jobs on the same cores skew both.

    python -m benchmarks.train_speed [--network quick] [--steps 20] [--warm 1] [--batch 64]
        [--variants eager-fp32,eager-bf16,compiled-fp32,compiled-bf16] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch

import corruptions
from benchmarks.timing import Training, synchronize, timed_training
from corruptions.spectrum import PAPER_SPECTRUM
from models import UNet, network_config
from spdbench.budgets import TrainConfig
from spdbench.data import image_shape
from spdbench.errors import OneLineArgumentParser, UserError, at_least, command_errors


def corruption_seconds(process: corruptions.Process, x0: torch.Tensor, repeats: int) -> float:
    """Median seconds of ``sample_time`` + ``corrupt`` on the batch ``x0``."""
    generator = torch.Generator(x0.device).manual_seed(0)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    times = []
    for _ in range(repeats + 1):  # the first call builds the process's cached constants
        synchronize(x0.device)
        start = time.perf_counter()
        t = process.sample_time(len(x0), generator)
        process.corrupt(x0, t, noise)
        synchronize(x0.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def variant(name: str) -> dict[str, bool]:
    """The trainer settings of a variant's name, e.g. ``compiled-bf16-cl``."""
    parts = name.split("-")
    if not (parts[0] in ("eager", "compiled") and parts[1:2] in (["fp32"], ["bf16"]) and parts[2:] in ([], ["cl"])):
        raise UserError(f"unknown variant {name!r}; e.g. eager-fp32, compiled-bf16, compiled-bf16-cl")
    return {"compile": parts[0] == "compiled", "bf16": parts[1] == "bf16", "channels_last": parts[2:] == ["cl"]}


def training_speed(
    network: str, shape: tuple[int, int, int], config: TrainConfig, images: torch.Tensor, device: torch.device,
    warm: int,
) -> Training:
    """A fresh DDPM run of ``network``, timed by :func:`benchmarks.timing.timed_training`."""
    torch.manual_seed(0)
    net = UNet(network_config(network, shape[0], shape[1]))
    return timed_training(corruptions.make_process("ddpm", shape), net, images, config, device, warm)


OPTIMIZERS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
"""AdamW's implementations: torch's default is the for-loop on the CPU and foreach on CUDA."""


def optimizer_seconds(
    network: str, shape: tuple[int, int, int], device: torch.device, settings: dict[str, bool], repeats: int
) -> float:
    """Median seconds of one AdamW step (with gradient clipping, as the trainer does) over the
    network's parameters with random gradients, in one of :data:`OPTIMIZERS`."""
    torch.manual_seed(0)
    net = UNet(network_config(network, shape[0], shape[1])).to(device)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, **settings)
    times = []
    for _ in range(repeats + 1):  # the first step allocates the moments
        synchronize(device)
        start = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _load() -> str:
    """The 1, 5 and 15 minute load averages, and the number of cores."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> None:
    """Measure and print (see the module docstring)."""
    parser = OneLineArgumentParser(prog="benchmarks.train_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="quick", choices=["smoke", "quick", "ddpm-cifar"])
    parser.add_argument("--steps", type=at_least(2), default=20, help="training steps per variant")
    parser.add_argument("--warm", type=at_least(1), default=1, help="first steps, timed on their own")
    parser.add_argument("--batch", type=at_least(1), default=64)
    parser.add_argument("--variants", default="eager-fp32,eager-bf16,compiled-fp32,compiled-bf16")
    parser.add_argument("--repeats", type=at_least(1), default=50, help="timed corruptions per process")
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    with command_errors("benchmarks.train_speed"):
        if args.warm >= args.steps - 1:
            raise UserError(f"--steps must exceed --warm by at least 2, got {args.steps} and {args.warm}")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("no CUDA device is visible; use --device cpu")
        measure(args)


def measure(args: argparse.Namespace) -> None:
    """The measurements ``main`` prints, for its parsed arguments."""
    variants = {name: variant(name) for name in args.variants.split(",")}
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = image_shape("cifar10" if args.network == "ddpm-cifar" else "fmnist")
    print(f"{_load()}; torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    shown = "×".join(map(str, shape))
    print(f"network {args.network!r} at {shown}, batch {args.batch}, {args.steps} steps per variant")

    images = torch.rand(max(4 * args.batch, 256), *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    base = TrainConfig(train_steps=args.steps, batch=args.batch, warmup=0, ema_decay=0.999)
    print(f"\ntraining (images/s over steps {args.warm + 1}…{args.steps - 1}; the first {args.warm} on their own)")
    speeds = {}
    for name, settings in variants.items():
        timed = training_speed(args.network, shape, dataclasses.replace(base, **settings), images, device, args.warm)
        speeds[name] = timed.images_per_s
        milliseconds = 1000 * args.batch / timed.images_per_s
        print(f"  {name:<18} {timed.images_per_s:8.1f} images/s {milliseconds:9.1f} ms/step   "
              f"first steps {timed.warm_s:6.2f} s")
    step = args.batch / next(iter(speeds.values()))
    print(f"\ncorruption (sample_time + corrupt, median of {args.repeats}) vs one step of "
          f"{next(iter(speeds))} ({1000 * step:.1f} ms)")
    x0 = images[: args.batch].to(device)
    for name in corruptions.PROCESSES:
        process = corruptions.make_process(name, shape, spectrum=PAPER_SPECTRUM)
        seconds = corruption_seconds(process, x0, args.repeats)
        print(f"  {name:<10} {1000 * seconds:8.3f} ms   {100 * seconds / step:6.2f}% of a step")
    print(f"\nAdamW step with clipping (median of {args.repeats}) vs one step of {next(iter(speeds))}")
    for name, settings in OPTIMIZERS.items():
        seconds = optimizer_seconds(args.network, shape, device, settings, args.repeats)
        print(f"  {name:<10} {1000 * seconds:8.3f} ms   {100 * seconds / step:6.2f}% of a step")
    print(f"\n{_load()}")


if __name__ == "__main__":
    main()
