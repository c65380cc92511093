"""One experiment end to end: resolve its configuration, train, sample, score, summarise.

What a run directory holds is ``spdbench.records``. Its name comes from its configuration, so
rerunning a finished run does nothing and rerunning an interrupted one resumes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor

from corruptions import PROCESSES, Process, make_process, process_options
from corruptions.errors import NfeRangeError
from corruptions.spectrum import Spectrum
from models import UNet, network_config
from spdbench.budgets import AUTO, Budget, TrainConfig, resolve_budget
from spdbench.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint
from spdbench.data import image_shape, load_images
from spdbench.errors import UserError, check_seed, one_line
from spdbench.files import check_output_directory, remove_directory, write_atomically
from spdbench.grids import GRIDS, check_grid, make_grid, solver_calls, with_correctors
from spdbench.metrics import score_images
from spdbench.progress import progress_bar
from spdbench.records import (
    CONFIG,
    CONFIG_KINDS,
    EVALUATIONS,
    RESAMPLED,
    SAMPLE_GRID,
    SAMPLES,
    SUMMARY,
    SUMMARY_KINDS,
    append_evaluation,
    as_json,
    read_record,
    read_samples,
    step_log,
    trim_step_log,
    write_json,
)
from spdbench.samplerreport import best_sampler
from spdbench.sampling import MAX_SAMPLES, generate, network_denoiser
from spdbench.show import tile
from spdbench.solvers import CORRECTIONS, SETTINGS, SamplerSettings, Solver, get_solver, solvers_for
from spdbench.spectra import process_spectrum, resolve_spectrum
from spdbench.train import (
    Callback,
    TrainResult,
    TrainState,
    check_inputs,
    process_group,
    train,
    training_device,
)


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for: a process with its options, and what to change in the budget
    (``None`` means the budget's value)."""

    process: str
    options: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "fmnist"
    spectrum: str = "empirical"
    budget: str = "quick"
    train_steps: int | None = None
    batch: int | None = None
    sampler: str | None = None
    grid: str | None = None
    nfe: int | None = None
    eta: float | None = None
    variance: str | None = None
    clip_x0: bool | None = None
    corrector: float | None = None
    projection: float | None = None
    samples: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Run:
    """A resolved run: everything it uses, decided once from the budget and the request."""

    process: Process
    dataset: str
    budget: str
    network: str
    train: TrainConfig
    solver: Solver
    grid_name: str
    grid: Tensor = field(compare=False)  #: the sampler's times, ``nfe + 1`` of them
    spectrum: str  #: the data spectrum the grid was chosen and laid out with (recorded unless native)
    sampler: SamplerSettings
    samples: int
    sample_batch: int
    eval_every: int
    eval_samples: int
    seed: int

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as written to ``config.json``."""
        net = network_config(self.network, self.process.image_shape[0], self.process.image_shape[1])
        return {
            "process": self.process.config(),
            "dataset": self.dataset,
            "image_shape": list(self.process.image_shape),
            "budget": self.budget,
            "network": {"size": self.network, **dataclasses.asdict(net)},
            "train": dataclasses.asdict(self.train),
            "sampler": {
                "solver": self.solver.name,
                "grid": self.grid_name,
                "nfe": self.nfe,
                **self.solver.recorded(self.sampler),
                **({} if self.grid_name == "native" else {"spectrum": self.spectrum}),
            },
            "samples": self.samples,
            "sample_batch": self.sample_batch,
            "evaluation": {"every": self.eval_every, "samples": self.eval_samples},
            "seed": self.seed,
        }

    @property
    def nfe(self) -> int:
        """Network calls of the sampler."""
        return len(self.grid) - 1

    @property
    def run_id(self) -> str:
        """``<process label>-<dataset>-<budget>-s<seed>-<hash of the configuration>``."""
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.process.label()}-{self.dataset}-{self.budget}-s{self.seed}-{digest}"


def resolve_run(request: RunRequest) -> Run:
    """Check the request and resolve it against its budget; bad values raise one-line errors."""
    budget = resolve_budget(request.budget, request.process)
    for name, flag in (("train_steps", "--steps"), ("batch", "--batch"), ("nfe", "--nfe"), ("samples", "--samples")):
        value = getattr(request, name)
        if value is not None and value < 1:
            raise UserError(f"{flag} ({name}) must be at least 1, got {value}")
    if request.samples is not None and request.samples > MAX_SAMPLES:
        raise UserError(f"--samples must be at most {MAX_SAMPLES:,}, got {request.samples}")
    check_seed(request.seed)
    if request.sampler is not None:
        get_solver(request.sampler)
    if request.grid not in (None, AUTO):
        check_grid(request.grid)
    shape = image_shape(request.dataset)
    try:
        network_config(budget.network, shape[0], shape[1])
    except ValueError as error:
        shown = "×".join(map(str, shape))
        message = f"the network {budget.network} does not fit {request.dataset}'s {shown} images: {error}"
        raise UserError(message) from None
    spectrum = resolve_spectrum(request.spectrum, request.dataset)
    process = make_process(request.process, shape, spectrum=spectrum, **request.options)
    train_config = dataclasses.replace(
        budget.train,
        train_steps=request.train_steps or budget.train.train_steps,
        batch=request.batch or budget.train.batch,
        seed=request.seed,
    )
    solver, grid_name = choose_sampler(request, budget, process, spectrum)
    settings = sampler_settings(solver, request, budget)
    data_spectrum = None if grid_name == "native" else process_spectrum(spectrum, process)
    nfe = request.nfe or budget.nfe
    if not settings.corrects:
        try:
            grid = make_grid(grid_name, process, nfe, data_spectrum)
        except NfeRangeError as error:
            raise UserError(f"--nfe must lie in [1, {error.most}] for {process.label()} ({error.limit}), got {nfe}")
    else:
        grid = corrected_grid(grid_name, process, nfe, data_spectrum)
    return Run(
        process=process,
        dataset=request.dataset,
        budget=budget.name,
        network=budget.network,
        train=train_config,
        solver=solver,
        grid_name=grid_name,
        grid=grid,
        spectrum=request.spectrum,
        sampler=settings,
        samples=request.samples or budget.samples,
        sample_batch=budget.sample_batch,
        eval_every=budget.eval_every,
        eval_samples=budget.eval_samples,
        seed=request.seed,
    )


def corrected_grid(grid_name: str, process: Process, nfe: int | None, spectrum: Tensor | None) -> Tensor:
    """The grid ``grid_name`` of ``nfe`` calls (``None``: as many as the process's levels) with a
    corrector: ``solver_calls(nfe)`` of them the solver's, the others correcting
    (``with_correctors``); at least 3 calls, so that one corrects."""
    nfe = len(process.time_grid()) - 1 if nfe is None else nfe
    if nfe < 3:
        raise UserError(f"--corrector and --projection need --nfe of at least 3 (one call to correct), got {nfe}")
    try:
        return with_correctors(make_grid(grid_name, process, solver_calls(nfe), spectrum), nfe)
    except NfeRangeError as error:
        most = 2 * error.most - 1
        limit = f"with a corrector, {error.limit}"
        raise UserError(f"--nfe must lie in [3, {most}] for {process.label()} ({limit}), got {nfe}") from None


def choose_sampler(request: RunRequest, budget: Budget, process: Process, spectrum: Spectrum) -> tuple[Solver, str]:
    """The run's solver and grid: those the request names (a solver is refused if it does not
    serve ``process``), else the budget's first pair whose solver serves the process (its
    exceptions for the process first); a solver the budget does not list runs on the request's
    grid, else the native one. With the grid
    ``auto``, the pair that the exact measure ranks best at the run's NFE for the process at its
    defaults (so that every run of one process, its variants too, samples alike), among the named
    solver, or else every solver that serves the process."""
    if request.sampler is not None:
        get_solver(request.sampler).check(process)
    serving = solvers_for(process)
    if request.grid == AUTO:
        if request.corrector or request.projection:
            raise UserError("the grid auto ranks the samplers without a corrector; give --grid with one")
        nfe = request.nfe or budget.nfe
        if nfe is None:
            raise UserError(f"budget {budget.name!r} samples over the full grid; the grid auto needs --nfe")
        defaults = make_process(process.name, process.image_shape, spectrum=spectrum)
        solvers = [request.sampler] if request.sampler else serving
        solver, grid = best_sampler(defaults, process_spectrum(spectrum, defaults), solvers, list(GRIDS), nfe)
        return get_solver(solver), grid
    own = [(solver, grid) for name, solver, grid in budget.exceptions if name == process.name]
    preferred = [(solver, grid) for solver, grid in [*own, *budget.samplers] if solver in serving]
    if not (request.sampler or preferred):
        raise UserError(f"budget {budget.name!r} names no sampler for {process.name!r}; give one with --sampler")
    name = request.sampler or preferred[0][0]
    grids = [grid for solver, grid in preferred if solver == name]
    return get_solver(name), request.grid or (grids[0] if grids else "native")


def sampler_settings(solver: Solver, request: RunRequest, budget: Budget) -> SamplerSettings:
    """The request's η, variance, clipping, corrector and projection, refused where ``solver``
    does not use them; the budget's for those it uses and the request leaves out."""
    given = {name: getattr(request, name) for name in SETTINGS}
    solver.settings_for(**given)  # type: ignore[arg-type]
    chosen = {
        name: getattr(budget.sampler_settings, name) if given[name] is None else given[name] for name in solver.settings
    }
    return solver.settings_for(**chosen)


def launch_rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


def execute(run: Run, out: Path, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Train, sample and summarise ``run`` under ``out/<run id>``; returns the directory and
    the summary. A finished run is returned as it is (unless ``force``: start again); a run
    directory of another configuration, or a summary without its configuration, is refused."""
    run_dir = out / run.run_id
    config = as_json(run.config())  # as it reads back from config.json
    if not force:
        if (run_dir / CONFIG).exists() and read_record(run_dir / CONFIG) != config:
            raise UserError(f"{run_dir} holds a run with another configuration; use --force to replace it")
        if (run_dir / SUMMARY).exists():
            if not (run_dir / CONFIG).exists():
                raise UserError(f"{run_dir} holds a summary without its {CONFIG}; use --force to replace it")
            return run_dir, read_record(run_dir / SUMMARY, kinds=SUMMARY_KINDS)
    images = load_images(run.dataset, "train")  # everything is checked before anything is written
    check_inputs(run.process, images, run.train, int(os.environ.get("WORLD_SIZE", "1")))
    check_output_directory(out)
    if force and run_dir.exists():
        remove_directory(run_dir)
    write_json(run_dir / CONFIG, config)

    with torch.random.fork_rng(devices=[]):  # the initial weights come from the run's seed
        torch.manual_seed(run.seed)
        net = UNet(network_config(run.network, run.process.image_shape[0], run.process.image_shape[1]))
    with process_group(training_device(None)):  # under torchrun, every rank trains and samples
        result = train(run.process, net, images, run.train, run_dir, evaluation(run, images, run_dir))
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
    scores = score_images(samples, run.dataset, seed=run.seed)

    final = result.metrics or {}
    summary = {
        "run_id": run.run_id,
        "train_steps": result.step,
        "train_seconds": result.seconds,
        "images_per_second": result.step * result.config.batch / result.seconds,
        "final_loss": final.get("loss"),
        "nfe": run.nfe,
        "samples": len(samples),
        "sampling_seconds": sampling_seconds,
        "scores": scores.to_dict(),
    }
    write_json(run_dir / SUMMARY, summary)
    return summary


def sample_from(run: Run, net: torch.nn.Module, images: torch.Tensor, count: int, bf16: bool) -> torch.Tensor | None:
    """``count`` uint8 images of the run's sample set from ``net`` with the run's sampler.

    In a process group every rank makes its share (images ``⌊count·r/W⌋ …`` of the same sample
    set, so the set does not depend on the number of ranks) and rank 0 gets them all; the
    other ranks get ``None``. Images one rank finds not finite stop every rank."""
    device = next(net.parameters()).device
    denoiser = network_denoiser(net, run.process, bf16)
    grouped = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
    first, end = count * rank // world, count * (rank + 1) // world
    failure = None
    with progress_bar(f"sampling: {run.solver.name} on the {run.grid_name} grid, {run.nfe} NFE", end - first) as bar:
        try:
            share = generate(
                denoiser, run.process, images, end - first, run.seed, run.grid, run.solver, run.sampler,
                run.sample_batch, device, first=first, callback=bar.advance,
            )
        except UserError as error:  # images that diverged: every rank must hear of it, or the others wait
            if not grouped:
                raise
            failure, share = str(error), torch.empty(0, dtype=torch.uint8)
    if not grouped:
        return share
    failures: list[str | None] = [None] * world
    dist.all_gather_object(failures, failure)
    if any(failures):
        raise UserError(next(text for text in failures if text))
    shares: list[torch.Tensor] | None = [torch.empty(0)] * world if rank == 0 else None
    dist.gather_object(share, shares, dst=0)
    return torch.cat(shares) if shares is not None else None


def evaluation(run: Run, images: torch.Tensor, run_dir: Path) -> Callback:
    """Every ``eval_every`` steps (not the last: the run's own score is that), score
    ``eval_samples`` images of the EMA network and append ``{step, fid, samples}`` to
    ``eval.jsonl``. It draws from its own generators, so training is unchanged by it.

    When training starts (or resumes from a checkpoint), the log is trimmed to the starting
    step, and an evaluation due at that step that the log lacks (the call that wrote the
    checkpoint was stopped before it) is made then, from the restored weights."""

    def evaluate(state: TrainState) -> None:
        log = run_dir / EVALUATIONS
        if state.starting and state.rank == 0:
            trim_step_log(log, state.step)
        due = state.step > 0 and state.step % run.eval_every == 0 and state.step != run.train.train_steps
        if not due or (state.starting and any(entry["step"] == state.step for entry in step_log(log))):
            return
        samples = sample_from(run, state.ema.averaged_model(state.net), images, run.eval_samples, False)
        if samples is None:  # a rank other than 0, which only helped to sample
            return
        scores = score_images(samples, run.dataset, seed=run.seed)
        append_evaluation(run_dir, state.step, scores.fid, scores.samples)

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


def torch_device(name: str) -> str:
    """``name`` if it is a device torch can use here; a one-line error otherwise."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r}: {one_line(str(error))}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r}: CUDA is not available on this machine; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r}: spdbench runs on cpu or cuda")
    return name


def score_run(run_dir: Path, features: str = "default", device: str = "cpu") -> dict[str, Any]:
    """Score a finished run's ``samples.npz`` again (other features, another machine) and write
    ``scores-<features name>.json`` beside it; returns the scores."""
    config_path, samples_path = run_dir / CONFIG, run_dir / SAMPLES
    if not config_path.exists() or not samples_path.exists():
        raise UserError(f"{run_dir} is not a finished run: it needs {CONFIG} and {SAMPLES}")
    config = read_record(config_path, ("dataset", "seed"), CONFIG_KINDS)
    samples = torch.from_numpy(read_samples(samples_path))
    scores = score_images(
        samples, config["dataset"], features=features, seed=config["seed"], device=torch_device(device)
    ).to_dict()
    write_json(run_dir / f"scores-{scores['features']}.json", scores)
    return scores


def request_from_config(config: dict[str, Any]) -> RunRequest:
    """The request that resolves to the run of ``config.json`` (``config``): its process and
    options, dataset, spectrum, budget and everything it sets otherwise than the budget."""
    try:
        process = config["process"]["process"]
        if process not in PROCESSES:
            valid = ", ".join(PROCESSES)
            raise UserError(f"the run configuration names the unknown process {process!r}; valid: {valid}")
        options = {key: value for key, value in config["process"].items() if key in process_options(process)}
        sampler = config["sampler"]
        return RunRequest(
            process,
            options,
            dataset=config["dataset"],
            spectrum=config["process"].get("spectrum", sampler.get("spectrum", "empirical")),
            budget=config["budget"],
            train_steps=config["train"]["train_steps"],
            batch=config["train"]["batch"],
            sampler=sampler["solver"],
            grid=sampler["grid"],
            nfe=sampler["nfe"],
            eta=sampler.get("eta"),
            variance=sampler.get("variance"),
            clip_x0=sampler.get("clip_x0"),
            corrector=sampler.get("corrector"),
            projection=sampler.get("projection"),
            samples=config["samples"],
            seed=config["seed"],
        )
    except (KeyError, TypeError) as error:
        raise UserError(f"the run configuration lacks {error}: it was written by another version of spdbench") from None


def load_finished_run(run_dir: Path) -> tuple[RunRequest, Run, UNet, Checkpoint]:
    """A finished run's request, its resolved run (checked to rebuild as recorded), its network
    with the final EMA weights, in eval mode, and its last checkpoint. A run still training is
    refused: what it would give comes from weights its summary will not be made from."""
    config_path = run_dir / CONFIG
    if not config_path.is_file() or latest_checkpoint(run_dir) is None:
        raise UserError(f"{run_dir} is not a finished run with its checkpoints: it needs {CONFIG} and checkpoints/")
    if not (run_dir / SUMMARY).is_file():
        raise UserError(f"{run_dir} is not a finished run: it has no {SUMMARY} (spdbench run finishes it)")
    config = read_record(config_path, kinds=CONFIG_KINDS)
    request = request_from_config(config)
    run = resolve_run(request)
    if as_json(run.config()) != config:
        raise UserError(f"{run_dir} does not rebuild as recorded: it was made by another version of spdbench")
    net = UNet(network_config(run.network, run.process.image_shape[0], run.process.image_shape[1]))
    checkpoint = load_checkpoint(run_dir)
    try:
        net.load_state_dict(checkpoint.ema)
    except RuntimeError as error:  # keys or shapes of another network
        raise checkpoint.does_not_fit(error) from error
    return request, run, net.eval(), checkpoint


def with_sampler(request: RunRequest, changes: Mapping[str, Any]) -> RunRequest:
    """``request`` with the sampler fields in ``changes`` that are not ``None`` (``sampler``,
    ``grid``, ``nfe`` and the ``SETTINGS``); another solver starts from its own settings (the
    run's may not apply to it), and a corrector or projection given replaces the run's."""
    changed = {key: value for key, value in changes.items() if value is not None}
    if "sampler" in changed:
        changed = {**dict.fromkeys(SETTINGS), **changed}
    if changed.keys() & set(CORRECTIONS):  # one correction replaces the other
        changed = {**dict.fromkeys(CORRECTIONS), **changed}
    return dataclasses.replace(request, **changed)


def samples_in_bf16(meta: Mapping[str, Any], device: torch.device) -> bool:
    """Whether to sample a run on ``device`` under bf16 autocast: where its checkpoint's ``meta``
    says it trained on that kind of device in bf16, as its own samples were drawn."""
    trained = meta.get("config")
    return device.type == meta.get("device") and isinstance(trained, dict) and bool(trained.get("bf16"))


def sample_again(
    run_dir: Path, nfes: list[int | None], changes: Mapping[str, Any], device: str = "cpu"
) -> list[dict[str, Any]]:
    """Draw a finished run's sample set again from its final EMA weights on ``device`` with its
    sampler changed by ``changes`` (``with_sampler``) at each of ``nfes`` (``None``: all the
    process's levels), score it like the run, and write each record (``{"sampler", "scores",
    "sampling_seconds"}``) as ``resampled/<sampler>.json``; returns them. On the kind of device
    that trained the run, the network runs in the precision of the run's own samples (bf16
    autocast where its training used it, as its checkpoint records), so that at the run's own
    settings it reproduces the run's samples and FID (exactly on the CPU); on another, in fp32."""
    target = torch.device(torch_device(device))
    request, run, net, checkpoint = load_finished_run(run_dir)
    net.to(target)
    bf16 = samples_in_bf16(checkpoint.meta, target)
    full = len(run.process.time_grid()) - 1
    variants = [  # every request is checked before anything is sampled
        resolve_run(with_sampler(request, {**changes, "nfe": full if count is None else count})) for count in nfes
    ]
    images = load_images(run.dataset, "train")
    records = []
    for variant in variants:
        started = time.perf_counter()
        samples = sample_from(variant, net, images, run.samples, bf16)
        seconds = time.perf_counter() - started
        assert samples is not None  # one process: it gets every image
        scores = score_images(samples, run.dataset, seed=run.seed)
        record = {"sampler": variant.config()["sampler"], "scores": scores.to_dict(), "sampling_seconds": seconds}
        write_json(run_dir / RESAMPLED / f"{sampler_name(record['sampler'])}.json", record)
        records.append(record)
    return records


def sampler_name(sampler: dict[str, Any]) -> str:
    """``dpmpp3m-edm-nfe20``, then the settings: a file name for a sampler's configuration."""
    settings = [f"{key}{value}" for key, value in sampler.items() if key not in ("solver", "grid", "nfe")]
    return "-".join([sampler["solver"], sampler["grid"], f"nfe{sampler['nfe']}", *settings])
