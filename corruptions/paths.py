"""Fisher-Rao length of a process's marginal path under a Gaussian data model.

With data ``N(0, diag D)`` in the process's basis, the marginal at time ``t`` is zero-mean
with ``v_k(t) = a_k(t)² D_k + s_k(t)²``. For zero-mean Gaussians with commuting covariances
``ds² = ½ Σ_k (d log v_k)²`` summed over all ``C·H·W`` real degrees of freedom, so

    L = ∫ sqrt(½ Σ_k (d log v_k/dt)²) dt,    geodesic = sqrt(½ Σ_k (log v_k(end) − log v_k(0))²),

and ``efficiency = geodesic / L ≤ 1``. On a discrete grid the integral is the length of the
polyline through the grid's marginals (exact for a straight line in log-variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from corruptions.base import Process


@dataclass(frozen=True)
class PathLength:
    """The length of a marginal path, its endpoints' geodesic, and its speed profile."""

    length: float
    geodesic: float
    time: Tensor  #: fraction of the path at the middle of each grid interval
    speed: Tensor  #: ds/dt on each interval, t the fraction of the path

    @property
    def efficiency(self) -> float:
        return self.geodesic / self.length


def log_variances(process: Process, spectrum: Tensor, t: Tensor) -> Tensor:
    """``log v_k(t) = log(a_k(t)² D_k + s_k(t)²)``, float64 ``len(t) × C × H × W``."""
    a, s = process.marginal_coefficients(t)
    channels = process.image_shape[0]
    return (a.square() * spectrum + s.square()).expand(len(t), channels, -1, -1).log()


def fisher_path_length(process: Process, spectrum: Tensor, chunk: int = 256) -> PathLength:
    """Length of the marginal path over the process's full time grid, from the data to the prior."""
    grid = process.time_grid().flip(0)
    fraction = process.network_time(grid).to(torch.float64)
    pieces = []
    previous = log_variances(process, spectrum, grid[:1])
    for start in range(1, len(grid), chunk):
        current = log_variances(process, spectrum, grid[start : start + chunk])
        steps = torch.diff(torch.cat([previous[-1:], current]), dim=0)
        pieces.append((0.5 * steps.square().flatten(1).sum(1)).sqrt())
        previous = current
    ds = torch.cat(pieces)
    start, end = log_variances(process, spectrum, grid[[0, -1]])
    geodesic = float((0.5 * (end - start).square().sum()).sqrt())
    dt = torch.diff(fraction)
    return PathLength(
        length=float(ds.sum()),
        geodesic=geodesic,
        time=(fraction[1:] + fraction[:-1]) / 2,
        speed=ds / dt,
    )
