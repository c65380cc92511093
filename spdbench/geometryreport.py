"""``spdbench geometry --run DIR``: the geometry of a finished run's sampling paths
(``spdbench.geometry``), written under the run in ``geometry/``:

- ``geometry.csv``: one row per point of the path (``step`` 0 … M: the state at each of the M
  network calls, then the sample): its time, path fraction, the mean chord deviation of the
  sampling and of the denoising trajectory over the samples, the gap of the network's ``x̂_0``
  from the empirical optimal denoiser (frequency-diagonal Gaussian processes), and the FID of the
  ``x̂_0`` of that call taken as the sample ("jump": after ``step + 1`` calls);
- ``summary.json``: the max and mean over the path of both deviation curves, the off-plane
  shares, the FID of the samples, the number of calls after which a jump scores best, and how it
  was made (what the suite report tables);
- ``geometry.png``: the curves.

The samples are the first ``samples`` images of the run's own sample set (same noise), with the
run's sampler (or at ``nfe`` calls), so at the run's settings their FID is the run's sampler's
on that subset. The empirical optimal denoiser averages over the training images the run saw
(flipped copies too when it trained with flips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import torch
from matplotlib.figure import Figure
from torch import Tensor

from corruptions.gaussian import FrequencyDiagonalGaussian
from spdbench.data import load_images
from spdbench.errors import UserError
from spdbench.figures import save_figure
from spdbench.files import check_output_directory, write_text_atomically
from spdbench.geometry import (
    EmpiricalOptimalDenoiser,
    Trajectory,
    chord_deviation,
    off_plane_share,
    optimal_gap,
    path_fraction,
    record_trajectory,
)
from spdbench.metrics import score_images
from spdbench.progress import progress_bar
from spdbench.records import GEOMETRY, GEOMETRY_SUMMARY, write_json
from spdbench.runs import Run, load_finished_run, resolve_run, torch_device, with_sampler
from spdbench.sampling import network_denoiser, sample_set_inputs, to_uint8
from spdbench.tables import csv_text, frame

matplotlib.use("Agg")

SAMPLES = 200  #: the samples followed unless told otherwise
MAX_NFE = 200  #: the paths of 200 samples over 200 calls hold about 250 MB of float64 states at 28×28
COLUMNS = (
    "step", "time", "path_fraction", "sampling_deviation", "denoising_deviation", "optimal_gap", "jump_fid"
)


@dataclass(frozen=True)
class Geometry:
    """The diagnostics of one run's paths: per point of the path (``M + 1`` points; the
    denoising trajectory, the optimal gap and the jump FID have one per network call, ``M``)."""

    times: Tensor
    fraction: Tensor
    sampling_deviation: Tensor
    denoising_deviation: Tensor
    sampling_off_plane: tuple[float, float]  #: mean shares outside the chord + 1 and + 2 components
    denoising_off_plane: tuple[float, float]
    optimal_gap: Tensor | None
    jump_fid: list[float]
    final_fid: float

    def rows(self) -> list[list[Any]]:
        """The rows of ``geometry.csv``."""
        calls = len(self.times)
        return [
            [
                step,
                float(self.times[step]) if step < calls else 0.0,
                float(self.fraction[step]),
                float(self.sampling_deviation[step]),
                float(self.denoising_deviation[step]) if step < calls else math.nan,
                float(self.optimal_gap[step]) if self.optimal_gap is not None and step < calls else math.nan,
                self.jump_fid[step] if step < calls else math.nan,
            ]
            for step in range(calls + 1)
        ]

    def summary(self) -> dict[str, Any]:
        """The figures the suite report compares processes on."""
        best = min(range(len(self.jump_fid)), key=self.jump_fid.__getitem__)
        return {
            "sampling_deviation_max": float(self.sampling_deviation.max()),
            "sampling_deviation_mean": float(self.sampling_deviation.mean()),
            "denoising_deviation_max": float(self.denoising_deviation.max()),
            "denoising_deviation_mean": float(self.denoising_deviation.mean()),
            "sampling_off_plane": list(self.sampling_off_plane),
            "denoising_off_plane": list(self.denoising_off_plane),
            "optimal_gap_mean": None if self.optimal_gap is None else float(self.optimal_gap.mean()),
            "final_fid": self.final_fid,
            "best_jump_calls": best + 1,
            "best_jump_fid": self.jump_fid[best],
            "steps": len(self.jump_fid),
        }


def run_trajectory(run: Run, net: torch.nn.Module, images: Tensor, samples: int) -> Trajectory:
    """The paths of the first ``samples`` images of the run's sample set, with its sampler."""
    denoiser = network_denoiser(net, run.process)
    device = next(net.parameters()).device
    batches = []
    with progress_bar(f"trajectories: {run.solver.name}, {run.nfe} NFE", samples) as bar:
        for first in range(0, samples, run.sample_batch):
            indices = range(first, min(first + run.sample_batch, samples))
            noise, reference = sample_set_inputs(run.process, images, run.seed, indices, device)
            path = record_trajectory(denoiser, run.process, noise, reference, run.grid, run.solver, run.sampler)
            batches.append(path)
            bar.advance(len(indices))
    return Trajectory(
        torch.cat([batch.states for batch in batches], 1),
        torch.cat([batch.denoised for batch in batches], 1),
        batches[0].times,
    )


def measure_geometry(run: Run, trajectory: Trajectory, images: Tensor, device: torch.device) -> Geometry:
    """Every diagnostic of ``trajectory`` (see the module's docstring); the optimal denoiser runs
    on ``device``."""
    optimal = None
    if isinstance(run.process, FrequencyDiagonalGaussian):
        seen = torch.cat([images, images.flip(-1)]) if run.train.flips else images
        optimal = optimal_gap(EmpiricalOptimalDenoiser(run.process, seen.to(device)), trajectory)
    jump = []
    with progress_bar("scoring the jumps", len(trajectory.denoised) + 1) as bar:
        for denoised in trajectory.denoised:
            jump.append(score_images(to_uint8(denoised), run.dataset, seed=run.seed).fid)
            bar.advance(1)
        final = score_images(to_uint8(trajectory.states[-1]), run.dataset, seed=run.seed).fid
        bar.advance(1)
    return Geometry(
        times=trajectory.times,
        fraction=path_fraction(trajectory.states),
        sampling_deviation=chord_deviation(trajectory.states).mean(-1),
        denoising_deviation=chord_deviation(trajectory.denoised).mean(-1),
        sampling_off_plane=mean_shares(trajectory.states),
        denoising_off_plane=mean_shares(trajectory.denoised),
        optimal_gap=optimal,
        jump_fid=jump,
        final_fid=final,
    )


def mean_shares(path: Tensor) -> tuple[float, float]:
    """The off-plane shares outside the chord and 1, and 2, components, averaged over samples."""
    return float(off_plane_share(path, 1).mean()), float(off_plane_share(path, 2).mean())


def geometry_figure(geometry: Geometry, title: str) -> Figure:
    """Deviation against path fraction; jump FID and the optimal gap against the step."""
    figure = Figure(figsize=(15, 4.2), layout="constrained")
    deviation, jump, gap = figure.subplots(1, 3)
    calls = len(geometry.times)
    deviation.plot(geometry.fraction, geometry.sampling_deviation, marker="o", label="sampling trajectory")
    deviation.plot(geometry.fraction[:calls], geometry.denoising_deviation, marker="s", label="denoising trajectory")
    deviation.set(xlabel="fraction of the path walked (arc length)", ylabel="distance from the chord / chord length")
    deviation.legend(fontsize=8)
    steps = range(1, calls + 1)
    jump.plot(steps, geometry.jump_fid, marker="o")
    jump.set(xlabel="stop after this many network calls and return x̂₀", ylabel="FID", yscale="log")
    if geometry.optimal_gap is not None:
        gap.plot(steps, geometry.optimal_gap, marker="o")
    gap.set(xlabel="network call", ylabel="RMS of x̂₀ − r*(x_t) per pixel")
    if geometry.optimal_gap is None:
        gap.text(0.5, 0.5, "no empirical optimal denoiser\nfor this process", ha="center", transform=gap.transAxes)
    for axes in (deviation, jump, gap):
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def geometry_report(
    run_dir: Path, samples: int | None, changes: dict[str, Any], device: str, command: str
) -> list[Path]:
    """Measure the geometry of the run in ``run_dir`` on ``samples`` of its samples (``None``:
    ``SAMPLES``, or all it has), with its sampler changed by ``changes`` (``with_sampler``), on
    ``device``, and write ``geometry/geometry.csv``, ``geometry/summary.json`` and
    ``geometry/geometry.png``. Chen et al. measure the probability-flow (deterministic) path: a
    stochastic sampler's path also carries the noise it injects."""
    target = torch.device(torch_device(device))
    request, run, net, _ = load_finished_run(run_dir)
    samples = min(SAMPLES, run.samples) if samples is None else samples
    if samples > run.samples:
        raise UserError(f"--samples must be at most the run's {run.samples} samples, got {samples}")
    run = resolve_run(with_sampler(request, changes))
    if run.nfe > MAX_NFE:
        raise UserError(f"geometry follows at most {MAX_NFE} network calls and this sampler makes {run.nfe}; "
                        "give --nfe")
    out = run_dir / GEOMETRY
    check_output_directory(out)
    images = load_images(run.dataset, "train")
    trajectory = run_trajectory(run, net.to(target), images, samples)
    geometry = measure_geometry(run, trajectory, images, target)
    paths = [out / "geometry.csv", out / GEOMETRY_SUMMARY, out / "geometry.png"]
    write_text_atomically(paths[0], csv_text(frame(geometry.rows(), COLUMNS)))
    sampler = run.config()["sampler"]
    write_json(paths[1], {**geometry.summary(), "samples": samples, "sampler": sampler, "command": command})
    title = f"{run.process.label()} (seed {run.seed}): {run.solver.name} on the {run.grid_name} grid, {run.nfe} NFE"
    save_figure(geometry_figure(geometry, title), paths[2])
    return paths
