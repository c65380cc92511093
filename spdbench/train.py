"""The one trainer: every process is trained by this loop, which never asks which process it holds.

Per step: a global batch ``x0`` of training images; times ``t = process.sample_time(B)`` and pixel
noise from one seeded generator; ``c = process.corrupt(x0, t, noise)``; one network call
``net(c.x_t, process.network_time(t))`` (under bf16 autocast when on); the mean of
``process.loss``; AdamW with a linear learning-rate warm-up and gradient-norm clipping; the EMA.

Randomness: the data order is a fresh permutation per epoch (:func:`spdbench.data.iterate_batches`)
drawn from a CPU generator; times and noise come from a generator on the training device; both are
seeded from ``config.seed`` and their states are in every checkpoint. Dropout uses torch's global
generator, reseeded at every step from ``(seed, step, rank)``, so it needs no saved state. On the
CPU, a run stopped at any point and restarted in the same ``run_dir`` ends with exactly the weights
of an uninterrupted run. The network's initial weights are the caller's: seed before building it.

Several processes: launched by ``torchrun`` (``WORLD_SIZE > 1``), or with a process group already
initialised, the network is wrapped in DistributedDataParallel (NCCL on CUDA, gloo on the CPU).
Every rank draws the same global batch, times and noise and trains on its slice of them, so the
run computes the same global batch as a single process (up to floating-point rounding of the
gradient average), but for dropout's masks, which each rank draws for its slice: a network with
dropout trains otherwise with another number of processes, so a run resumes only with as many.
Only rank 0 writes the log and the checkpoints.

Outputs in ``run_dir``: ``metrics.jsonl``, one JSON object per ``log_every`` steps with the mean
loss, the mean loss per quarter of the path (``network_time`` in [0, .25), [.25, .5), [.5, .75),
[.75, 1]; ``null`` for a quarter no image fell in), the learning rate, the mean gradient norm and
the images per second; and the checkpoint (:mod:`spdbench.checkpoint`), written every
``checkpoint_every`` steps and at the end, with the training seconds so far. Calling
:func:`train` again on the same ``run_dir`` resumes from its checkpoint and drops the log
entries written after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from corruptions import Process
from models import EMA
from spdbench.budgets import TrainConfig
from spdbench.checkpoint import Checkpoint, checkpoint_path, latest_checkpoint, read_checkpoint, save_checkpoint
from spdbench.data import iterate_batches
from spdbench.errors import UserError
from spdbench.progress import progress_bar
from spdbench.records import as_json, last_entry, trim_step_log

METRICS = "metrics.jsonl"
"""The training log in a run directory."""

QUARTERS = 4
"""The loss is logged per this many equal parts of the network time range [0, 1]."""

GROUP_TIMEOUT = datetime.timedelta(hours=1)
"""How long a rank waits for the others (longer than scoring 50,000 images on one GPU)."""

# Settings that may differ between a run and its resumption: they change neither the maths nor
# the random streams (compile and channels_last change at most the rounding).
_RESUMABLE_CHANGES = ("train_steps", "checkpoint_every", "log_every", "compile", "channels_last")
# What the JSON part of a checkpoint must hold to resume from it.
_RESUME_KEYS = ("config", "process", "device", "train_seconds", "ema_updates", "data_position", "optimizer")


@dataclass(frozen=True)
class TrainState:
    """What a callback receives after every step (and after that step's checkpoint, if any).

    Attributes:
        step: the number of optimizer steps taken.
        net: the network being trained (unwrapped); switch it back with ``net.train()`` if changed.
        ema: its moving average; ``ema.averaged_model(net)`` is a copy to sample with.
        rank: this process's rank (0 without distribution); only rank 0 should write files.
        starting: the call before the first step, with the state the call starts from (step 0,
            or the step of the checkpoint it resumed from).
    """

    step: int
    net: nn.Module
    ema: EMA
    rank: int
    starting: bool = False


Callback = Callable[[TrainState], None]


@dataclass(frozen=True)
class TrainResult:
    """The end of a call to :func:`train`.

    Attributes:
        config: the configuration the run used, with its automatic choices made.
        step: the step reached (``config.train_steps``).
        resumed_from: the step of the checkpoint the call started from (0 for a fresh run).
        checkpoint: the directory of the final checkpoint.
        metrics: the last entry of the run's log (``None`` if it has none).
        seconds: the wall-clock seconds of the training steps that led to the final weights,
            summed over every call that trained the run (steps after the last checkpoint of an
            interrupted call are counted once, when they are trained again; callbacks are not
            counted).
        net: the trained network (the module passed in, on the training device).
        ema: its moving average.
    """

    config: TrainConfig
    step: int
    resumed_from: int
    checkpoint: Path
    metrics: dict[str, Any] | None
    seconds: float
    net: nn.Module
    ema: EMA


def train(
    process: Process,
    net: nn.Module,
    images: Tensor,
    config: TrainConfig,
    run_dir: Path,
    callback: Callback | None = None,
    *,
    device: torch.device | str | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train ``net`` (in place) to reverse ``process`` on ``images`` (float N×C×H×W in [-1, 1]),
    writing the log and checkpoints into ``run_dir``, or resuming from the checkpoint there.

    ``device``: default CUDA (the ``LOCAL_RANK``-th GPU) when available, else the CPU.
    ``callback`` runs on every rank once before the first step (``starting``) and after every
    step (evaluation hooks, tests).
    ``quiet`` hides the progress bar (shown on rank 0 only, in a terminal).

    Raises:
        UserError: bad settings or inputs, a checkpoint that is corrupt or belongs to another run,
            or a non-finite loss (the last checkpoint is left as it was).
    """
    device = training_device(device)
    config = config.resolved(device)
    with process_group(device) as (rank, world):
        check_inputs(process, images, config, world)
        run_dir = Path(run_dir)
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        found = latest_checkpoint(run_dir)
        checkpoint = read_checkpoint(found) if found is not None else None
        if checkpoint is not None:
            _check_resumable(checkpoint, config, process, device, world)

        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        net.to(device, memory_format=memory_format)
        model: nn.Module = net
        if world > 1:  # DDP starts every rank from rank 0's weights: make the EMA after it
            device_ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
        ema = EMA(model, config.ema_decay, warmup=config.ema_warmup)
        # fused: one kernel for every parameter (4 % of a `quick` step saved on the CPU, benchmarks/README.md)
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
        noise_generator = torch.Generator(device).manual_seed(_seed(config.seed, "noise"))
        batches = _Batches(images.to(device), config.batch, torch.Generator().manual_seed(_seed(config.seed, "data")))
        state = _State(net, ema, optimizer, noise_generator, batches)
        settings = {
            "config": dataclasses.asdict(config),
            "process": process.config(),
            "device": device.type,
            "world_size": world,
        }
        if checkpoint is not None:
            state.restore(checkpoint)
        if config.compile:
            model = torch.compile(model)

        start = checkpoint.step if checkpoint is not None else 0
        trained_seconds = float(checkpoint.meta["train_seconds"]) if checkpoint is not None else 0.0
        if rank == 0:
            trim_step_log(run_dir / METRICS, start)
        local = config.batch // world
        mine = slice(rank * local, (rank + 1) * local)
        max_norm = math.inf if config.grad_clip is None else config.grad_clip
        window = _Window(device, start + 1)
        metrics = last_entry(run_dir / METRICS)
        log_file = (run_dir / METRICS).open("a") if rank == 0 else contextlib.nullcontext()
        bar_shown = progress_bar("training", config.train_steps, completed=start, quiet=quiet or rank > 0)
        with log_file as log, bar_shown as bar:
            if callback is not None:
                callback(TrainState(step=start, net=net, ema=ema, rank=rank, starting=True))
            for step in range(start + 1, config.train_steps + 1):
                step_started = time.perf_counter()
                lr = config.lr * min(1.0, step / config.warmup) if config.warmup else config.lr
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.manual_seed(_seed(config.seed, "dropout", step, rank))
                x0 = next(batches)
                if config.flips:  # drawn for the whole global batch, like the times and noise
                    flipped = torch.rand(config.batch, generator=noise_generator, device=device) < 0.5
                    x0 = torch.where(flipped[:, None, None, None], x0.flip(-1), x0)
                t = process.sample_time(config.batch, noise_generator)
                noise = torch.randn(x0.shape, generator=noise_generator, device=device, dtype=x0.dtype)
                corruption = process.corrupt(x0[mine], t[mine], noise[mine])
                network_time = process.network_time(t[mine])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    out = model(corruption.x_t.contiguous(memory_format=memory_format), network_time)
                losses = process.loss(out, corruption)
                optimizer.zero_grad(set_to_none=True)
                losses.mean().backward()
                grad_norm = nn.utils.clip_grad_norm_(net.parameters(), max_norm)
                optimizer.step()
                ema.update(net)
                window.add(losses.detach(), network_time, grad_norm)
                bar.advance()

                log_due = step % config.log_every == 0 or step == config.train_steps
                checkpoint_due = step % config.checkpoint_every == 0 or step == config.train_steps
                if log_due or checkpoint_due:
                    summary = window.summary(world)
                    bad = summary.first_nonfinite()
                    if bad is not None:
                        kept = latest_checkpoint(run_dir)
                        raise UserError(
                            f"non-finite {bad[1]} at step {bad[0]}; last good checkpoint: "
                            f"{kept if kept is not None else 'none (no checkpoint was written)'}"
                        )
                    if log_due:
                        metrics = summary.entry(step, lr, config.batch)
                        if rank == 0:
                            log.write(json.dumps(metrics) + "\n")
                            log.flush()
                        bar.describe(f"loss {metrics['loss']:.4g}")
                        window = _Window(device, step + 1)
                    if checkpoint_due and rank == 0:
                        seconds = trained_seconds + time.perf_counter() - step_started
                        state.save(run_dir, step, {**settings, "train_seconds": seconds})
                trained_seconds += time.perf_counter() - step_started
                if callback is not None:
                    callback(TrainState(step=step, net=net, ema=ema, rank=rank))
    return TrainResult(
        config=config,
        step=config.train_steps,
        resumed_from=start,
        checkpoint=checkpoint_path(run_dir, config.train_steps),
        metrics=metrics,
        seconds=trained_seconds,
        net=net,
        ema=ema,
    )


class _Batches:
    """Global batches of ``images``, epoch after epoch, each epoch in the order
    :func:`~spdbench.data.iterate_batches` draws from ``generator`` (a partial last batch is left out).

    The state (:attr:`epoch_state`, the generator's state when the current epoch began, and
    :attr:`position`, the batches taken from it) restores the stream exactly.
    """

    def __init__(self, images: Tensor, batch: int, generator: torch.Generator) -> None:
        self.images = images
        self.batch = batch
        self.generator = generator
        self.per_epoch = images.shape[0] // batch
        self.restore(generator.get_state(), 0)

    def restore(self, epoch_state: Tensor, position: int) -> None:
        """Continue from batch ``position`` of the epoch that began with generator state ``epoch_state``."""
        self.generator.set_state(epoch_state)
        self.epoch_state = epoch_state
        self.position = 0
        self._epoch = iterate_batches(self.images, self.batch, self.generator)
        for _ in range(position):
            next(self)

    def __next__(self) -> Tensor:
        if self.position == self.per_epoch:
            self.restore(self.generator.get_state(), 0)
        self.position += 1
        return next(self._epoch)


@dataclass(frozen=True)
class _Summary:
    """The steps of a log window, summed over the ranks."""

    first_step: int
    losses: list[float]
    grad_norms: list[float]
    quarter_sums: list[float]
    quarter_counts: list[float]
    seconds: float

    def first_nonfinite(self) -> tuple[int, str] | None:
        """The first step with a non-finite loss or gradient norm, and which it was; ``None`` if none."""
        for i, (loss, grad_norm) in enumerate(zip(self.losses, self.grad_norms)):
            if not math.isfinite(loss):
                return self.first_step + i, "loss"
            if not math.isfinite(grad_norm):
                return self.first_step + i, "gradient norm"
        return None

    def entry(self, step: int, lr: float, batch: int) -> dict[str, Any]:
        """The log entry of the window ending at ``step``."""
        quarters = [s / n if n else None for s, n in zip(self.quarter_sums, self.quarter_counts)]
        return {
            "step": step,
            "loss": sum(self.losses) / len(self.losses),
            "loss_quarters": quarters,
            "lr": lr,
            "grad_norm": sum(self.grad_norms) / len(self.grad_norms),
            "images_per_s": len(self.losses) * batch / self.seconds,
        }


class _Window:
    """The steps since the last log entry, kept on the device so that a summary syncs once."""

    def __init__(self, device: torch.device, first_step: int) -> None:
        self.first_step = first_step
        self.started = time.perf_counter()
        self.losses: list[Tensor] = []
        self.grad_norms: list[Tensor] = []
        self.quarter_sums = torch.zeros(QUARTERS, dtype=torch.float64, device=device)
        self.quarter_counts = torch.zeros(QUARTERS, dtype=torch.float64, device=device)

    def add(self, losses: Tensor, network_time: Tensor, grad_norm: Tensor) -> None:
        """Record one step: this rank's per-image losses and network times, and the gradient norm."""
        quarter = (network_time * QUARTERS).long().clamp(0, QUARTERS - 1)
        self.quarter_sums.index_add_(0, quarter, losses.double())
        self.quarter_counts.index_add_(0, quarter, torch.ones_like(losses, dtype=torch.float64))
        self.losses.append(losses.mean())
        self.grad_norms.append(grad_norm)

    def summary(self, world: int) -> _Summary:
        """The window over all ranks (a collective call: every rank must make it)."""
        steps = len(self.losses)
        # Every rank holds the same gradient norm, so its sum over ranks is divided like the losses.
        per_step = torch.cat([torch.stack(self.losses), torch.stack(self.grad_norms)]).double() / world
        packed = torch.cat([per_step, self.quarter_sums, self.quarter_counts])
        if world > 1:
            dist.all_reduce(packed)
        values = packed.tolist()
        return _Summary(
            first_step=self.first_step,
            losses=values[:steps],
            grad_norms=values[steps : 2 * steps],
            quarter_sums=values[2 * steps : 2 * steps + QUARTERS],
            quarter_counts=values[2 * steps + QUARTERS :],
            seconds=time.perf_counter() - self.started,
        )


def _seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts``, so that every random stream of a run has its own."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


def training_device(device: torch.device | str | None) -> torch.device:
    """The training device: the one given, else CUDA when available, else the CPU; a CUDA device
    without an index is the ``LOCAL_RANK``-th GPU (set as the current one)."""
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int]]:
    """``(rank, world size)``: of the process group already initialised; else of one initialised
    here from ``torchrun``'s environment when ``WORLD_SIZE > 1`` (and destroyed on leaving it);
    else ``(0, 1)``. Its timeout is ``GROUP_TIMEOUT``: the other ranks wait while rank 0 scores
    and writes a run."""
    if dist.is_available() and dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size()
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=GROUP_TIMEOUT)
        try:
            yield dist.get_rank(), dist.get_world_size()
            dist.barrier()  # no rank tears the group down while another still talks to it
        finally:
            dist.destroy_process_group()
    else:
        yield 0, 1


def check_inputs(process: Process, images: Tensor, config: TrainConfig, world: int) -> None:
    """Refuse images that do not fit the process and batches that do not split across the ranks."""
    if images.ndim != 4 or images.dtype != torch.float32 or tuple(images.shape[1:]) != process.image_shape:
        raise UserError(
            f"training images must be a float32 tensor N×{'×'.join(map(str, process.image_shape))} "
            f"for this process, got {images.dtype} {tuple(images.shape)}"
        )
    if config.batch % world:
        raise UserError(f"the batch of {config.batch} does not split evenly across {world} processes")
    if config.batch > images.shape[0]:
        raise UserError(f"the batch of {config.batch} is larger than the {images.shape[0]} training images")


def _check_resumable(
    checkpoint: Checkpoint, config: TrainConfig, process: Process, device: torch.device, world: int
) -> None:
    """Refuse to resume from a checkpoint of another run: other settings, process, device type or
    number of processes."""
    meta, where = checkpoint.meta, checkpoint.path
    missing = [key for key in _RESUME_KEYS if key not in meta]
    if missing or not isinstance(meta.get("config"), dict):
        raise UserError(
            f"the checkpoint {where} lacks {', '.join(missing) or 'a valid config'}: it is damaged or was "
            "written by another version of spdbench; use another run directory"
        )
    saved = meta["config"]
    differing = [
        f"{name} {saved.get(name)!r} → {value!r}"
        for name, value in dataclasses.asdict(config).items()
        if name not in _RESUMABLE_CHANGES and saved.get(name) != value
    ]
    if differing:
        raise UserError(
            f"the checkpoint {where} belongs to a run with other settings ({'; '.join(differing)}); "
            "use another run directory, or the same settings to resume"
        )
    if meta["process"] != as_json(process.config()):
        raise UserError(
            f"the checkpoint {where} belongs to a run of process {meta['process']}, not {process.config()}; "
            "use another run directory"
        )
    if meta["device"] != device.type:
        raise UserError(
            f"the checkpoint {where} was written on {meta['device']}, and resuming on {device.type} "
            "would change its random streams; resume on the same kind of device"
        )
    if (written := meta.get("world_size", 1)) != world:
        raise UserError(
            f"the checkpoint {where} was written by {written} processes, and resuming with {world} "
            "would change dropout's masks (each process draws its own); resume with as many"
        )
    if checkpoint.step > config.train_steps:
        raise UserError(
            f"the checkpoint {where} is at step {checkpoint.step}, beyond the {config.train_steps} steps asked for"
        )


@dataclass(frozen=True)
class _State:
    """Everything a checkpoint holds besides the run's settings: the weights, the EMA, the
    optimizer, the generator of times and noise and the data order."""

    net: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    noise: torch.Generator
    batches: _Batches

    def save(self, run_dir: Path, step: int, settings: dict[str, Any]) -> None:
        """Write the checkpoint of ``step``, with the run's ``settings`` in its JSON part. The
        optimizer's tensors and the generator states go to safetensors, the rest to JSON."""
        optimizer = self.optimizer.state_dict()
        tensors = {"rng/noise": self.noise.get_state(), "rng/data_epoch": self.batches.epoch_state}
        per_parameter: dict[str, dict[str, Any]] = {}
        for index, values in optimizer["state"].items():
            per_parameter[str(index)] = {}
            for key, value in values.items():
                if isinstance(value, Tensor):
                    tensors[f"optimizer/{index}/{key}"] = value
                else:
                    per_parameter[str(index)][key] = value
        meta = {
            **settings,
            "step": step,
            "ema_updates": self.ema.num_updates,
            "data_position": self.batches.position,
            "optimizer": {"param_groups": optimizer["param_groups"], "state": per_parameter},
        }
        ema = {**self.ema.shadow, **self.ema.buffers}
        save_checkpoint(run_dir, step, self.net.state_dict(), ema, tensors, meta)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Put everything back as it was when ``checkpoint`` was written.

        Raises:
            UserError: the checkpoint does not fit this network or optimizer.
        """
        meta = checkpoint.meta
        try:
            self.net.load_state_dict(checkpoint.model)
            self.ema.load_state_dict(
                {
                    "num_updates": meta["ema_updates"],
                    "shadow": {name: t for name, t in checkpoint.ema.items() if name in self.ema.shadow},
                    "buffers": {name: t for name, t in checkpoint.ema.items() if name not in self.ema.shadow},
                }
            )
            state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["optimizer"]["state"].items()}
            for name, tensor in checkpoint.state.items():
                kind, _, key = name.partition("/")
                if kind == "optimizer":
                    index, _, entry = key.partition("/")
                    state[int(index)][entry] = tensor
            # JSON turned the tuples of the parameter groups (AdamW's betas) into lists.
            groups = [
                {key: tuple(v) if isinstance(v, list) and key != "params" else v for key, v in group.items()}
                for group in meta["optimizer"]["param_groups"]
            ]
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
            self.noise.set_state(checkpoint.state["rng/noise"])
            self.batches.restore(checkpoint.state["rng/data_epoch"], meta["data_position"])
        except (KeyError, ValueError, RuntimeError) as error:
            raise checkpoint.does_not_fit(error) from error
