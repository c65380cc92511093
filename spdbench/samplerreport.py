"""The solvers measured exactly with a perfect network: what ``spdbench samplers`` writes.

If the data are ``N(0, diag D)`` in a process's basis, the best network is the oracle denoiser
(``corruptions.oracle``), and with it every solver of ``spdbench.solvers`` is linear per
frequency: ``x̂_0 = g_t u_t`` (no clipping), and each step maps
``u_r = c_x u_t + c_0 x̂_0 + Σ_k h_k x̂_0^{(k)} + c_z z`` (``x̂_0^{(k)}``: the ``k``-th earlier solver
step's, at most ``MAX_HISTORY``; a corrector step has none). So the samples are Gaussian per
frequency, and their variance follows exactly (no Monte-Carlo noise) by propagating, per
frequency, the covariance of ``u`` and the earlier ``x̂_0`` through the steps, from the prior's
variance. The distance of that law to the data's is, in an orthonormal
basis,

    W2² = Σ_k (√v_k − √D_k)²,   reported relative to Σ_k D_k.

Error amplification: a white error of variance ``σ²`` added to the network output at every step
(in the process's own target units: ε for the Gaussian processes, the residual for heat, so that
equal training loss means equal error) adds ``q_t² σ²`` to the variance of ``x̂_0``, where ``q_t``
is ``predict_x0``'s gain on the network output. ``amplification`` is the output variance this
adds per unit ``σ²``, relative to the data's variance: over all frequencies, and over the upper
half of the frequencies by radius (``amplification_high``), where the data have least variance.
The gains ``g_t``, ``q_t`` and the prior's variance are measured by running the process's own
``predict_x0``, oracle and prior on an image whose coefficients are all one, so the same code
serves every process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from corruptions import PROCESSES, Process, make_process
from corruptions.base import ImageShape
from corruptions.errors import ConfigurationError
from corruptions.oracle import OracleDenoiser
from corruptions.spectrum import Spectrum
from spdbench import data
from spdbench.budgets import TODAYS_SAMPLERS
from spdbench.figures import panel_grid, save_figure
from spdbench.files import write_text_atomically
from spdbench.grids import GRIDS, Grids, solver_calls, with_correctors
from spdbench.sampling import MAX_HISTORY
from spdbench.solvers import SOLVERS, SamplerSettings, Schedule, Solver, level_schedule, plan, solvers_for
from spdbench.spectra import process_spectrum, resolve_size, resolve_spectrum
from spdbench.tables import csv_text, frame, markdown_text

NFES: tuple[int | None, ...] = (5, 10, 20, 50, 100, None)  #: ``None``: the full grid
REFERENCE_NFE = 100  #: today's sampler at this many calls is what the few-call table compares with
#: The network error (std, in the process's target units, at every step) of ``w2_at_error``, a
#: crude proxy for a trained network (white, and smaller than the quick networks' errors: their
#: final loss is 0.05 to 0.14 per pixel).
ERROR_STD = 0.1


def basis_ones(process: Process, count: int = 1) -> Tensor:
    """``count`` images whose coefficients in the process's basis are all one: ``B⁻¹ 1``."""
    channels, height, width = process.image_shape
    return process.basis.inverse(torch.ones(count, channels, height, width, dtype=torch.float64)).real


def frequency_gain(process: Process, image: Tensor) -> Tensor:
    """The per-frequency gain of a linear, frequency-diagonal map whose output on ``basis_ones``
    is ``image``: its coefficients (real)."""
    return process.basis.forward(image).real


@dataclass(frozen=True)
class Gains:
    """Per-frequency gains at each time of a grid (``len(grid) × C × H × W``)."""

    x0: Tensor  #: ``g_t``: the oracle's ``x̂_0`` per unit ``u_t``
    net: Tensor  #: ``q_t``: ``x̂_0`` per unit network output


def gains(process: Process, oracle: OracleDenoiser, times: Tensor) -> Gains:
    """``g_t`` and ``q_t`` at every one of ``times`` (one batched call each)."""
    ones = basis_ones(process, len(times))
    x0 = process.predict_x0(oracle(ones, times), ones, times)
    net = process.predict_x0(ones, torch.zeros_like(ones), times)
    return Gains(frequency_gain(process, x0), frequency_gain(process, net))


def prior_variance(process: Process, spectrum: Tensor) -> Tensor:
    """The prior's variance per frequency: from its noise and from its reference image."""
    ones, zeros = basis_ones(process), torch.zeros_like(basis_ones(process))
    from_noise = frequency_gain(process, process.prior(ones, zeros))
    from_reference = frequency_gain(process, process.prior(zeros, ones))
    return (from_noise.square() + from_reference.square() * spectrum)[0]


@dataclass(frozen=True)
class OracleGrid:
    """A time grid with what the exact measure needs on it, shared by every solver: the data's
    spectrum ``D`` in the process's basis, the process's coefficients on its levels
    (``level_schedule``), the oracle's
    gains at its times and the prior's variance."""

    process: Process
    spectrum: Tensor
    grid: Tensor
    times: Schedule
    gain: Gains
    prior: Tensor


def oracle_grid(process: Process, grid: Tensor, spectrum: Tensor) -> OracleGrid:
    """``grid`` prepared for ``output_variance`` under the data spectrum ``spectrum`` (``D`` in the
    process's basis)."""
    oracle = OracleDenoiser(process, spectrum)
    prior = prior_variance(process, spectrum)
    return OracleGrid(process, spectrum, grid, level_schedule(process, grid), gains(process, oracle, grid[:-1]), prior)


def output_variance(
    on: OracleGrid, solver: Solver, errors: tuple[float, ...] = (0.0,), settings: SamplerSettings | None = None
) -> Tensor:
    """The exact per-frequency variance of the samples of ``solver`` (at ``settings``, default
    its own) on the grid ``on`` with the oracle denoiser, for each variance ``σ²`` in ``errors``
    of a white error in the network output (``len(errors) × C × H × W``).

    Per frequency the state is ``y = (u, p_1, …, p_K)``: ``u`` and the ``K = MAX_HISTORY``
    earlier solver steps' ``x̂_0``. With ``x̂_0 = g u + q e`` a step is
    ``u' = Σ_l r_l y_l + c_0 q e + c_z z`` with ``r = (c_x + c_0 g, h_1, …, h_K)``; so with
    ``w_k = Σ_l r_l Σ_{kl}``, ``Σ'_{uu} = Σ_k r_k w_k + c_0² q² σ² + c_z²``. A solver step shifts
    the history, ``p_1' = g u + q e`` and ``p_k' = p_{k−1}``: ``Σ'_{u p_1} = g w_0 + c_0 q² σ²``,
    ``Σ'_{u p_k} = w_{k−1}``, ``Σ'_{p_1 p_1} = g² Σ_{uu} + q² σ²``, ``Σ'_{p_1 p_k} = g Σ_{u p_{k−1}}``
    and ``Σ'_{p_k p_l} = Σ_{p_{k−1} p_{l−1}}`` (``k, l ≥ 2``); a corrector step keeps it:
    ``Σ'_{u p_k} = w_k`` and the ``p`` unchanged."""
    size = MAX_HISTORY + 1
    settings = solver.settings_for() if settings is None else settings
    sigma2 = torch.tensor(errors, dtype=torch.float64).reshape(-1, 1, 1, 1)
    zero = torch.zeros(len(errors), *on.process.image_shape, dtype=torch.float64)
    cov = [[zero] * size for _ in range(size)]  # cov[k][l]: the covariance of y_k and y_l
    cov[0][0] = on.prior + zero
    for i, (step, solver_step) in enumerate(plan(on.process, solver, on.grid, on.times, settings)):
        g, q = on.gain.x0[i], on.gain.net[i]
        c_x, c_0, c_z = (0.0 if k is None else k[0] for k in (step.x, step.x0, step.noise))
        row = [c_x + c_0 * g, *(h[0] for h in step.history)]
        error = q.square() * sigma2
        w = [sum(r * cov[k][l] for l, r in enumerate(row)) for k in range(size)]
        u = sum(r * w[l] for l, r in enumerate(row)) + c_0 * c_0 * error + c_z * c_z
        if not solver_step:
            cov = [[u, *w[1:]], *([w[k], *cov[k][1:]] for k in range(1, size))]
            continue
        first = [u, g * w[0] + c_0 * error]
        second = [g * g * cov[0][0] + error, *(g * cov[0][k] for k in range(1, size - 1))]
        new = [[zero] * size for _ in range(size)]
        for k in range(size):
            for l in range(k, size):
                if k == 0:
                    value = first[l] if l < 2 else w[l - 1]
                elif k == 1:
                    value = second[l - 1]
                else:
                    value = cov[k - 1][l - 1]
                new[k][l] = new[l][k] = value
        cov = new
    return cov[0][0]


def floor_variance(process: Process, spectrum: Tensor) -> Tensor:
    """The variance of the oracle's ``x̂_0`` at the process's smallest level when ``u`` there has
    its exact marginal ``a² D + s²``: what any sampler ending there returns at best, the floor
    its last level leaves (the posterior mean has less variance than the data)."""
    last = process.time_grid()[-2:-1]
    a, s = process.marginal_coefficients(last)
    g = gains(process, OracleDenoiser(process, spectrum), last).x0[0]
    return g.square() * (a.square() * spectrum + s.square())[0]


def relative_w2(variance: Tensor, spectrum: Tensor) -> float:
    """``Σ_k (√v_k − √D_k)² / Σ_k D_k`` over every coefficient."""
    data = spectrum.expand_as(variance)
    return float((variance.sqrt() - data.sqrt()).square().sum() / data.sum())


def high_frequencies(process: Process) -> Tensor:
    """The upper half of the coefficients by radius (``C × H × W`` mask)."""
    channels, height, width = process.image_shape
    radius = process.basis.radius(height, width).expand(channels, height, width)
    return radius > radius.flatten().median()


@dataclass(frozen=True)
class Measure:
    """One process × solver × grid × NFE (× corrector step), measured exactly: a row of
    ``samplers.csv`` (``record``, ``read_measures``)."""

    process: str  #: the process's registered name
    label: str  #: the process's label (``Process.label``; its name when its options are its defaults)
    solver: str
    grid: str
    nfe: int
    full: bool  #: the process's full grid
    corrector: float  #: the Langevin corrector's step ε (0: none), half of the calls correcting
    projection: float  #: the projection's step δμ (0: none), half of the calls projecting
    w2: float  #: relative W2² to the data
    w2_at_error: float  #: the same with a white error of std ``ERROR_STD`` in the network output
    high_variance: float  #: the samples' variance over the data's, upper half of the frequencies
    amplification: float  #: output variance added per unit error variance, over the data's
    amplification_high: float  #: the same over the upper half of the frequencies

    @property
    def at_defaults(self) -> bool:
        """Whether the process's label is its name: every option at its default, or none that
        changes the process there (SPD's ``perturb_kind`` without a perturbation)."""
        return self.label == self.process

    @property
    def corrects(self) -> bool:
        """Whether some of its calls correct (a Langevin corrector or a projection)."""
        return bool(self.corrector or self.projection)

    def record(self) -> dict[str, object]:
        return {
            "process": self.process,
            "label": self.label,
            "solver": self.solver,
            "grid": self.grid,
            "nfe": self.nfe,
            "full_grid": self.full,
            "corrector": self.corrector,
            "projection": self.projection,
            "w2": self.w2,
            "w2_at_error": self.w2_at_error,
            "high_variance": self.high_variance,
            "amplification": self.amplification,
            "amplification_high": self.amplification_high,
        }


def measure(
    on: OracleGrid, solver: str, grid_name: str, full: bool, corrector: float = 0.0, projection: float = 0.0
) -> Measure:
    """The exact measures of ``solver`` on the grid ``on`` (named ``grid_name``; ``full``: the
    process's full grid), with a Langevin corrector of step ``corrector`` or a projection of
    step ``projection`` at its repeated times."""
    process, spectrum = on.process, on.spectrum
    settings = SOLVERS[solver].settings_for(corrector=corrector or None, projection=projection or None)
    clean, noisy = output_variance(on, SOLVERS[solver], (0.0, 1.0), settings)
    data = spectrum.expand_as(clean)
    high = high_frequencies(process)
    return Measure(
        process=process.name,
        label=process.label(),
        solver=solver,
        grid=grid_name,
        nfe=len(on.grid) - 1,
        full=full,
        corrector=corrector,
        projection=projection,
        w2=relative_w2(clean, spectrum),
        w2_at_error=relative_w2(clean + ERROR_STD**2 * (noisy - clean), spectrum),
        high_variance=float(clean[high].sum() / data[high].sum()),
        amplification=float((noisy - clean).sum() / data.sum()),
        amplification_high=float((noisy - clean)[high].sum() / data[high].sum()),
    )


def best_sampler(process: Process, spectrum: Tensor, solvers: list[str], grids: list[str], nfe: int) -> tuple[str, str]:
    """The solver and grid, among those given, with the lowest W2² at ``nfe`` with the network
    error ``ERROR_STD`` (``w2_at_error``): what suits ``process`` best at that budget of calls,
    allowing for a trained network's error. ``spectrum``: the data's ``D`` in its basis."""
    chosen = Grids(process, spectrum)
    measured, refusals = [], []
    for grid in grids:
        try:
            on = oracle_grid(process, chosen.make(grid, nfe), spectrum)
        except ConfigurationError as refusal:  # a grid with fewer levels than nfe
            refusals.append(refusal)
            continue
        measured += [measure(on, solver, grid, full=False) for solver in solvers]
    if not measured:
        raise refusals[0]
    best = min(measured, key=lambda row: row.w2_at_error)
    return best.solver, best.grid


def configurations(process: Process, full: bool) -> Iterator[tuple[str, int | None, list[str]]]:
    """Every grid × ``NFES`` below the process's levels, with the solvers to measure there: every
    one that serves the process; and, when ``full``, its full grid (every grid gives the same full
    grid). A variant (not ``full``) is measured at ``REFERENCE_NFE`` with today's sampler on the
    native grid only: the reference of the few-call table (the other solvers there would double
    the command's time for rows no table shows)."""
    levels = len(process.time_grid()) - 1
    serving = solvers_for(process)
    if full:
        yield "native", None, serving
    for grid in GRIDS:
        for nfe in NFES:
            if nfe is None or nfe >= levels:
                continue
            if full or nfe != REFERENCE_NFE:
                yield grid, nfe, serving
            elif grid == "native":
                yield grid, nfe, [todays_solver(process)]


def process_cases(image_shape: ImageShape, spectrum: Spectrum) -> list[tuple[Process, bool]]:
    """Every registered process at its defaults, then each one's ``variants``; with whether the
    full grid is measured (at the defaults only: every solver reaches the data there)."""
    cases = [(make_process(name, image_shape, spectrum=spectrum), True) for name in PROCESSES]
    cases += [
        (make_process(name, image_shape, spectrum=spectrum, **options), False)
        for name, cls in PROCESSES.items()
        for family in cls.variants.values()
        for options in family
    ]
    return cases


COLUMNS = (
    "process",
    "label",
    "solver",
    "grid",
    "nfe",
    "full_grid",
    "corrector",
    "projection",
    "w2",
    "w2_at_error",
    "high_variance",
    "amplification",
    "amplification_high",
)
SUMMARY_NFES = (10, 20, 50)


def measure_all(image_shape: ImageShape, spectrum: Spectrum) -> list[Measure]:
    """Every process case × its configurations × every solver that serves it, measured exactly."""
    rows = []
    for process, full in process_cases(image_shape, spectrum):
        data = process_spectrum(spectrum, process)
        grids = Grids(process, data)
        for grid_name, nfe, solvers in configurations(process, full):
            try:
                on = oracle_grid(process, grids.make(grid_name, nfe), data)
            except ConfigurationError:  # a grid the process cannot have (heat: non-native)
                continue
            rows += [measure(on, solver, grid_name, nfe is None) for solver in solvers]
        if full:
            rows += corrected_rows(grids)
    return rows


#: the corrections measured, on the processes at their defaults: Langevin steps ε and projection steps δμ
MEASURED_CORRECTIONS = ({"corrector": 0.1}, {"corrector": 0.6}, {"projection": 1.0}, {"projection": 3.0})
CORRECTED_NFES = (10, 20, 100)


def corrected_rows(grids: Grids) -> list[Measure]:
    """Every solver that takes a corrector × every grid × ``CORRECTED_NFES`` below the levels ×
    ``MEASURED_CORRECTIONS``: each grid of ``solver_calls(nfe)`` calls with correctors up to ``nfe``."""
    process, spectrum = grids.process, grids.spectrum
    assert spectrum is not None
    levels = len(process.time_grid()) - 1
    solvers = [name for name in solvers_for(process) if "corrector" in SOLVERS[name].settings]
    rows: list[Measure] = []
    if not solvers:
        return rows
    for grid_name in GRIDS:
        for nfe in (nfe for nfe in CORRECTED_NFES if nfe < levels):
            try:
                on = oracle_grid(process, with_correctors(grids.make(grid_name, solver_calls(nfe)), nfe), spectrum)
            except ConfigurationError:  # a grid the process cannot have
                continue
            rows += [
                measure(on, solver, grid_name, False, **kind) for solver in solvers for kind in MEASURED_CORRECTIONS
            ]
    return rows


def todays_solver(process: Process | str) -> str:
    """The solver every run used before solvers were a choice (on the native grid), for a process
    or a registered process's name; refused for a process none of ``TODAYS_SAMPLERS`` serves
    (a new family's paper sampler goes there)."""
    cls = PROCESSES[process] if isinstance(process, str) else type(process)
    serving = [name for name in TODAYS_SAMPLERS if issubclass(cls, SOLVERS[name].family)]
    if not serving:
        raise ConfigurationError(f"no sampler of TODAYS_SAMPLERS ({', '.join(TODAYS_SAMPLERS)}) serves {cls.name!r}")
    return serving[0]


def find(
    rows: list[Measure],
    label: str,
    nfe: int | None,
    solver: str | None = None,
    grid: str | None = None,
    with_error: bool = False,
    corrector: float = 0.0,
    projection: float = 0.0,
) -> Measure | None:
    """The lowest-W2² row of ``label`` at ``nfe`` (``None``: its full grid) with the corrector
    step ``corrector`` and the projection step ``projection`` (0: none), of ``solver`` and
    ``grid`` where given; by ``w2_at_error`` when ``with_error``."""
    chosen = [
        row
        for row in rows
        if row.label == label
        and (row.full if nfe is None else row.nfe == nfe and not row.full)
        and row.corrector == corrector
        and row.projection == projection
        and solver in (None, row.solver)
        and grid in (None, row.grid)
    ]
    return min(chosen, key=lambda row: row.w2_at_error if with_error else row.w2, default=None)


def today_and_best_rows(
    rows: list[Measure], today_nfes: tuple[int | None, ...], with_error: bool, defaults_only: bool
) -> list[list[str]]:
    """Per process case (at its defaults only, when ``defaults_only``): today's sampler at
    ``today_nfes`` on the native grid (``None``: its full grid), and the best solver and grid at
    ``SUMMARY_NFES``; relative W2², with the network error ``ERROR_STD`` when ``with_error``."""
    table = []
    for label in dict.fromkeys(row.label for row in rows if row.at_defaults or not defaults_only):
        process = next(row.process for row in rows if row.label == label)
        solver = todays_solver(process)
        todays = [find(rows, label, nfe, solver, "native") for nfe in today_nfes]
        bests = [find(rows, label, nfe, with_error=with_error) for nfe in SUMMARY_NFES]
        table.append(
            [
                label,
                *(w2_cell(row, with_error) for row in todays),
                *(f"{w2_cell(row, with_error)} ({row.solver}, {row.grid})" if row else "" for row in bests),
            ]
        )
    return table


def few_call_rows(rows: list[Measure]) -> list[list[str]]:
    """Per process case: today's sampler at 100 NFE (on its full grid where it has at most 100
    levels), and the best solver
    and grid at 10 and 20 NFE with their W2² over that reference (at most 1: as good with 10×
    or 5× fewer calls)."""
    table = []
    for label in dict.fromkeys(row.label for row in rows):
        process = next(row.process for row in rows if row.label == label)
        solver = todays_solver(process)
        reference = find(rows, label, REFERENCE_NFE, solver, "native") or find(rows, label, None, solver)
        if reference is None:
            continue
        levels = "" if reference.nfe == REFERENCE_NFE else f" ({reference.nfe} levels)"
        cells = [label, f"{reference.w2:.2g}{levels}"]
        for nfe in FEW_CALLS:
            best = find(rows, label, nfe)
            if best is None:
                cells += ["", ""]
            else:
                cells += [f"{best.w2:.2g} ({best.solver}, {best.grid})", f"{best.w2 / reference.w2:.2g}"]
        table.append(cells)
    return table


FEW_CALLS = (10, 20)
FEW_CALL_COLUMNS = (
    "process",
    "today at 100",
    *(column for nfe in FEW_CALLS for column in (f"best at {nfe}", f"ratio at {nfe}")),
)


def corrector_table(rows: list[Measure]) -> list[list[str]]:
    """Per process at its defaults and each of ``CORRECTED_NFES``: the best solver and grid
    without a correction and with each of ``MEASURED_CORRECTIONS`` (at the same number of calls), by
    W2² and by W2² with the network error ``ERROR_STD``."""
    table = []
    for label in dict.fromkeys(row.label for row in rows if row.full):
        for nfe in CORRECTED_NFES:
            for with_error in (False, True):
                found = [find(rows, label, nfe, with_error=with_error, **kind) for kind in ({}, *MEASURED_CORRECTIONS)]
                if all(row is None for row in found[1:]):
                    continue
                cells = [f"{w2_cell(row, with_error)} ({row.solver}, {row.grid})" if row else "" for row in found]
                table.append([label, str(nfe), f"with error {ERROR_STD:g}" if with_error else "exact", *cells])
    return table


CORRECTION_NAMES = {"corrector": "Langevin ε", "projection": "projection δμ"}
CORRECTOR_COLUMNS = (
    "process",
    "NFE",
    "W2²",
    "none",
    *(f"{CORRECTION_NAMES[name]} = {step:g}" for kind in MEASURED_CORRECTIONS for name, step in kind.items()),
)


def w2_cell(row: Measure | None, with_error: bool = False) -> str:
    return "" if row is None else f"{row.w2_at_error if with_error else row.w2:.2g}"


ROBUST_TODAY = (20, 100, None)  #: today's sampler in the table with the network error: these NFEs, its full grid
ROBUST_COLUMNS = (
    "process",
    *(f"today {nfe}" for nfe in ROBUST_TODAY if nfe is not None),
    "today, full grid",
    *(f"best at {nfe}" for nfe in SUMMARY_NFES),
)


SUMMARY_TODAY = (*SUMMARY_NFES, 100, None)  #: today's sampler in the summary: these NFEs, its full grid
SUMMARY_COLUMNS = (
    "process",
    *(f"today {nfe}" for nfe in SUMMARY_TODAY if nfe is not None),
    "today, full grid",
    *(f"best at {nfe}" for nfe in SUMMARY_NFES),
)


def amplification_rows(rows: list[Measure], nfe: int) -> list[list[str]]:
    """Per process at its defaults and solver, at ``nfe`` on the grid best for that solver:
    the error amplification, all frequencies and the upper half."""
    table = []
    for row in rows:
        if row.nfe != nfe or row.full or row.corrects or not row.at_defaults:
            continue
        if row is not find(rows, row.label, nfe, row.solver):
            continue
        table.append(
            [
                row.label,
                row.solver,
                row.grid,
                f"{row.w2:.2g}",
                f"{row.amplification:.3g}",
                f"{row.amplification_high:.3g}",
            ]
        )
    return table


AMPLIFICATION_COLUMNS = ("process", "solver", "grid", "W2²", "amplification", "amplification, upper half")


def w2_figure(rows: list[Measure], title: str) -> Figure:
    """W2² against NFE (log-log), one panel per process measured on its full grid too (each at its
    defaults): every solver × grid thin, today's sampler black and dashed, the best at each NFE
    as a thick line."""
    labels = list(dict.fromkeys(row.label for row in rows if row.full))
    figure = Figure(figsize=(12, 4.5 * math.ceil(len(labels) / 2)), layout="constrained")
    panels = panel_grid(figure, len(labels))
    floor = 1e-7
    for axes, label in zip(panels, labels, strict=True):
        own = [row for row in rows if row.label == label and not row.full and not row.corrects]
        process = own[0].process
        pairs = list(dict.fromkeys((row.solver, row.grid) for row in own))
        for i, (solver, grid) in enumerate(pairs):
            line = sorted((row.nfe, max(row.w2, floor)) for row in own if (row.solver, row.grid) == (solver, grid))
            style = {"color": matplotlib.colormaps["tab20"](i % 20), "lw": 1.0, "alpha": 0.8}
            if (solver, grid) == (todays_solver(process), "native"):
                style = {"color": "black", "lw": 2.0, "ls": "--"}
            axes.plot(*zip(*line, strict=True), marker=".", label=f"{solver}, {grid}", **style)
        nfes = sorted({row.nfe for row in own})
        winners = [find(rows, label, nfe) for nfe in nfes]
        axes.plot(
            nfes,
            [max(row.w2, floor) for row in winners if row],
            color="firebrick",
            lw=4,
            alpha=0.35,
            label="best at each NFE",
        )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_title(label)
        axes.set_xlabel("NFE (network calls)")
        axes.set_ylabel(f"relative W2² to the data (floored at {floor:g})")
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=7, ncol=2)
    figure.suptitle(title)
    return figure


@dataclass(frozen=True)
class SamplerReport:
    rows: list[Measure]
    files: list[Path]


def sampler_report(spectrum_kind: str, dataset: str, size: int | None, out: Path | None, command: str) -> SamplerReport:
    """Measure every process case (``measure_all``) on images of ``dataset`` (resized to
    ``size``) under the spectrum ``spectrum_kind`` and write ``samplers.csv`` (every row),
    ``samplers.md`` (the summary and the error amplification) and ``w2_vs_nfe.png`` into ``out``,
    default ``results/samplers/<dataset>-<size>``."""
    spectrum = resolve_spectrum(spectrum_kind, dataset, size)
    size = resolve_size(dataset, size)
    shape = (data.image_shape(dataset)[0], size, size)
    out = Path("results") / "samplers" / f"{dataset}-{size}" if out is None else out
    rows = measure_all(shape, spectrum)
    description = f"spectrum {spectrum_kind} of {dataset}, {size}×{size}"
    paths = [out / "samplers.csv", out / "samplers.md", out / "w2_vs_nfe.png"]
    write_text_atomically(paths[0], csv_text(frame([row.record() for row in rows], COLUMNS)))
    write_text_atomically(paths[1], sampler_markdown(rows, description, command))
    title = f"Solvers with a perfect network: W2² to the data against NFE; {description}"
    save_figure(w2_figure(rows, title), paths[2])
    return SamplerReport(rows, paths)


def sampler_markdown(rows: list[Measure], description: str, command: str) -> str:
    """``samplers.md``: what was measured, the summary table and the amplification table."""
    summary = today_and_best_rows(rows, SUMMARY_TODAY, with_error=False, defaults_only=False)
    robust = today_and_best_rows(rows, ROBUST_TODAY, with_error=True, defaults_only=True)
    lines = [
        "# Solvers with a perfect network",
        "",
        f"Gaussian data with the {description}; the oracle denoiser in place of the network; "
        f"exact variances (no sampling noise), no clipping. Made by `{command}`.",
        "",
        "Relative W2² of the samples' law to the data's, Σ_k (√v_k − √D_k)² / Σ_k D_k. \"today\": the "
        "sampler every run used before solvers were a choice (ancestral, η = 1, small variance, for the "
        'Gaussian processes; IHDM\'s for heat), on the native grid. "best": the lowest over every solver '
        "and grid (samplers.csv has every row).",
        "",
        markdown_text(frame(summary, SUMMARY_COLUMNS), left=("process",)),
        "",
        "## Few calls against many",
        "",
        "The best solver and grid at 10 and at 20 calls against today's sampler at 100 (on its full grid "
        "where it has at most 100 levels): the ratio of their W2², at most 1 where the few calls do as well.",
        "",
        markdown_text(frame(few_call_rows(rows), FEW_CALL_COLUMNS), left=("process", "best at 10", "best at 20")),
        "",
        f"## With a network error of std {ERROR_STD:g}",
        "",
        f"W2² when the network output carries a white error of std {ERROR_STD:g} (in the process's own target "
        "units) at every step, and the best solver and grid by it. A crude proxy: the error adds variance, "
        "which this W2² credits to a sampler that loses variance, and trained networks' errors are neither "
        "white nor this small; on the quick networks its choice lost FID to the posterior sampler "
        "(results/quick-auto-sampler).",
        "",
        markdown_text(frame(robust, ROBUST_COLUMNS), left=("process",)),
        "",
        "## With a Langevin corrector or a projection",
        "",
        "The best solver and grid with a Langevin corrector of step ε (`spdbench.solvers.langevin`) or "
        "Ghimire et al.'s projection of step δμ (`spdbench.solvers.projection`: a step towards a_t x̂_0, the "
        "mean path of the forward law) against neither, at the same number of calls: with either about half "
        "of them correct (at the times nearest the data), so the solver takes fewer steps. By exact W2² and "
        "with the network error above.",
        "",
        markdown_text(frame(corrector_table(rows), CORRECTOR_COLUMNS), left=CORRECTOR_COLUMNS),
        "",
        "## Error amplification at 20 NFE",
        "",
        "Output variance added by a white error of unit variance in the network output at every step "
        "(in the process's own target units), relative to the data's variance: over all frequencies and "
        "over the upper half by radius. Each solver on its best grid at 20 NFE.",
        "",
        markdown_text(frame(amplification_rows(rows, 20), AMPLIFICATION_COLUMNS), left=("process", "solver", "grid")),
    ]
    return "\n".join(lines) + "\n"


def read_measures(path: Path) -> list[Measure]:
    """The rows of a ``samplers.csv`` (``COLUMNS``) as ``Measure`` s."""
    return [
        Measure(
            process=str(row["process"]), label=str(row["label"]), solver=str(row["solver"]), grid=str(row["grid"]),
            nfe=int(row["nfe"]), full=str(row["full_grid"]) == "True", corrector=float(row["corrector"]),
            projection=float(row["projection"]), w2=float(row["w2"]), w2_at_error=float(row["w2_at_error"]),
            high_variance=float(row["high_variance"]), amplification=float(row["amplification"]),
            amplification_high=float(row["amplification_high"]),
        )
        for row in pd.read_csv(path).to_dict("records")
    ]


HEADLINE_COLUMNS = (*SUMMARY_COLUMNS, f"best at 20, network error {ERROR_STD:g}")


def headline(rows: list[Measure]) -> str:
    """The README's table (from ``read_measures`` of the committed ``samplers.csv``): the summary
    table of ``samplers.md`` for each process at its defaults, with the best solver and grid at
    20 NFE by the W2² with the network error ``ERROR_STD``."""
    summary = today_and_best_rows(rows, SUMMARY_TODAY, with_error=False, defaults_only=True)
    robust = today_and_best_rows(rows, (), with_error=True, defaults_only=True)
    at_20 = 1 + SUMMARY_NFES.index(20)
    table = [[*today, best[at_20]] for today, best in zip(summary, robust, strict=True)]
    return markdown_text(frame(table, HEADLINE_COLUMNS), left=("process",))
