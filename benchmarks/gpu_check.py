"""The GPU self-check: what the cifar suites' path costs on this GPU, in one command of minutes.

    make gpu-check              # on a GPU machine: at most 8 minutes, nothing downloaded
    make gpu-check DEVICE=cpu   # the same script at toy sizes on the CPU (a test runs it)
    python -m benchmarks.gpu_check [--device cuda] [--out results/perf] [--limit-s 420] [--commit C]

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
   then one DDPM run in the last mode profiled over ``profile_steps`` steps: where a step's
   time goes (:func:`step_profile`);
3. sampling ``samples`` images at ``nfe`` network calls with each process's sampler of the
   ``short`` budget, from the network trained in 2 in bf16: images per second and the share of
   the wall time spent outside the network calls (noise, transforms, solver; target ≤ 10 %);
4. our trainer against diffusers' unconditional training example
   (:mod:`benchmarks.vs_diffusers`, when diffusers and the modules it uses import), the
   medians of alternating repetitions: ours in bf16 + compile against the example in bf16
   autocast (target: ours ≥ 1.3×) and against the example in its faster fp32, then both in
   fp32 without compilation;
5. ``torchrun`` over every visible GPU with NCCL (on the CPU: 2 processes with gloo), DDPM
   trained for ``rank_steps`` without dropout: every rank ends with identical weights, within
   rounding of one process trained at the same global batch (last: with one GPU it is
   the least telling, so the first to go when time runs short).

Every size is the toy's (``TOY``) on the CPU: the ``smoke`` budget's network at 1×28×28 and a
few steps of everything. A measurement that would start after ``--limit-s`` seconds is
recorded as skipped, and ``torchrun`` is stopped with its workers 60 seconds after it; a
measurement that fails is recorded with its error, the others go on, and the command exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import signal
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
from benchmarks.timing import calls_per_second, random_images, synchronize, timed_training
from benchmarks.vs_diffusers import commit, device_name
from corruptions import PROCESSES
from models import UNet, network_config
from spdbench.errors import OneLineArgumentParser, UserError, at_least, command_errors, one_line, parse_path
from spdbench.files import check_output_directory, write_atomically
from spdbench.runs import Run, RunRequest, resolve_run
from spdbench.sampling import generate, network_denoiser
from spdbench.train import TrainState, train

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
        compare_repeats: repetitions of each side, alternating (the medians are compared).
        rank_steps: steps of the distributed run.
        profile_steps: steps profiled, after ``warm`` unprofiled ones.
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
    compare_repeats: int
    rank_steps: int
    profile_steps: int
    matmul: int
    modes: tuple[Mode, ...]
    comparisons: tuple[tuple[Mode, Mode], ...]
    batch: int | None = None


FULL = Sizes(
    dataset="cifar10", budget="short", train_steps=200, warm=20, samples=2000, nfe=50, sample_batch=1000,
    compare_steps=25, compare_warm=5, compare_repeats=3, rank_steps=50, profile_steps=10, matmul=8192,
    modes=(FP32, BF16_COMPILED),
    # ours at its best against the example in bf16 and at its own best (fp32 at batch 128), then like for like.
    # 18 side runs, each building a network and writing a checkpoint: on an H200 at 18503d7 the whole check took
    # 404 s of the 420 s --limit-s, so a fourth comparison (both in bf16) would not fit before torchrun
    comparisons=((BF16_COMPILED, BF16), (BF16_COMPILED, FP32), (FP32, FP32)),
)
TOY = Sizes(  # no compilation: on the CPU it takes minutes, and Triton's GPU path is another
    dataset="fmnist", budget="smoke", train_steps=4, warm=1, samples=6, nfe=2, sample_batch=4, compare_steps=2,
    compare_warm=1, compare_repeats=2, rank_steps=2, profile_steps=2, matmul=256, modes=(FP32, BF16),
    comparisons=((BF16, FP32), (FP32, FP32)), batch=4,
)
PEAK_MEMORY = {  # what a record's peak memory means (records before this key: absolute)
    "beyond the start": "the peak allocated during the row beyond what was allocated when it began",
    "absolute": "the peak allocated during the row, including the networks (with gradients) kept from earlier rows",
}
TARGET_RATIO = 1.3
TARGET_OUTSIDE = 0.10


def resolve(process: str, sizes: Sizes) -> Run:
    """The run the check measures ``process`` with: the sizes' budget at the papers' spectrum."""
    request = RunRequest(process, dataset=sizes.dataset, spectrum="paper", budget=sizes.budget, nfe=sizes.nfe,
                         samples=sizes.samples, batch=sizes.batch)
    return resolve_run(request)


def matmul_rate(n: int, dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """FLOP/s of an n×n×n product on random data (the mean of ``repeats`` after 3 warm-ups)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 * calls_per_second(device, lambda: a @ b, repeats, warm=3)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float | None]]:
    """``{"gib": …}``: the peak memory allocated on ``device`` inside the block beyond what was
    allocated when it began (``None`` on the CPU)."""
    found: dict[str, float | None] = {"gib": None}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    yield found
    if device.type == "cuda":
        found["gib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**30


def training(run: Run, mode: Mode, sizes: Sizes, images: Tensor, device: torch.device) -> dict[str, Any]:
    """Train ``run``'s network from scratch for ``sizes.train_steps`` in ``mode``: the images per
    second of the steps after ``warm`` (the last, which writes the checkpoint, left out), the
    seconds of the first ``warm`` steps, the peak memory, and the trained network (``net``, on
    the CPU, without gradients)."""
    config = dataclasses.replace(run.train, train_steps=sizes.train_steps, bf16=mode.bf16, compile=mode.compile)
    torch.manual_seed(0)
    net = UNet(network_config(run.network, *run.process.image_shape[:2]))
    with peak_memory(device) as peak:
        timed = timed_training(run.process, net, images, config, device, sizes.warm)
    net.zero_grad(set_to_none=True)
    return {"images_per_s": timed.images_per_s, "warm_s": timed.warm_s, "peak_gib": peak["gib"], "net": net.cpu()}


def step_profile(run: Run, sizes: Sizes, images: Tensor, device: torch.device) -> dict[str, Any]:
    """Where a training step's time goes, in the last of the sizes' modes: ``profile_steps``
    steps after ``warm`` ones, under ``torch.profiler``: the wall milliseconds per step, the
    milliseconds of device kernels per step (on CUDA; the rest of the wall time is the host's:
    Python, launches, waits) and the five kernels (on the CPU: operators) that take the most.
    The profiler's own work on the host lengthens the wall time a little."""
    mode = sizes.modes[-1]
    total = sizes.warm + sizes.profile_steps + 1
    config = dataclasses.replace(run.train, train_steps=total, bf16=mode.bf16, compile=mode.compile)
    cuda = device.type == "cuda"
    profiler = torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    )
    marks: dict[int, float] = {}
    profiling = [False]

    def mark(state: TrainState) -> None:
        if not state.starting and state.step in (sizes.warm, sizes.warm + sizes.profile_steps):
            if state.step == sizes.warm:  # started before the mark: starting CUPTI takes seconds
                profiler.start()
                profiling[0] = True
            synchronize(device)
            marks[state.step] = time.perf_counter()
            if state.step != sizes.warm:
                profiler.stop()
                profiling[0] = False

    torch.manual_seed(0)
    net = UNet(network_config(run.network, *run.process.image_shape[:2]))
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            train(run.process, net, images, config, Path(run_dir), mark, device=device, quiet=True)
    finally:  # a step that failed while profiling leaves no profiler to slow the measurements after it
        if profiling[0]:
            profiler.stop()
    return {
        "process": run.process.name,
        "mode": mode.name,
        "steps": sizes.profile_steps,
        "wall_ms": 1e3 * (marks[sizes.warm + sizes.profile_steps] - marks[sizes.warm]) / sizes.profile_steps,
        **time_shares(profiler.key_averages(), cuda, sizes.profile_steps),
    }


def time_shares(events: list[Any], cuda: bool, steps: int) -> dict[str, Any]:
    """Of a profile over ``steps`` steps, the device kernels' milliseconds a step (on CUDA, else
    ``None``) and the five kernels (on the CPU: operators) that take the most, by their own time.
    Only kernel events count on CUDA: the operator that launched a kernel also carries its time,
    and a ``record_function`` range (a user annotation) spans whole passes."""
    if cuda:
        events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation]
    own = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    per_step = 1e-3 / steps  # microseconds in all → milliseconds a step
    top = sorted(events, key=own, reverse=True)[:5]
    return {
        "device_ms": sum(own(e) for e in events) * per_step if cuda else None,
        "top": [[e.key[:80], own(e) * per_step] for e in top],
    }


def sampling(run: Run, net: UNet, sizes: Sizes, images: Tensor, device: torch.device) -> dict[str, Any]:
    """Sample ``sizes.samples`` images with the run's sampler: images per second and the share of
    the wall time outside the network calls (each call is timed between two synchronisations)."""
    denoise = network_denoiser(net.to(device).eval(), run.process, bf16=device.type == "cuda")
    inside = [0.0]

    def timed_denoise(x: Tensor, t: Tensor) -> Tensor:
        synchronize(device)
        start = time.perf_counter()
        out = denoise(x, t)
        synchronize(device)
        inside[0] += time.perf_counter() - start
        return out

    try:
        synchronize(device)
        start = time.perf_counter()
        generate(timed_denoise, run.process, images, sizes.samples, 0, run.grid, run.solver, run.sampler,
                 sizes.sample_batch, device)
        synchronize(device)
        seconds = time.perf_counter() - start
    finally:  # the device's memory back for the next measurement, whatever happened
        net.cpu()
    return {
        "sampler": f"{run.solver.name} on the {run.grid_name} grid",
        "nfe": run.nfe,
        "images_per_s": sizes.samples / seconds,
        "outside_share": 1 - inside[0] / seconds,
    }


def comparison(ours: Mode, theirs: Mode, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Our trainer in mode ``ours`` against diffusers' example in mode ``theirs`` (DDPM, the
    sizes' network, batch and shape): the medians of ``compare_repeats`` alternating repetitions."""
    run = resolve("ddpm", sizes)
    setting = vs_diffusers.Setting(
        run.network, run.process.image_shape, run.train.batch, sizes.compare_steps, sizes.compare_warm,
        ours.bf16, ours.compile, device, their_bf16=theirs.bf16,
    )
    result = vs_diffusers.compare("trainer", setting, sizes.compare_repeats)
    return {"ours": ours.name, "theirs": theirs.name, "ours_images_per_s": result.ours,
            "theirs_images_per_s": result.diffusers, "ratio": result.ratio, "repeats": result.repeats}


def distributed(sizes: Sizes, device: torch.device, seconds: float) -> dict[str, Any]:
    """Run this module's rank check under ``torchrun`` on every visible GPU (2 CPU processes),
    stopped with all its workers after ``seconds``; then the same training in this one process,
    at the same global batch from the same weights, and the relative L2 distance between the two
    final weights (DDP averages the same gradients up to rounding)."""
    ranks = torch.cuda.device_count() if device.type == "cuda" else 2
    with tempfile.TemporaryDirectory() as scratch:
        found = Path(scratch) / "ranks.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
            "-m", "benchmarks.gpu_check", "--device", device.type, "--rank-check", str(found),
        ]
        log = Path(scratch) / "torchrun.log"  # a file, not a pipe: nothing waits on a worker's output
        with log.open("w") as output:
            launched = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
            try:
                launched.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                stop(launched)
                return {"ranks": ranks, "ok": False, "error": f"stopped after {seconds:.0f} s"}
        if launched.returncode != 0 or not found.exists():
            tail = " ".join(log.read_text().split()[-60:])
            return {"ranks": ranks, "ok": False, "error": f"exit {launched.returncode}: {tail}"}
        record = json.loads(found.read_text())
        ranked = torch.load(found.with_suffix(".pt"))
    single = rank_training(sizes, device, world=ranks, seed=0)
    distance = float((single - ranked).norm() / ranked.norm())
    return {**record, "ok": True, "single_process_distance": distance}


def stop(launched: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """Stop ``torchrun`` with its workers: SIGTERM, on which it stops them (each runs in a session
    of its own, out of reach of a signal to its group), then SIGKILL if it has not ended within
    ``grace`` seconds; then SIGKILL to each worker it had that is still there (to its process
    group, where it leads one), which a torchrun killed, or slow to stop them, leaves behind
    (holding its GPU)."""
    workers = children(launched.pid)
    launched.terminate()
    try:
        launched.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        launched.kill()
        launched.wait()
    for pid, started in workers.items():
        fields = process_fields(pid)
        if fields is not None and int(fields[19]) == started:  # the same process, not one that took its number
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if int(fields[2]) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


def process_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from the third on: ``[0]`` the state, ``[1]`` the parent,
    ``[2]`` the process group, ``[19]`` the start time (clock ticks since boot); ``None`` when the
    process is gone (or there is no ``/proc``)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, ValueError):
        return None


def children(parent: int) -> dict[int, int]:
    """The processes whose parent is ``parent``, with when each started (``process_fields``)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = process_fields(entry.name)
        if fields is not None and int(fields[1]) == parent:
            found[int(entry.name)] = int(fields[19])
    return found


def rank_training(sizes: Sizes, device: torch.device, world: int, seed: int) -> Tensor:
    """DDPM trained for ``rank_steps`` at a global batch of the budget's per rank × ``world``,
    from the weights seeded by ``seed``, without dropout (whose masks are drawn per rank), in fp32
    and not compiled (a worker would compile afresh, for a minute): the final weights, flattened,
    on the CPU (in a process group, every rank calls this and trains its share)."""
    run = resolve("ddpm", sizes)
    config = dataclasses.replace(
        run.train, train_steps=sizes.rank_steps, batch=run.train.batch * world, bf16=False, compile=False,
        checkpoint_every=sizes.rank_steps, log_every=sizes.rank_steps,
    )
    images = random_images(run.process.image_shape, 2 * config.batch)
    torch.manual_seed(seed)
    net = UNet(dataclasses.replace(network_config(run.network, *run.process.image_shape[:2]), dropout=0.0))
    with tempfile.TemporaryDirectory() as run_dir:
        train(run.process, net, images, config, Path(run_dir), device=device, quiet=True)
    return torch.cat([p.detach().flatten() for p in net.parameters()]).cpu()


def rank_check(device_type: str, found: Path) -> None:
    """One rank of :func:`distributed`, in a process group (NCCL on the ``LOCAL_RANK``-th GPU,
    gloo on the CPU), each rank starting from other weights (DDP must broadcast rank 0's): rank 0
    writes whether the final weights of every rank are identical, gathered over the group, to
    ``found`` and its weights beside it (``.pt``)."""
    sizes = FULL if device_type == "cuda" else TOY
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        weights = rank_training(sizes, device, world, seed=rank).to(device)
        gathered = [torch.empty_like(weights) for _ in range(world)]
        dist.all_gather(gathered, weights)
        difference = max(float((g - gathered[0]).abs().max()) for g in gathered)
        if rank == 0:
            torch.save(weights.cpu(), found.with_suffix(".pt"))
            record = {"ranks": world, "backend": dist.get_backend(), "steps": sizes.rank_steps,
                      "batch": resolve("ddpm", sizes).train.batch * world,
                      "identical": difference == 0.0, "max_difference": difference}
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
                              "sampling": [], "distributed": None, "skipped": [], "failed": [],
                              "peak_memory": "beyond the start"}
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
    record["profile"] = attempt("the profile of a step", lambda: step_profile(first, sizes, images, device))
    for name, run in runs.items():
        if name in nets:
            found = attempt(f"sampling {name}", lambda: sampling(run, nets[name], sizes, images, device))
            if found is not None:
                record["sampling"].append({"process": name, **found})
    unavailable = vs_diffusers.missing()
    if unavailable is None:
        for ours, theirs in sizes.comparisons:
            what = f"ours in {ours.name} against diffusers' example in {theirs.name}"
            found = attempt(what, lambda: comparison(ours, theirs, sizes, device))
            if found is not None:
                record["comparisons"].append(found)
    else:
        record["skipped"].append(f"the comparison with diffusers: {unavailable} (pip install -e '.[bench]')")
    left = lambda: max(60.0, limit_s + 60 - (time.perf_counter() - started))  # noqa: E731
    record["distributed"] = attempt("the distributed run", lambda: distributed(sizes, device, left()))
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
        f"`python -m benchmarks.gpu_check` (what `make gpu-check` runs) at commit `{env['commit']}`, {env['date']}; "
        f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, {env['gpus']} GPU(s); "
        f"TF32 convolutions {env['tf32_convolutions']}, fp32 matrix-product precision {env['matmul_precision']!r}. "
        f"Generated from [{record_name(env)}]({record_name(env)}).",
        "",
        f"Measured ceilings ({env['matmul_n']}³ products on random data): bf16 "
        f"{env['bf16_flops'] / 1e12:.1f} TFLOP/s, fp32 {env['fp32_flops'] / 1e12:.1f} TFLOP/s. "
        f"Network `{net['name']}` at {shape}, batch {net['batch']}: "
        f"{net['training_flops_per_image'] / 1e9:.1f} GFLOP per training image (forward and backward) and "
        f"{net['call_flops_per_image'] / 1e9:.1f} GFLOP per sampler call, counted once by "
        "`torch.utils.flop_counter` on the meta device (matrix products and convolutions). "
        "MFU: images/s × training FLOPs per image ÷ the measured bf16 product rate (for every row; "
        "fp32 training runs its convolutions in TF32 when cuDNN allows it).",
        "",
        "## Training, random images in the dataset's format",
        "",
        f"{record['environment']['sizes']['train_steps']} steps per row; images/s over the steps after the first "
        f"{record['environment']['sizes']['warm']} (their seconds, compilation included, on their own: "
        "the first compiled process compiles the network, the others reuse it). Peak memory: "
        + PEAK_MEMORY.get(record.get("peak_memory", "absolute"), "?") + ".",
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
        "Medians of alternating repetitions of each side (ours, the example, ours, …)."
        if any(c.get("repeats", 1) > 1 for c in record["comparisons"]) else "One repetition of each side.",
        "",
        "| ours | example | repetitions | ours, images/s | example, images/s | ratio |",
        "|---|---|--:|--:|--:|--:|",
        *(
            f"| {c['ours']} | {c['theirs']} | {c.get('repeats', 1)} | {c['ours_images_per_s']:.1f} | "
            f"{c['theirs_images_per_s']:.1f} | {c['ratio']:.2f}{'' if c['ratio'] >= TARGET_RATIO else ' (below)'} |"
            for c in record["comparisons"]
        ),
        "",
        *profile_lines(record.get("profile")),
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


def profile_lines(found: dict[str, Any] | None) -> list[str]:
    """The page's section on where a step's time goes (none for records made before it)."""
    if found is None:
        return []
    kernels = "kernels" if found["device_ms"] is not None else "operators (self CPU time)"
    device = "" if found["device_ms"] is None else (
        f", of which the device's kernels take {found['device_ms']:.1f} ms: the rest is the host's")
    return [
        "## Where a training step's time goes",
        "",
        f"{found['process']} in {found['mode']}, {found['steps']} steps under `torch.profiler`: "
        f"{found['wall_ms']:.1f} ms a step{device}. The five {kernels} that take the most:",
        "",
        f"| {kernels.split()[0][:-1]} | ms a step |",
        "|---|--:|",
        *(f"| `{name}` | {ms:.2f} |" for name, ms in found["top"]),
        "",
    ]


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
        f"({c['ours_images_per_s']:.0f} against {c['theirs_images_per_s']:.0f} images/s, "
        f"{'median of ' + str(c['repeats']) if c.get('repeats', 1) > 1 else 'one repetition'})"
        for c in record["comparisons"]
    ]
    return "\n".join(lines)


def record_name(env: dict[str, Any]) -> str:
    """The record's file name."""
    return f"gpu-{slug(env['device'])}.json"


def distributed_line(found: dict[str, Any] | None) -> str:
    """What the distributed run found, in a sentence."""
    if found is None:
        return "Not run."
    if not found["ok"]:
        return f"`torchrun` over {found['ranks']} ranks failed: {found['error']}"
    run = (f"`torchrun` with {found['backend']} over {found['ranks']} rank(s), DDPM for {found['steps']} steps at a "
           f"global batch of {found['batch']}")
    if found["ranks"] == 1:
        verdict = "one rank only, so no weights were compared across ranks and DDP was not used"
    elif found["identical"]:
        verdict = "the weights of every rank identical"
    else:
        verdict = f"the weights of the ranks NOT identical (max |Δ| {found['max_difference']:g})"
    distance = found.get("single_process_distance")
    against = "" if distance is None else (
        f"; relative L2 distance from one process trained at the same global batch: {distance:.1e}")
    return f"{run}: {verdict}{against}."


def main(argv: list[str] | None = None) -> None:
    """Run the check (module docstring), or one rank of its distributed run."""
    parser = OneLineArgumentParser(prog="benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--out", type=parse_path, default=OUT)
    parser.add_argument("--limit-s", type=at_least(1.0, float), default=420.0,
                        help="start no measurement after this many seconds (torchrun is stopped 60 s after it)")
    parser.add_argument("--commit", default=None, help="the commit to record (default: git's; for a copied tree)")
    parser.add_argument("--rank-check", type=parse_path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_check is not None:
        rank_check(args.device, args.rank_check)
        return
    with command_errors("benchmarks.gpu_check"):
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("no CUDA device is visible; use --device cpu for the toy check")
        check_output_directory(args.out)
        path, record = check(torch.device(args.device), args.out, args.limit_s, args.commit or commit())
        print(path.read_text())
        print(f"wrote {path} and {path.with_suffix('.json')}")
        if record["failed"]:  # the check itself went wrong: an internal error, exit 1
            print(f"error: {len(record['failed'])} measurement(s) failed; see {path}", file=sys.stderr)
            raise SystemExit(1)


if __name__ == "__main__":
    main()
