"""How fast the trainer runs, and how little of a step the corruption costs.

Prints, on this machine:

1. for every registered process, the time of ``process.sample_time`` + ``process.corrupt`` on one
   batch, as a fraction of one training step of the ``quick`` network with the default settings
   (the target is under 2%);
2. the training images per second of the ``quick`` network through :func:`spdbench.train.train`
   with and without bf16 autocast and ``torch.compile``, measured side by side in one run; the
   first step (for ``compile``, the compilation) is excluded and reported on its own.

The machine's load average is printed before and after: other jobs on the same cores skew both.

    python -m benchmarks.train_speed [--steps 20] [--batch 64] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import corruptions
from corruptions.spectrum import PAPER_SPECTRUM
from models import UNet, network_config
from spdbench.train import METRICS, TrainConfig, train

IMAGE_SHAPE = (1, 28, 28)
NETWORK = "quick"


def corruption_seconds(process: corruptions.Process, x0: torch.Tensor, repeats: int) -> float:
    """Median seconds of ``sample_time`` + ``corrupt`` on the batch ``x0``."""
    generator = torch.Generator(x0.device).manual_seed(0)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    times = []
    for _ in range(repeats + 1):  # the first call builds the process's cached constants
        _synchronize(x0.device)
        start = time.perf_counter()
        t = process.sample_time(len(x0), generator)
        process.corrupt(x0, t, noise)
        _synchronize(x0.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def training_speed(config: TrainConfig, images: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """``(seconds of the first step, images per second over the other steps)`` of a fresh run."""
    torch.manual_seed(0)
    net = UNet(network_config(NETWORK, IMAGE_SHAPE[0], IMAGE_SHAPE[1]))
    process = corruptions.make_process("ddpm", IMAGE_SHAPE)
    with tempfile.TemporaryDirectory() as run_dir:
        train(process, net, images, config, Path(run_dir), device=device, quiet=True)
        entries = [json.loads(line) for line in (Path(run_dir) / METRICS).read_text().splitlines()]
    step_seconds = [config.batch / entry["images_per_s"] for entry in entries]
    return step_seconds[0], config.batch * (len(step_seconds) - 1) / sum(step_seconds[1:])


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load() -> str:
    """The 1, 5 and 15 minute load averages, and the number of cores."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    """Measure and print (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per variant (the first is excluded)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50, help="timed corruptions per process")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{_load()}; torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    shape = "×".join(map(str, IMAGE_SHAPE))
    print(f"network {NETWORK!r} at {shape}, batch {args.batch}, {args.steps} steps per variant")

    images = torch.rand(max(4 * args.batch, 256), *IMAGE_SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    base = TrainConfig(
        train_steps=args.steps, batch=args.batch, warmup=0, checkpoint_every=args.steps, log_every=1, ema_decay=0.999
    )
    default_bf16 = base.resolved(device).bf16
    print("\ntraining (images/s over steps 2…N; first step alone)")
    speeds = {}
    for compile_, bf16 in itertools.product((False, True), (False, True)):
        first, speed = training_speed(dataclasses.replace(base, bf16=bf16, compile=compile_), images, device)
        speeds[compile_, bf16] = speed
        label = f"{'compiled' if compile_ else 'eager'}, {'bf16' if bf16 else 'fp32'}"
        milliseconds = 1000 * args.batch / speed
        print(f"  {label:<16} {speed:8.1f} images/s {milliseconds:9.1f} ms/step   first step {first:6.2f} s")
    step = args.batch / speeds[False, default_bf16]
    print(f"\ncorruption (sample_time + corrupt, median of {args.repeats}) vs one default step ({1000 * step:.1f} ms)")
    x0 = images[: args.batch].to(device)
    for name in corruptions.PROCESSES:
        process = corruptions.make_process(name, IMAGE_SHAPE, spectrum=PAPER_SPECTRUM)
        seconds = corruption_seconds(process, x0, args.repeats)
        print(f"  {name:<10} {1000 * seconds:8.3f} ms   {100 * seconds / step:6.2f}% of a step")
    print(f"\n{_load()}")


if __name__ == "__main__":
    main()
