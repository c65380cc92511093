"""The GPU self-check: what the cifar suites' path costs on this GPU, in one command of minutes.

    make gpu-check              # on a GPU machine: at most 8 minutes, nothing downloaded
    make gpu-check DEVICE=cpu   # the same script at toy sizes on the CPU (a test runs it)
    python -m benchmarks.gpu_check [--device cuda] [--out results/perf] [--limit-s 450]

It writes ``<out>/gpu-<device name>.json`` and the page generated from it, ``.md``, with the
commit, after every measurement (an interrupted check keeps what it measured):

1. the device, the versions of torch, CUDA and cuDNN, and the measured rate of a dense n×n×n
   matrix product in bf16 and in fp32 (torch's default precision): the bf16 rate is the ceiling
   the model FLOPs utilisation is quoted against;
2. every process trained for ``train_steps`` on the ``short`` budget's network (``ddpm-cifar``)
   and batch, on random images in CIFAR-10's format, in fp32 and in bf16 + ``torch.compile``:
   images per second after the first ``warm`` steps (the seconds of those, compilation
   included, on their own), peak memory, and the model FLOPs utilisation, images/s × the
   FLOPs of one training image (:func:`benchmarks.flops.network_flops`, counted once on the
   meta device) over the measured bf16 product rate;
3. our trainer against diffusers' unconditional training example
   (:mod:`benchmarks.vs_diffusers`, when diffusers is installed): ours in bf16 + compile
   against the example in bf16 autocast (target: ours ≥ 1.3×), then both in bf16 and both in
   fp32 without compilation;
4. sampling ``samples`` images at ``nfe`` network calls with each process's sampler of the
   ``short`` budget, from the network trained in 2 in bf16: images per second and the share of
   the wall time spent outside the network calls (noise, transforms, solver; target ≤ 10 %);
5. ``torchrun`` over every visible GPU with NCCL (on the CPU: 2 processes with gloo), DDPM
   trained for ``rank_steps``: every rank ends with identical weights.

Every size is the toy's (``TOY``) on the CPU: the ``smoke`` budget's network at 1×28×28 and a
few steps of everything. A measurement that would start after ``--limit-s`` seconds is
recorded as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from benchmarks import vs_diffusers
from benchmarks.flops import network_flops
from benchmarks.timing import calls_per_second, synchronize, timed_training
from benchmarks.vs_diffusers import commit, device_name
from corruptions import PROCESSES
from models import UNet, network_config
from spdbench.errors import one_line
from spdbench.files import write_atomically
from spdbench.runs import Run, RunRequest, resolve_run
from spdbench.sampling import generate, network_denoiser
from spdbench.train import train

OUT = Path("results/perf")


@dataclass(frozen=True)
class Mode:
    """A precision and whether the network is compiled."""

    name: str
    bf16: bool
    compile: bool


FP32, BF16 = Mode("fp32", False, False), Mode("bf16", True, False)
BF16_COMPILED = Mode("bf16 + compile", True, True)


@dataclass(frozen=True)
class Sizes:
    """How much of everything the check runs.

    Attributes:
        dataset: whose image shape the random images take (nothing is loaded).
        budget: the budget whose network, batch and sampler the check uses.
        train_steps: steps of each training measurement.
        warm: its first steps, timed on their own (compilation, cuDNN's algorithm search).
        samples: images sampled per process.
        nfe: network calls per sample.
        sample_batch: images per sampling batch.
        compare_steps: timed steps of each side of a comparison with diffusers.
        compare_warm: untimed steps before them.
        rank_steps: steps of the distributed run.
        matmul: n of the n×n×n products that measure the device's rates.
        modes: the modes every process trains in.
        comparisons: (ours, the example's) modes of each comparison with diffusers.
        batch: the training batch; ``None``: the budget's.
    """

    dataset: str
    budget: str
    train_steps: int
    warm: int
    samples: int
    nfe: int
    sample_batch: int
    compare_steps: int
    compare_warm: int
    rank_steps: int
    matmul: int
    modes: tuple[Mode, ...]
    comparisons: tuple[tuple[Mode, Mode], ...]
    batch: int | None = None


FULL = Sizes(
    "cifar10", "short", 200, 20, 2000, 50, 1000, 50, 10, 50, 8192,
    modes=(FP32, BF16_COMPILED), comparisons=((BF16_COMPILED, BF16), (BF16, BF16), (FP32, FP32)),
)
TOY = Sizes(  # no compilation: on the CPU it takes minutes, and Triton's GPU path is another
    "fmnist", "smoke", 4, 1, 6, 2, 4, 2, 1, 2, 256,
    modes=(FP32, BF16), comparisons=((BF16, BF16), (FP32, FP32)), batch=4,
)
TARGET_RATIO = 1.3
TARGET_OUTSIDE = 0.10


def resolve(process: str, sizes: Sizes) -> Run:
    """The run the check measures ``process`` with: the sizes' budget at the papers' spectrum."""
    request = RunRequest(process, dataset=sizes.dataset, spectrum="paper", budget=sizes.budget, nfe=sizes.nfe,
                         samples=sizes.samples, batch=sizes.batch)
    return resolve_run(request)


def random_images(shape: tuple[int, ...], count: int) -> Tensor:
    """``count`` random 8-bit images as float32 in [-1, 1], as the CIFAR-10 loader gives them."""
    pixels = torch.randint(0, 256, (count, *shape), generator=torch.Generator().manual_seed(0))
    return pixels.float() / 127.5 - 1


def matmul_rate(n: int, dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """FLOP/s of an n×n×n product on random data (the mean of ``repeats`` after 3 warm-ups)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 * calls_per_second(device, lambda: a @ b, repeats, warm=3)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float | None]]:
    """``{"gib": …}``: the peak memory allocated on ``device`` inside the block (``None`` on the CPU)."""
    found: dict[str, float | None] = {"gib": None}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield found
    if device.type == "cuda":
        found["gib"] = torch.cuda.max_memory_allocated(device) / 2**30


def training(run: Run, mode: Mode, sizes: Sizes, images: Tensor, device: torch.device) -> dict[str, Any]:
    """Train ``run``'s network from scratch for ``sizes.train_steps`` in ``mode``: the images per
    second of the steps after ``warm`` (the last, which writes the checkpoint, left out), the
    seconds of the first ``warm`` steps, the peak memory, and the trained network (``net``)."""
    config = dataclasses.replace(run.train, train_steps=sizes.train_steps, bf16=mode.bf16, compile=mode.compile)
    torch.manual_seed(0)
    net = UNet(network_config(run.network, *run.process.image_shape[:2]))
    with peak_memory(device) as peak:
        timed = timed_training(run.process, net, images, config, device, sizes.warm)
    return {"images_per_s": timed.images_per_s, "warm_s": timed.warm_s, "peak_gib": peak["gib"], "net": net}


def sampling(run: Run, net: UNet, sizes: Sizes, images: Tensor, device: torch.device) -> dict[str, Any]:
    """Sample ``sizes.samples`` images with the run's sampler: images per second and the share of
    the wall time outside the network calls (each call is timed between two synchronisations)."""
    denoise = network_denoiser(net.eval(), run.process, bf16=device.type == "cuda")
    inside = [0.0]

    def timed_denoise(x: Tensor, t: Tensor) -> Tensor:
        synchronize(device)
        start = time.perf_counter()
        out = denoise(x, t)
        synchronize(device)
        inside[0] += time.perf_counter() - start
        return out

    synchronize(device)
    start = time.perf_counter()
    generate(timed_denoise, run.process, images, sizes.samples, 0, run.grid, run.solver, run.sampler,
             sizes.sample_batch, device)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "sampler": f"{run.solver.name} on the {run.grid_name} grid",
        "nfe": run.nfe,
        "images_per_s": sizes.samples / seconds,
        "outside_share": 1 - inside[0] / seconds,
    }


def comparison(ours: Mode, theirs: Mode, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Our trainer in mode ``ours`` against diffusers' example in mode ``theirs`` (DDPM, the
    sizes' network, batch and shape), one repetition each."""
    run = resolve("ddpm", sizes)
    setting = vs_diffusers.Setting(
        run.network, run.process.image_shape, run.train.batch, sizes.compare_steps, sizes.compare_warm,
        ours.bf16, ours.compile, device,
    )
    ours_rate = vs_diffusers.trainer_rate(setting, "ours")
    theirs_rate = vs_diffusers.trainer_rate(dataclasses.replace(setting, bf16=theirs.bf16, compile=False), "diffusers")
    return {"ours": ours.name, "theirs": theirs.name, "ours_images_per_s": ours_rate,
            "theirs_images_per_s": theirs_rate, "ratio": ours_rate / theirs_rate}


def distributed(sizes: Sizes, device: torch.device, limit_s: float) -> dict[str, Any]:
    """Run this module's rank check under ``torchrun`` on every visible GPU (2 CPU processes)."""
    ranks = torch.cuda.device_count() if device.type == "cuda" else 2
    with tempfile.TemporaryDirectory() as scratch:
        found = Path(scratch) / "ranks.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
            "-m", "benchmarks.gpu_check", "--device", device.type, "--rank-check", str(found),
        ]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=limit_s)
        if finished.returncode != 0 or not found.exists():
            tail = " ".join((finished.stderr or finished.stdout).split()[-60:])
            return {"ranks": ranks, "ok": False, "error": f"exit {finished.returncode}: {tail}"}
        return {**json.loads(found.read_text()), "ok": True}


def rank_check(device_type: str, found: Path) -> None:
    """One rank of :func:`distributed`: DDPM trained in a process group (NCCL on the
    ``LOCAL_RANK``-th GPU, gloo on the CPU); rank 0 writes whether every rank's weights are
    identical, gathered over the group."""
    sizes = FULL if device_type == "cuda" else TOY
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        run = resolve("ddpm", sizes)
        world = dist.get_world_size()
        config = dataclasses.replace(
            run.train, train_steps=sizes.rank_steps, batch=run.train.batch * world, bf16=False,
            checkpoint_every=sizes.rank_steps, log_every=sizes.rank_steps,
        )
        images = random_images(run.process.image_shape, 2 * config.batch)
        torch.manual_seed(dist.get_rank())  # different initial weights: DDP must broadcast rank 0's
        net = UNet(network_config(run.network, *run.process.image_shape[:2]))
        with tempfile.TemporaryDirectory() as run_dir:
            train(run.process, net, images, config, Path(run_dir), device=device, quiet=True)
        weights = torch.cat([p.detach().flatten() for p in net.parameters()])
        gathered = [torch.empty_like(weights) for _ in range(world)]
        dist.all_gather(gathered, weights)
        difference = max(float((g - gathered[0]).abs().max()) for g in gathered)
        if dist.get_rank() == 0:
            record = {"ranks": world, "backend": dist.get_backend(), "steps": sizes.rank_steps,
                      "batch": config.batch, "identical": difference == 0.0, "max_difference": difference}
            found.write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def slug(name: str) -> str:
    """A device name as a file name: ``NVIDIA H200`` → ``nvidia-h200``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def environment(sizes: Sizes, device: torch.device, at_commit: str) -> dict[str, Any]:
    """The device, the commit, the software and the measured product rates."""
    cuda = device.type == "cuda"
    return {
        "device": device_name(device),
        "commit": at_commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "cpu_threads": torch.get_num_threads(),
        "tf32_convolutions": torch.backends.cudnn.allow_tf32 if cuda else None,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "matmul_n": sizes.matmul,
        "bf16_flops": matmul_rate(sizes.matmul, torch.bfloat16, device),
        "fp32_flops": matmul_rate(sizes.matmul, torch.float32, device),
        "sizes": dataclasses.asdict(sizes),
    }


def check(device: torch.device, out: Path, limit_s: float, at_commit: str) -> tuple[Path, dict[str, Any]]:
    """Run every measurement (module docstring), writing the record and page after each; returns
    the page's path and the record."""
    started = time.perf_counter()
    sizes = FULL if device.type == "cuda" else TOY
    record: dict[str, Any] = {"environment": environment(sizes, device, at_commit), "training": [], "comparisons": [],
                              "sampling": [], "distributed": None, "skipped": [], "failed": []}
    runs = {name: resolve(name, sizes) for name in PROCESSES}
    first = next(iter(runs.values()))
    training_flops, call_flops = network_flops(network_config(first.network, *first.process.image_shape[:2]))
    record["network"] = {"name": first.network, "image_shape": list(first.process.image_shape),
                         "batch": first.train.batch, "training_flops_per_image": training_flops,
                         "call_flops_per_image": call_flops}
    path = out / f"gpu-{slug(record['environment']['device'])}.md"
    save = lambda: write_page(record, path)  # noqa: E731
    save()
    images = random_images(first.process.image_shape, 4 * first.train.batch)

    def attempt(what: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """``measure()``, unless the time is up (recorded as skipped); a failure is recorded, not raised."""
        if time.perf_counter() - started >= limit_s:
            record["skipped"].append(what)
            return None
        try:
            return measure()
        except Exception as error:  # a self-check reports every failure and goes on
            record["failed"].append(f"{what}: {one_line(f'{type(error).__name__}: {error}')}")
            return None
        finally:
            save()

    nets: dict[str, UNet] = {}
    for name, run in runs.items():
        for mode in sizes.modes:
            measured = attempt(f"training {name} in {mode.name}", lambda: training(run, mode, sizes, images, device))
            if measured is not None:
                nets[name] = measured.pop("net")
                utilisation = measured["images_per_s"] * training_flops / record["environment"]["bf16_flops"]
                record["training"].append({"process": name, "mode": mode.name, **measured, "mfu": utilisation})
    for name, run in runs.items():
        if name in nets:
            found = attempt(f"sampling {name}", lambda: sampling(run, nets[name], sizes, images, device))
            if found is not None:
                record["sampling"].append({"process": name, **found})
    if vs_diffusers.installed():
        for ours, theirs in sizes.comparisons:
            what = f"ours in {ours.name} against diffusers' example in {theirs.name}"
            found = attempt(what, lambda: comparison(ours, theirs, sizes, device))
            if found is not None:
                record["comparisons"].append(found)
    else:
        record["skipped"].append("the comparison with diffusers: not installed (pip install -e '.[bench]')")
    record["distributed"] = attempt("the distributed run", lambda: distributed(sizes, device, max(60.0, limit_s)))
    record["seconds"] = time.perf_counter() - started
    save()
    return path, record


def write_page(record: dict[str, Any], path: Path) -> None:
    """Write the record as ``path``'s ``.json`` and the page generated from it as ``path``."""
    write_atomically(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
    write_atomically(path, lambda p: p.write_text(page(record)))


def page(record: dict[str, Any]) -> str:
    """The markdown page of a check's record."""
    env, net = record["environment"], record["network"]
    shape = "×".join(map(str, net["image_shape"]))
    lines = [
        f"# GPU self-check: {env['device']}",
        "",
        f"`make gpu-check` (`python -m benchmarks.gpu_check`) at commit `{env['commit']}`, {env['date']}; "
        f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, {env['gpus']} GPU(s); "
        f"TF32 convolutions {env['tf32_convolutions']}, fp32 matrix-product precision {env['matmul_precision']!r}. "
        f"Generated from [{Path(record_name(env)).name}]({Path(record_name(env)).name}).",
        "",
        f"Measured ceilings ({env['matmul_n']}³ products on random data): bf16 "
        f"{env['bf16_flops'] / 1e12:.1f} TFLOP/s, fp32 {env['fp32_flops'] / 1e12:.1f} TFLOP/s. "
        f"Network `{net['name']}` at {shape}, batch {net['batch']}: "
        f"{net['training_flops_per_image'] / 1e9:.1f} GFLOP per training image (forward and backward) and "
        f"{net['call_flops_per_image'] / 1e9:.1f} GFLOP per sampler call, counted once by "
        "`torch.utils.flop_counter` on the meta device (matrix products and convolutions). "
        "MFU: images/s × training FLOPs per image ÷ the measured bf16 rate.",
        "",
        "## Training, random images in the dataset's format",
        "",
        f"{record['environment']['sizes']['train_steps']} steps per row; images/s over the steps after the first "
        f"{record['environment']['sizes']['warm']} (their seconds, compilation included, on their own).",
        "",
        "| process | mode | images/s | first steps, s | peak memory, GiB | MFU |",
        "|---|---|--:|--:|--:|--:|",
        *(
            f"| {r['process']} | {r['mode']} | {r['images_per_s']:.1f} | {r['warm_s']:.1f} | "
            f"{'—' if r['peak_gib'] is None else format(r['peak_gib'], '.2f')} | {100 * r['mfu']:.1f} % |"
            for r in record["training"]
        ),
        "",
        f"## Ours against diffusers' unconditional training example (target ≥ {TARGET_RATIO}×)",
        "",
        "| ours | example | ours, images/s | example, images/s | ratio |",
        "|---|---|--:|--:|--:|",
        *(
            f"| {c['ours']} | {c['theirs']} | {c['ours_images_per_s']:.1f} | {c['theirs_images_per_s']:.1f} | "
            f"{c['ratio']:.2f}{'' if c['ratio'] >= TARGET_RATIO else ' (below target)'} |"
            for c in record["comparisons"]
        ),
        "",
        f"## Sampling (target ≤ {100 * TARGET_OUTSIDE:.0f} % of the time outside the network)",
        "",
        "| process | sampler | NFE | images/s | outside the network |",
        "|---|---|--:|--:|--:|",
        *(
            f"| {s['process']} | {s['sampler']} | {s['nfe']} | {s['images_per_s']:.1f} | "
            f"{100 * s['outside_share']:.1f} %{'' if s['outside_share'] <= TARGET_OUTSIDE else ' (above target)'} |"
            for s in record["sampling"]
        ),
        "",
        "## Distributed",
        "",
        distributed_line(record["distributed"]),
        "",
    ]
    if record["failed"]:
        lines += ["## Failed", "", *(f"- {what}" for what in record["failed"]), ""]
    if record["skipped"]:
        lines += ["## Skipped", "", *(f"- {what}" for what in record["skipped"]), ""]
    if "seconds" in record:
        lines += [f"The check took {record['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def summary_table(record: dict[str, Any]) -> str:
    """The README's digest of a check: per process, training images/s in each mode (with the
    model FLOPs utilisation) and sampling images/s with the share outside the network; then
    each comparison with diffusers' example."""
    modes = list(dict.fromkeys(r["mode"] for r in record["training"]))
    trained = {(r["process"], r["mode"]): r for r in record["training"]}
    sampled = {s["process"]: s for s in record["sampling"]}
    head = f"| {record['environment']['device']} | " + " | ".join(f"training, {m}" for m in modes)
    lines = [head + " | sampling | outside the network |", "|---|" + "--:|" * (len(modes) + 2)]
    for process in dict.fromkeys(r["process"] for r in record["training"]):
        cells = [
            f"{trained[process, m]['images_per_s']:.0f} images/s ({100 * trained[process, m]['mfu']:.1f} % MFU)"
            if (process, m) in trained else "—"
            for m in modes
        ]
        s = sampled.get(process)
        if s is None:
            cells += ["—", "—"]
        else:
            cells += [f"{s['images_per_s']:.0f} images/s at {s['nfe']} NFE", f"{100 * s['outside_share']:.1f} %"]
        lines.append(f"| {process} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [
        f"- ours in {c['ours']} against diffusers' example in {c['theirs']}: {c['ratio']:.2f}× "
        f"({c['ours_images_per_s']:.0f} against {c['theirs_images_per_s']:.0f} images/s)"
        for c in record["comparisons"]
    ]
    return "\n".join(lines)


def record_name(env: dict[str, Any]) -> str:
    """The record's file name."""
    return f"gpu-{slug(env['device'])}.json"


def distributed_line(found: dict[str, Any] | None) -> str:
    """What the distributed run found, in a sentence."""
    if found is None:
        return "Not run yet."
    if not found["ok"]:
        return f"`torchrun` over {found['ranks']} ranks failed: {found['error']}"
    verdict = "identical" if found["identical"] else f"NOT identical (max |Δ| {found['max_difference']:g})"
    return (f"`torchrun` with {found['backend']} over {found['ranks']} rank(s), DDPM for {found['steps']} steps at a "
            f"global batch of {found['batch']}: the weights of every rank {verdict}.")


def main(argv: list[str] | None = None) -> None:
    """Run the check (module docstring), or one rank of its distributed run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--limit-s", type=float, default=450.0, help="start no measurement after this many seconds")
    parser.add_argument("--commit", default=None, help="the commit to record (default: git's; for a copied tree)")
    parser.add_argument("--rank-check", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_check is not None:
        rank_check(args.device, args.rank_check)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device is visible; use --device cpu for the toy check", file=sys.stderr)
        raise SystemExit(2)
    path, record = check(torch.device(args.device), args.out, args.limit_s, args.commit or commit())
    print(path.read_text())
    print(f"wrote {path} and {path.with_suffix('.json')}")
    if record["failed"]:
        print(f"error: {len(record['failed'])} measurement(s) failed; see {path}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
