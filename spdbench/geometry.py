"""The geometry of sampling paths, measured the same way for every process and solver (after
Chen et al., "A Geometric Perspective on Diffusion Models", arXiv 2305.19947, and their code,
``zju-pi/diff-sampler``, ``diff-analyzer``).

A path is ``p_0 … p_M`` for each sample (``(M + 1) × N × C × H × W``, float64):

- the **sampling trajectory**: the state the solver hands the network at each step, then the
  final sample (``record_trajectory``: recorded by wrapping the denoiser and through the
  solver's callback, with no flag inside any solver);
- the **denoising trajectory**: the clean image ``x̂_0`` the solver used at each step.

Diagnostics, each normalised so that processes whose paths start and end at different scales
(white noise, a blurred image) compare:

- **chord deviation** ``dev_n = ‖(c − p_n) − ⟨c − p_n, u⟩ u‖ / ‖c − b‖`` with ``b = p_0``,
  ``c = p_M`` and ``u = (c − b)/‖c − b‖``: the distance of ``p_n`` from the straight line through
  the path's ends (Chen et al.'s deviation, which is unnormalised), in units of the chord's
  length. It is 0 on a straight path and ``(1 − cos(θ/2)) / (2 sin(θ/2))`` at the middle of a
  circular arc of angle ``θ``.
- **off-plane share**: the share of a path's variance that the chord and the top ``k``
  principal components of the path's off-chord part leave out (Chen et al. find sampling
  trajectories nearly confined to a low-dimensional subspace): 0 when the path lies in a plane
  that holds its chord and ``k = 1``.
- **path fraction** ``ℓ_n / ℓ_M``: the arc length walked up to ``p_n`` over the whole,
  averaged over samples: the common abscissa of curves over paths of different grids.

The **empirical optimal denoiser** (``EmpiricalOptimalDenoiser``) is ``E[x_0 | x_t]`` when
``x_0`` is drawn uniformly from a finite training set, under a frequency-diagonal Gaussian
process's own forward law ``u_t = a_t ⊙ u_0 + s_t ⊙ B ε``:

    r*(x_t) = Σ_i softmax_i(−½ ‖(B x_t − a_t ⊙ B y_i) / s_t‖²) y_i

which for DDPM (``a``, ``s`` the same at every frequency) is Chen et al.'s kernel mean shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from corruptions import Process
from corruptions.errors import ConfigurationError
from corruptions.gaussian import FrequencyDiagonalGaussian
from spdbench.sampling import Denoiser, PerImageNoise, sample
from spdbench.solvers import SamplerSettings, Solver


@dataclass(frozen=True)
class Trajectory:
    """One batch of samples' paths through a solver's grid (float64, on the CPU).

    ``states``: ``(M + 1) × N × C × H × W``, the state at each network call, then the sample;
    ``denoised``: ``M × N × C × H × W``, the ``x̂_0`` of each step; ``times``: the ``M`` times of
    the calls."""

    states: Tensor
    denoised: Tensor
    times: Tensor


def record_trajectory(
    denoiser: Denoiser,
    process: Process,
    noise: PerImageNoise,
    reference: Tensor,
    grid: Tensor,
    solver: Solver,
    settings: SamplerSettings,
) -> Trajectory:
    """Sample as ``spdbench.sampling.sample`` does and keep the path: the denoiser is wrapped to
    see each state it is called on, and the callback gives each step's ``x̂_0``."""
    states: list[Tensor] = []
    denoised: list[Tensor] = []
    times: list[Tensor] = []

    def watched(x: Tensor, t: Tensor) -> Tensor:
        states.append(x.detach().to("cpu", torch.float64))
        times.append(t.detach().to("cpu", torch.float64).reshape(()))
        return denoiser(x, t)

    def keep(i: int, t: Tensor, x: Tensor, x0_hat: Tensor) -> None:
        denoised.append(x0_hat.detach().to("cpu", torch.float64))

    final = sample(watched, process, noise, reference, grid, solver, settings, callback=keep)
    states.append(final.detach().to("cpu", torch.float64))
    return Trajectory(torch.stack(states), torch.stack(denoised), torch.stack(times))


def _flat(path: Tensor) -> Tensor:
    """``(M + 1) × N × …`` as ``(M + 1) × N × D``."""
    return path.reshape(path.shape[0], path.shape[1], -1).to(torch.float64)


def chord_deviation(path: Tensor) -> Tensor:
    """``dev_n`` for every point and sample (``(M + 1) × N``): the distance from the chord
    through the path's ends over the chord's length (0 at both ends)."""
    points = _flat(path)
    start, end = points[0], points[-1]
    chord = end - start
    length = chord.norm(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    unit = chord / length[:, None]
    to_end = end[None] - points
    along = (to_end * unit[None]).sum(-1, keepdim=True)
    return (to_end - along * unit[None]).norm(dim=-1) / length[None]


def off_plane_share(path: Tensor, components: int) -> Tensor:
    """Per sample (``N``): the variance of the path's points off its chord that its top
    ``components`` principal components (of that off-chord part) leave out, as a share of the
    path's whole variance about its mean point: what a subspace of the chord and ``components``
    more directions cannot hold (0 for a straight path, and for a plane curve through its chord
    with one component)."""
    points = _flat(path)
    start, end = points[0], points[-1]
    chord = end - start
    unit = chord / chord.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    offsets = points - start[None]
    off = offsets - (offsets * unit[None]).sum(-1, keepdim=True) * unit[None]
    off = off - off.mean(0, keepdim=True)
    outside = torch.linalg.svdvals(off.permute(1, 0, 2)).square()[:, components:].sum(-1)
    total = (points - points.mean(0, keepdim=True)).square().sum((0, 2))
    return outside / total.clamp_min(torch.finfo(torch.float64).tiny)


def path_fraction(path: Tensor) -> Tensor:
    """``ℓ_n / ℓ_M`` for every point (``M + 1``), averaged over the samples: the arc length
    walked up to ``p_n`` over the whole path's."""
    points = _flat(path)
    steps = (points[1:] - points[:-1]).norm(dim=-1)  # M × N
    walked = torch.cat([torch.zeros_like(steps[:1]), steps.cumsum(0)])
    total = walked[-1].clamp_min(torch.finfo(torch.float64).tiny)
    return (walked / total[None]).mean(-1)


class EmpiricalOptimalDenoiser:
    """``r*(x_t)``, the posterior mean of ``x_0`` over ``images`` under the process's forward law
    (see the module's docstring).

    The Gaussian log-likelihoods are ``−½ ‖W x_t − V y_i‖²`` with ``W = B⁻¹ diag(1/s_t) B`` and
    ``V = B⁻¹ diag(a_t/s_t) B`` (the basis is orthonormal, so norms are the same in pixels and
    coefficients); the term ``‖W x_t‖²`` is common to all ``i`` and drops out of the softmax. The
    softmax and the weighted sum are accumulated over chunks of ``chunk`` training images with a
    running log-sum-exp, in float64."""

    def __init__(self, process: Process, images: Tensor, chunk: int = 4096) -> None:
        if not isinstance(process, FrequencyDiagonalGaussian):
            raise ConfigurationError(f"{process.name!r} is not a frequency-diagonal Gaussian process")
        self.process = process
        self.images = images.to(torch.float64)
        self.chunk = chunk

    def posterior_mean(self, x_t: Tensor, t: Tensor) -> Tensor:
        """``r*(x_t)``: ``N × C × H × W``, float64."""
        a, s = self.process.marginal_coefficients(t.reshape(1).to(x_t.device))
        seen = self.process.mix([(1.0 / s, x_t.to(torch.float64))]).flatten(1)  # W x_t, N × D
        top = torch.full((len(x_t),), -torch.inf, dtype=torch.float64, device=x_t.device)
        weight_sum = torch.zeros(len(x_t), dtype=torch.float64, device=x_t.device)
        weighted = torch.zeros(len(x_t), self.images[0].numel(), dtype=torch.float64, device=x_t.device)
        for first in range(0, len(self.images), self.chunk):
            members = self.images[first : first + self.chunk].to(x_t.device)
            mapped = self.process.mix([(a / s, members)]).flatten(1)  # V y_i, chunk × D
            logits = seen @ mapped.T - 0.5 * mapped.square().sum(-1)[None]
            new_top = torch.maximum(top, logits.max(-1).values)
            rescale = torch.exp(top - new_top)
            weights = torch.exp(logits - new_top[:, None])
            weight_sum = weight_sum * rescale + weights.sum(-1)
            weighted = weighted * rescale[:, None] + weights @ members.flatten(1)
            top = new_top
        return (weighted / weight_sum[:, None]).reshape(x_t.shape)


def optimal_gap(optimal: EmpiricalOptimalDenoiser, trajectory: Trajectory) -> Tensor:
    """Per step (``M``): the root-mean-square per pixel of ``x̂_0 − r*(x_t)`` over the samples,
    with ``x̂_0`` what the solver used at that step (the network's, clipped if the sampler clips)
    and ``r*`` the empirical optimal denoiser at the same state (on the device of its images)."""
    gaps = []
    for state, used, t in zip(trajectory.states[:-1], trajectory.denoised, trajectory.times, strict=True):
        best = optimal.posterior_mean(state.to(optimal.images.device), t).cpu()
        gaps.append((used - best).square().mean().sqrt())
    return torch.stack(gaps)
