"""One experiment end to end: resolve its configuration, train, sample, score, summarise.

A run directory holds ``config.json`` (the resolved configuration, as ``--dry-run`` prints
it), ``metrics.jsonl`` (the training log), ``checkpoints/``, ``samples.npz`` (uint8
images), ``samples.png``, ``eval.jsonl`` (FID during training) and ``summary.json`` (costs and
the FID/KID scores). Its name comes from its configuration, so
rerunning a finished run does nothing and rerunning an interrupted one resumes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from corruptions import PROCESSES, Process, SamplerSettings, make_process
from models import UNet, network_config
from spdbench.budgets import Budget, resolve_budget
from spdbench.data import image_shape, load_images
from spdbench.errors import UserError
from spdbench.files import write_atomically, write_text_atomically
from spdbench.metrics import score_images
from spdbench.sampling import generate, network_denoiser
from spdbench.show import process_label, tile
from spdbench.spectra import resolve_spectrum
from spdbench.train import Callback, TrainConfig, TrainResult, TrainState, process_group, train, training_device

CONFIG = "config.json"
SUMMARY = "summary.json"
SAMPLES = "samples.npz"
SAMPLE_GRID = "samples.png"
EVALUATIONS = "eval.jsonl"
FAILED = "failed.json"  #: written by the suite harness when a run fails


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for; ``None`` means the budget's value."""

    process: str
    perturb: float | None = None
    perturb_kind: str | None = None
    dataset: str = "fmnist"
    spectrum: str = "empirical"
    budget: str = "quick"
    steps: int | None = None
    batch: int | None = None
    nfe: int | None = None
    samples: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Run:
    """A resolved run: its process, settings and the JSON that names it."""

    process: Process
    budget: Budget
    train: TrainConfig
    sampler: SamplerSettings
    request: RunRequest

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as written to ``config.json``."""
        net = network_config(self.budget.network, self.process.image_shape[0], self.process.image_shape[1])
        return {
            "process": self.process.config(),
            "dataset": self.request.dataset,
            "image_shape": list(self.process.image_shape),
            "budget": self.budget.name,
            "network": {"size": self.budget.network, **dataclasses.asdict(net)},
            "train": dataclasses.asdict(self.train),
            "sampler": {"nfe": self.nfe, **dataclasses.asdict(self.sampler)},
            "samples": self.samples,
            "sample_batch": self.budget.sample_batch,
            "evaluation": {"every": self.budget.eval_every, "samples": self.budget.eval_samples},
            "seed": self.request.seed,
        }

    @property
    def nfe(self) -> int:
        return len(self.process.time_grid(self.request.nfe or self.budget.nfe)) - 1

    @property
    def samples(self) -> int:
        return self.request.samples or self.budget.samples

    @property
    def run_id(self) -> str:
        """``<process label>-<dataset>-<budget>-s<seed>-<hash of the configuration>``."""
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:8]
        label = process_label(self.process)
        return f"{label}-{self.request.dataset}-{self.budget.name}-s{self.request.seed}-{digest}"


def resolve_run(request: RunRequest) -> Run:
    """Check the request and resolve it against its budget; bad values raise one-line errors."""
    if request.process not in PROCESSES:
        raise UserError(f"unknown process {request.process!r}; valid: {', '.join(PROCESSES)}")
    budget = resolve_budget(request.budget, request.process)
    options: dict[str, Any] = {}
    if request.perturb is not None or request.perturb_kind is not None:
        if request.process != "spd":
            raise UserError(f"--perturb and --perturb-kind apply to spd only, not {request.process!r}")
        options = {"perturb": request.perturb or 0.0, "perturb_kind": request.perturb_kind or "desync"}
    for name in ("steps", "batch", "nfe", "samples"):
        value = getattr(request, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    shape = image_shape(request.dataset)
    spectrum = resolve_spectrum(request.spectrum, request.dataset)
    process = make_process(request.process, shape, spectrum=spectrum, **options)
    process.time_grid(request.nfe or budget.nfe)  # refuses an NFE the process cannot do
    train_config = TrainConfig(
        steps=request.steps or budget.steps,
        batch=request.batch or budget.batch,
        lr=budget.lr,
        warmup=budget.warmup,
        grad_clip=budget.grad_clip,
        ema_decay=budget.ema_decay,
        ema_warmup=budget.ema_warmup,
        seed=request.seed,
        flips=budget.flips,
        checkpoint_every=budget.checkpoint_every,
    )
    return Run(process, budget, train_config, SamplerSettings(), request)


def launch_rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


def prepare_directory(out: Path) -> None:
    """Make ``out`` and check that it takes files; a one-line error if it does not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to {out}: {error.strerror or error}") from None


def execute(run: Run, out: Path, force: bool = False, quiet: bool = False) -> tuple[Path, dict[str, Any]]:
    """Train, sample and summarise ``run`` under ``out/<run id>``; returns the directory and
    the summary. A finished run is returned as it is (unless ``force``: start again)."""
    prepare_directory(out)
    run_dir = out / run.run_id
    config = json.loads(json.dumps(run.config()))  # as it reads back from config.json
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    if (run_dir / SUMMARY).exists():
        return run_dir, json.loads((run_dir / SUMMARY).read_text())
    if (run_dir / CONFIG).exists() and json.loads((run_dir / CONFIG).read_text()) != config:
        raise UserError(f"{run_dir} holds a run with another configuration; use --force to replace it")
    write_text_atomically(run_dir / CONFIG, json.dumps(config, indent=2) + "\n")

    images = load_images(run.request.dataset, "train")
    with torch.random.fork_rng(devices=[]):  # the initial weights come from the run's seed
        torch.manual_seed(run.request.seed)
        net = UNet(network_config(run.budget.network, run.process.image_shape[0], run.process.image_shape[1]))
    with process_group(training_device(None)):  # under torchrun, every rank trains and samples
        result = train(run.process, net, images, run.train, run_dir, evaluation(run, images, run_dir), quiet=quiet)
        started = time.perf_counter()
        samples = sample_from(run, result.ema.averaged_model(result.net), images, run.samples, bool(result.config.bf16))
        sampling_seconds = time.perf_counter() - started
        if samples is None:  # a rank other than 0: rank 0 writes the run
            return run_dir, {}
        return run_dir, finish(run, run_dir, result, samples, sampling_seconds)


def finish(
    run: Run, run_dir: Path, result: TrainResult, samples: torch.Tensor, sampling_seconds: float
) -> dict[str, Any]:
    """Write the samples, score them and write the summary; returns the summary."""
    write_samples(run_dir, samples)
    scores = score_images(samples, run.request.dataset, seed=run.request.seed)

    final = result.metrics or {}
    summary = {
        "run_id": run.run_id,
        "train_steps": result.step,
        "train_seconds": result.seconds,
        "images_per_second": (result.step - result.resumed_from) * result.config.batch / result.seconds,
        "final_loss": final.get("loss"),
        "nfe": run.nfe,
        "samples": len(samples),
        "sampling_seconds": sampling_seconds,
        "scores": scores.to_dict(),
    }
    write_text_atomically(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def sample_from(run: Run, net: torch.nn.Module, images: torch.Tensor, count: int, bf16: bool) -> torch.Tensor | None:
    """``count`` uint8 images of the run's sample set from ``net`` with the run's sampler.

    In a process group every rank makes its share (images ``⌊count·r/W⌋ …`` of the same sample
    set, so the set does not depend on the number of ranks) and rank 0 gets them all; the
    other ranks get ``None``."""
    device = next(net.parameters()).device
    denoiser = network_denoiser(net, run.process, bf16)
    nfe = run.request.nfe or run.budget.nfe
    grouped = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
    first, end = count * rank // world, count * (rank + 1) // world
    share = generate(
        denoiser, run.process, images, end - first, run.request.seed, nfe, run.sampler, run.budget.sample_batch,
        device, first=first,
    )
    if not grouped:
        return share
    shares: list[torch.Tensor] | None = [torch.empty(0)] * world if rank == 0 else None
    dist.gather_object(share, shares, dst=0)
    return torch.cat(shares) if shares is not None else None


def evaluation(run: Run, images: torch.Tensor, run_dir: Path) -> Callback:
    """Every ``eval_every`` steps (not the last: the run's own score is that), score
    ``eval_samples`` images of the EMA network and append ``{step, fid, samples}`` to
    ``eval.jsonl``. It draws from its own generators, so training is unchanged by it."""

    def evaluate(state: TrainState) -> None:
        if state.step % run.budget.eval_every or state.step == run.train.steps:
            return
        samples = sample_from(run, state.ema.averaged_model(state.net), images, run.budget.eval_samples, False)
        if samples is None:  # a rank other than 0, which only helped to sample
            return
        scores = score_images(samples, run.request.dataset, seed=run.request.seed)
        with (run_dir / EVALUATIONS).open("a") as log:
            log.write(json.dumps({"step": state.step, "fid": scores.fid, "samples": scores.samples}) + "\n")

    return evaluate


def write_samples(run_dir: Path, samples: torch.Tensor) -> None:
    """``samples.npz`` (uint8 ``N × C × H × W`` under ``images``) and a PNG grid of the first 64."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=samples.numpy())
    write_atomically(run_dir / SAMPLES, lambda temporary: temporary.write_bytes(buffer.getvalue()))
    shown = samples[:64].float() / 255
    columns = min(8, len(shown))
    rows = [shown[i : i + columns] for i in range(0, len(shown) // columns * columns, columns)]
    grid = (tile(rows) * 255).round().to(torch.uint8).numpy()
    write_atomically(run_dir / SAMPLE_GRID, lambda temporary: Image.fromarray(grid).save(temporary, format="PNG"))


def score_run(run_dir: Path, features: str = "default", device: str = "cpu") -> dict[str, Any]:
    """Score a finished run's ``samples.npz`` again (other features, another machine) and write
    ``scores-<features name>.json`` beside it; returns the scores."""
    config_path, samples_path = run_dir / CONFIG, run_dir / SAMPLES
    if not config_path.exists() or not samples_path.exists():
        raise UserError(f"{run_dir} is not a finished run: it needs {CONFIG} and {SAMPLES}")
    dataset = json.loads(config_path.read_text())["dataset"]
    try:
        with np.load(samples_path) as archive:
            samples = torch.from_numpy(archive["images"])
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{samples_path} is not a readable sample archive ({error})") from None
    seed = json.loads(config_path.read_text())["seed"]
    scores = score_images(samples, dataset, features=features, seed=seed, device=device).to_dict()
    write_text_atomically(run_dir / f"scores-{scores['features']}.json", json.dumps(scores, indent=2) + "\n")
    return scores
