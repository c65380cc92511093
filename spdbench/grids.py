"""Time grids: where a solver's ``nfe`` network calls sit along a process's time.

A grid is ``nfe + 1`` times, strictly decreasing from the prior's time to ``0`` (the data); a
time repeated in it is a corrector's call there (``with_correctors``).

- ``native``: the process's own grid evenly thinned (``Process.time_grid``): uniform in its
  time variable (levels for a discrete process).
- ``logsnr``: uniform in the mean log-SNR ``λ̄(t) = mean_k log(a_k(t)/s_k(t))``. Every frequency
  has its own SNR; the mean of their logs is the log of their geometric mean, and the same for
  every process whatever its basis (for DDPM it is DDPM's own ``λ``).
- ``edm``: the ρ-schedule of Karras et al. (2022, ρ = 7) on ``σ̄ = exp(−λ̄)``: uniform in
  ``σ̄^{1/ρ}``, denser near the data.
- ``signal`` (ours): uniform in the signal-weighted mean log-SNR
  ``Σ_k D_k λ_k(t) / Σ_k D_k``: the frequencies that carry the data's variance set the pace.

What lost, measured by ``spdbench samplers`` (exact W2² with a perfect network, Fashion-MNIST's
spectrum, 2026-11-29): equal steps of Fisher–Rao arc length of the marginal path (the length
``spdbench paths`` measures) is SPD's native grid (SPD walks its path at constant speed) and is
far worse than ``logsnr`` for DDPM and blurring (DPM-Solver++(2M) at 20 NFE: 0.29 against 1.5e-4
for DDPM, 0.20 against 0.11 for blurring): it spends its steps where the marginal's variance
moves, not where the denoiser's output does.

Every grid but ``native`` picks its times among the process's full grid (every level; for a
continuous process its ``levels`` uniform steps) whose mean log-SNR is at most
``3 + log(nfe/10)`` (``σ̄ = e⁻³ · 10/nfe``: 0.05 at 10 calls, where the last call returns
``x̂_0``, as EDM stops at its ``σ_min``): evenly spaced in the grid's coordinate, each the nearest
level, nudged so that the times strictly decrease. The end was chosen by ``spdbench samplers``'
exact measure: with few calls, steps spent where the frequencies are nearly clean are lost to the
rest of the path (DPM-Solver++(2M) at 10 NFE, relative W2²: DDPM 1.3e-3 → 9.2e-4, SPD on the
``signal`` grid 1.9e-3 → 7.8e-4); a fixed end costs accuracy at many calls (DDPM at 50 NFE:
2.8e-6 → 6.8e-5 with the end fixed at 3), which the end moving with ``nfe`` keeps. A new grid is
one coordinate function here and one line in ``GRIDS``, its coordinate stated again, independently,
in ``COORDINATES`` of ``tests/test_solvers.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from corruptions import Process
from corruptions.errors import ConfigurationError, NfeRangeError

EDM_RHO = 7.0


def log_snr_end(nfe: int) -> float:
    """The mean log-SNR at which every grid but ``native`` stops, for ``nfe`` calls."""
    return 3.0 + math.log(nfe / 10)


CHUNK = 256  #: times per batch when a coordinate is measured over the full grid

#: ``(process, times > 0 decreasing, data spectrum D or None) ↦`` a monotone coordinate per time.
Coordinate = Callable[[Process, Tensor, Tensor | None], Tensor]


def weighted_log_snr(process: Process, times: Tensor, weights: Tensor) -> Tensor:
    """``Σ_k w_k log(a_k(t)/s_k(t)) / Σ_k w_k`` over every coefficient of the image, per time
    (``−inf`` where a coefficient's ``a_k`` underflows to 0)."""
    weights = weights.expand(process.image_shape)
    values = []
    for start in range(0, len(times), CHUNK):
        a, s = process.marginal_coefficients(times[start : start + CHUNK])
        values.append(((a / s).log() * weights).sum((1, 2, 3)) / weights.sum())
    return torch.cat(values)


def mean_log_snr(process: Process, times: Tensor) -> Tensor:
    """``λ̄(t) = mean_k log(a_k(t)/s_k(t))`` per time."""
    return weighted_log_snr(process, times, torch.ones(1, dtype=torch.float64))


def log_snr_coordinate(process: Process, times: Tensor, spectrum: Tensor | None) -> Tensor:
    return mean_log_snr(process, times)


def edm_coordinate(process: Process, times: Tensor, spectrum: Tensor | None) -> Tensor:
    return torch.exp(-mean_log_snr(process, times) / EDM_RHO)


def signal_coordinate(process: Process, times: Tensor, spectrum: Tensor | None) -> Tensor:
    """``Σ_k D_k λ_k(t) / Σ_k D_k`` per time."""
    if spectrum is None:
        raise ConfigurationError("the signal grid needs the data's power spectrum")
    return weighted_log_snr(process, times, spectrum)


GRIDS: dict[str, Coordinate | None] = {
    "native": None,
    "logsnr": log_snr_coordinate,
    "edm": edm_coordinate,
    "signal": signal_coordinate,
}


def pick(coordinate: Tensor, nfe: int) -> Tensor:
    """Indices (increasing) of the ``nfe`` entries of the monotone ``coordinate`` nearest to
    ``nfe`` values evenly spaced from its first entry to its last, made strictly increasing."""
    count = len(coordinate)
    rising = coordinate if coordinate[-1] >= coordinate[0] else -coordinate
    targets = torch.linspace(float(rising[0]), float(rising[-1]), nfe, dtype=torch.float64)
    right = torch.searchsorted(rising.contiguous(), targets).clamp(1, count - 1)
    nearer_left = (targets - rising[right - 1]).abs() <= (rising[right] - targets).abs()
    chosen = (right - nearer_left.long()).tolist()
    for j in range(1, nfe):
        chosen[j] = max(chosen[j], chosen[j - 1] + 1)
    for j in range(nfe - 1, -1, -1):
        chosen[j] = min(chosen[j], count - nfe + j if j == nfe - 1 else chosen[j + 1] - 1)
    return torch.tensor(chosen)


class Grids:
    """The grids of one process: each grid's coordinate over the full grid is measured once.
    ``spectrum``: the data's ``D`` in the process's basis (the ``signal`` grid needs it)."""

    def __init__(self, process: Process, spectrum: Tensor | None = None) -> None:
        self.process = process
        self.spectrum = spectrum
        self.levels = process.time_grid()[:-1]
        self.log_snr = mean_log_snr(process, self.levels)
        self.coordinates: dict[str, Tensor] = {}

    def make(self, name: str, nfe: int | None) -> Tensor:
        """The grid ``name`` with ``nfe`` network calls (``None``: the full grid)."""
        check_grid(name)
        coordinate = GRIDS[name]
        if coordinate is None:
            return self.process.time_grid(nfe)
        if not torch.isfinite(self.log_snr).all():
            raise ConfigurationError(
                f"the {name} grid needs a finite log-SNR at every level, and some of {self.process.name!r}'s "
                "coefficients vanish at its noisiest levels; use the native grid"
            )
        nfe = len(self.levels) if nfe is None else nfe
        if nfe < 1:
            raise NfeRangeError(nfe, len(self.levels), "the levels")
        kept = self.log_snr <= log_snr_end(nfe)
        if nfe > int(kept.sum()):
            limit = f"on the {name} grid: the levels of mean log-SNR at most {log_snr_end(nfe):.2f}"
            raise NfeRangeError(nfe, int(kept.sum()), limit)
        if name not in self.coordinates:
            self.coordinates[name] = coordinate(self.process, self.levels, self.spectrum)
        chosen = self.levels[kept][pick(self.coordinates[name][kept], nfe)]
        assert chosen[0] == self.levels[0], "a grid starts at the prior's time"
        return torch.cat([chosen, torch.zeros(1, dtype=chosen.dtype)])


def solver_calls(nfe: int) -> int:
    """Of ``nfe`` network calls with a corrector, the solver's: ``⌈(nfe + 1)/2⌉`` (the rest
    correct, at most one after each of its steps but the last)."""
    return (nfe + 2) // 2


def with_correctors(grid: Tensor, nfe: int) -> Tensor:
    """``grid`` (of ``solver_calls(nfe)`` calls) with its last ``nfe − solver_calls(nfe)`` times
    before the data repeated: a corrector call at each, ``nfe`` calls in all."""
    calls = len(grid) - 1
    if calls != solver_calls(nfe):
        raise ValueError(f"{nfe} calls with correctors need a grid of {solver_calls(nfe)} calls, not {calls}")
    repeats = torch.ones(len(grid), dtype=torch.long)
    repeats[2 * calls - nfe : calls] = 2  # the times corrected
    return grid.repeat_interleave(repeats)


def check_grid(name: str) -> None:
    """Refuse a grid name that is not registered."""
    if name not in GRIDS:
        raise ConfigurationError(f"unknown grid {name!r}; valid: {', '.join(GRIDS)}")


def make_grid(name: str, process: Process, nfe: int | None, spectrum: Tensor | None = None) -> Tensor:
    """The grid ``name`` for ``process`` with ``nfe`` network calls (``None``: the full grid);
    ``spectrum``: the data's ``D`` in the process's basis (the ``signal`` grid needs it)."""
    return Grids(process, spectrum).make(name, nfe)
