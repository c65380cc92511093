"""Solvers: the reverse samplers, as components separate from the processes.

A solver serves one family of processes and uses only that family's interface (the marginal
coefficients ``a_t``, ``s_t`` and the basis of the frequency-diagonal Gaussian family; the level
step and ``δ`` of heat dissipation). Every solver here is *linear*: step ``i`` of a time grid,
from ``t = grid[i]`` to ``r = grid[i + 1]``, is

    x_r = B⁻¹( c_x ⊙ B x_t + c_0 ⊙ B x̂_0 + c_p ⊙ B x̂_0' + c_z ⊙ B z )

with ``x̂_0 = process.predict_x0(network output)`` (clipped to ``[-1, 1]`` where the solver
allows it and the settings ask), ``x̂_0'`` the earlier steps' (one term each, the most recent
first; at most ``spdbench.sampling.MAX_HISTORY``), ``z`` fresh white noise, and
per-frequency coefficients (a ``LinearStep``) that depend on the process, the grid and the
settings only. The one loop (``spdbench.sampling.sample``) applies them; the exact oracle measure
(``spdbench.samplerreport``) propagates variances through the same coefficients.

A time that repeats in a grid is a corrector's call (``plan``): a Langevin step (``langevin``) or
Ghimire et al.'s projection (``projection``), options of every solver of the Gaussian family,
outside the step rules.

A new solver is one step rule here and one line in ``SOLVERS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Literal, cast

import torch
from torch import Tensor

from corruptions import Process
from corruptions.errors import ConfigurationError
from corruptions.gaussian import FrequencyDiagonalGaussian, Transition
from corruptions.heat import HeatDissipation


@dataclass(frozen=True)
class SamplerSettings:
    """Options of the solvers, orthogonal to the process; each solver names those it uses.

    ``eta`` scales the injected noise from 0 (deterministic) to 1 (ancestral).
    ``variance``: ``small`` is the posterior variance of ``q(x_r | x_t, x̂_0)``;
    ``large`` is the forward transition variance ``s²_{t|r}`` (DDPM's fixed-large
    ``σ_t² = β_t``, the official SPD sampler). ``clip_x0`` clips ``x̂_0`` to ``[-1, 1]``.
    ``corrector`` is the step ``ε`` of a Langevin corrector (``langevin``) at the grid's repeated
    times, in ``(0, 1]``; ``projection`` the step ``δμ`` of the projection (``projection``) there,
    in ``(0, 100]``; ``0``: none. One of the two at most.
    """

    eta: float = 1.0
    variance: Literal["small", "large"] = "small"
    clip_x0: bool = True
    corrector: float = 0.0
    projection: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigurationError(f"eta must lie in [0, 1], got {self.eta}")
        if not 0.0 <= self.corrector <= 1.0:
            raise ConfigurationError(f"corrector must lie in [0, 1], got {self.corrector}")
        if not 0.0 <= self.projection <= MAX_PROJECTION:
            raise ConfigurationError(f"projection must lie in [0, {MAX_PROJECTION:g}], got {self.projection}")
        if self.corrector and self.projection:
            raise ConfigurationError("a Langevin corrector or a projection at the repeated times, not both")
        if self.variance not in ("small", "large"):
            raise ConfigurationError(f"variance must be 'small' or 'large', got {self.variance!r}")

    @property
    def corrects(self) -> bool:
        """Whether the grid's repeated times correct (a Langevin corrector or a projection)."""
        return bool(self.corrector or self.projection)


MAX_PROJECTION = 100.0  #: the largest projection step δμ accepted (its per-frequency step is clipped at 1)
CORRECTIONS = ("corrector", "projection")  #: the settings that use a grid's repeated times
SETTINGS = tuple(setting.name for setting in fields(SamplerSettings))


@dataclass(frozen=True)
class LinearStep:
    """The per-frequency coefficients of one step (float64, broadcastable to ``C × H × W`` in
    the process's basis): on ``x_t``, on ``x̂_0``, on the earlier steps' ``x̂_0`` (the most
    recent first) and on the noise; ``None`` for a term the step does not have."""

    x: Tensor | None = None
    x0: Tensor | None = None
    history: tuple[Tensor, ...] = ()
    noise: Tensor | None = None

    def terms(
        self, x: Tensor, x0: Tensor, history: list[Tensor], noise: Tensor | None
    ) -> list[tuple[Tensor, Tensor]]:
        """The ``(coefficient, image)`` pairs of the step, in the order ``x, x̂_0, history, z``
        (``noise``: ``None`` when the step has none)."""
        pairs = [(self.x, x), (self.x0, x0), *zip(self.history, history, strict=False), (self.noise, noise)]
        return [(c, image) for c, image in pairs if c is not None]


@dataclass(frozen=True)
class Schedule:
    """A time grid and the process's marginal coefficients on it, computed once per grid and
    device (float64, ``len(times) × C|1 × H|1 × W|1``); ``derived`` keeps what a step rule derives
    from them for a later step to reuse (UniPC's residual weights serve two steps each)."""

    times: Tensor
    a: Tensor
    s: Tensor
    derived: dict[tuple[object, ...], object] = field(default_factory=dict, compare=False, repr=False)

    def at(self, i: int) -> tuple[Tensor, Tensor]:
        """``a``, ``s`` at ``times[i]`` (``1 × …``)."""
        return self.a[i : i + 1], self.s[i : i + 1]

    def log_snr(self, i: int) -> Tensor:
        """``λ_k = log(a_k / s_k)`` at ``times[i]``, per frequency."""
        a, s = self.at(i)
        return (a / s).log()

    def is_data(self, i: int) -> bool:
        return bool(self.times[i] == 0)


def schedule(process: Process, grid: Tensor) -> Schedule:
    """The coefficients of ``process`` on ``grid``, one time at a time: a batched call rounds
    some transcendental functions differently (vectorised kernels), and one time at a time keeps
    the samples of the posterior sampler bit for bit what they were when it was a process method."""
    pairs = [process.marginal_coefficients(t.reshape(1)) for t in grid]
    return Schedule(grid, torch.cat([a for a, _ in pairs]), torch.cat([s for _, s in pairs]))


StepRule = Callable[[Process, Schedule, int, SamplerSettings], LinearStep]


@dataclass(frozen=True)
class Solver:
    """A registered solver: its step rule, the family of processes it serves and the settings
    it uses (the others must stay at their defaults)."""

    name: str
    family: type[Process]
    step: StepRule
    settings: tuple[str, ...]
    description: str

    def check(self, process: Process) -> None:
        """Refuse a process outside the family the solver serves."""
        if not isinstance(process, self.family):
            raise ConfigurationError(
                f"sampler {self.name!r} serves the {self.family.__name__} processes, not {process.name!r}; "
                f"for {process.name!r}: {', '.join(solvers_for(process))}"
            )

    def settings_for(
        self,
        eta: float | None = None,
        variance: str | None = None,
        clip_x0: bool | None = None,
        corrector: float | None = None,
        projection: float | None = None,
    ) -> SamplerSettings:
        """The settings of a run: those given (``None``: the default), refused where the solver
        does not use them; an unused one is fixed (η = 0 for a deterministic solver, no clipping
        for a solver that does not clip, no corrector or projection)."""
        given = {"eta": eta, "variance": variance, "clip_x0": clip_x0, "corrector": corrector, "projection": projection}
        unused = [name for name, value in given.items() if value is not None and name not in self.settings]
        if unused:
            raise ConfigurationError(
                f"sampler {self.name!r} has no setting {', '.join(unused)}; its settings: {', '.join(self.settings)}"
            )
        defaults = {
            "eta": 1.0 if "eta" in self.settings else 0.0,
            "variance": "small",
            "clip_x0": "clip_x0" in self.settings,
            "corrector": 0.0,
            "projection": 0.0,
        }
        chosen = {name: defaults[name] if value is None else value for name, value in given.items()}
        return SamplerSettings(**chosen)  # type: ignore[arg-type]

    def recorded(self, settings: SamplerSettings) -> dict[str, object]:
        """The settings the solver uses, as a run's configuration records them; no corrector or
        projection is not recorded (so the runs made before they existed keep their ids)."""
        used = [name for name in self.settings if name not in CORRECTIONS or getattr(settings, name)]
        return {name: getattr(settings, name) for name in used}


ONE = torch.ones(1, 1, 1, 1, dtype=torch.float64)


def ancestral(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """Draw ``u_r`` given ``(u_t, x̂_0)``, on any sub-grid ``r < t``; ``x̂_0`` at ``r = 0``.

    ``small``: ``u_r = a_r û_0 + sqrt(s_r² − σ²) ε̂ + σ z`` with ``ε̂ = (u_t − a_t û_0)/s_t`` and
    ``σ² = η² var``: at ``η = 1`` exactly the posterior ``q(u_r | u_t, û_0)``. ``large``: the
    posterior mean plus ``η s_{t|r} z``."""
    if grid.is_data(i + 1):
        return LinearStep(x0=ONE.to(grid.times.device))
    (a_t, s_t), (a_r, s_r) = grid.at(i), grid.at(i + 1)
    transition = Transition(a_t, s_t, a_r, s_r)
    c_t, c_0, var = transition.posterior()
    if settings.variance == "small":
        std = settings.eta * var.sqrt()
        c_t = (s_r.square() - std.square()).clamp_min(0.0).sqrt() / s_t
        c_0 = a_r - c_t * a_t
    else:
        std = settings.eta * transition.s2_tr.sqrt()
    return LinearStep(x=c_t, x0=c_0, noise=std)


def ddim(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """``u_r = (s_r/s_t) u_t + (a_r − a_t s_r/s_t) û_0`` (DDIM, η = 0; DPM-Solver++ of order 1)."""
    if grid.is_data(i + 1):
        return LinearStep(x0=ONE.to(grid.times.device))
    (a_t, s_t), (a_r, s_r) = grid.at(i), grid.at(i + 1)
    ratio = s_r / s_t
    return LinearStep(x=ratio, x0=a_r - a_t * ratio)


def dpm_solver_2m(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """DPM-Solver++(2M) in data prediction, per frequency: with ``h = λ(r) − λ(t)`` and the
    previous step's ``h'``, ``ρ = h'/h``,
    ``u_r = (s_r/s_t) u_t − a_r expm1(−h) [(1 + 1/(2ρ)) û_0 − 1/(2ρ) û_0']``;
    the first step is first order (DDIM), the last returns ``x̂_0``."""
    if grid.is_data(i + 1):
        return LinearStep(x0=ONE.to(grid.times.device))
    (_, s_t), (a_r, s_r) = grid.at(i), grid.at(i + 1)
    h = grid.log_snr(i + 1) - grid.log_snr(i)
    first = -a_r * torch.expm1(-h)
    if i == 0:
        return LinearStep(x=s_r / s_t, x0=first)
    half = h / (2 * (grid.log_snr(i) - grid.log_snr(i - 1)))  # 1 / (2ρ)
    return LinearStep(x=s_r / s_t, x0=first * (1 + half), history=(-first * half,))


def dpm_solver_3m(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """DPM-Solver++(3M) in data prediction, per frequency (Lu et al., the multistep third-order
    update of their code): with ``h = λ(r) − λ(t)``, the two earlier steps ``h_0``, ``h_1``,
    ``r_0 = h_0/h``, ``r_1 = h_1/h``, the divided differences
    ``D1_0 = (x̂_0 − x̂_0')/r_0``, ``D1_1 = (x̂_0' − x̂_0'')/r_1``,
    ``D1 = D1_0 + r_0/(r_0 + r_1) (D1_0 − D1_1)``, ``D2 = (D1_0 − D1_1)/(r_0 + r_1)`` and
    ``φ1 = expm1(−h)``, ``φ2 = φ1/h + 1``, ``φ3 = φ2/h − ½``:
    ``u_r = (s_r/s_t) u_t − a_r φ1 x̂_0 + a_r φ2 D1 − a_r φ3 D2``. The first two steps are of
    order one and two (``dpm_solver_2m``), the last returns ``x̂_0``. This is term for term the
    reference code's update; measured with the oracle (``spdbench samplers``) its error falls
    with NFE at about the rate of 2M's on these grids, from a lower level at 20 calls and more."""
    if i < 2 or grid.is_data(i + 1):
        return dpm_solver_2m(process, grid, i, settings)
    (_, s_t), (a_r, s_r) = grid.at(i), grid.at(i + 1)
    lam = [grid.log_snr(j) for j in (i - 2, i - 1, i, i + 1)]
    h1, h0, h = lam[1] - lam[0], lam[2] - lam[1], lam[3] - lam[2]
    r0, r1 = h0 / h, h1 / h
    phi1 = torch.expm1(-h)
    phi2 = phi1 / h + 1
    phi3 = phi2 / h - 0.5
    # D1 and D2 as combinations of (x̂_0, x̂_0', x̂_0''):
    d10 = (1 / r0, -1 / r0, torch.zeros_like(r0))
    d11 = (torch.zeros_like(r1), 1 / r1, -1 / r1)
    d1 = [a + r0 / (r0 + r1) * (a - b) for a, b in zip(d10, d11, strict=True)]
    d2 = [(a - b) / (r0 + r1) for a, b in zip(d10, d11, strict=True)]
    on = [a_r * (phi2 * one - phi3 * two) for one, two in zip(d1, d2, strict=True)]
    return LinearStep(x=s_r / s_t, x0=-a_r * phi1 + on[0], history=(on[1], on[2]))


def sde_dpm_solver_2m(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """SDE-DPM-Solver++(2M) in data prediction, per frequency (Lu et al. 2022, the midpoint form of
    their code): with ``h = λ(r) − λ(t)``, ``ρ = h'/h`` and ``φ = −expm1(−2h)``,
    ``u_r = (s_r/s_t) e^{−h} u_t + a_r φ [(1 + 1/(2ρ)) û_0 − 1/(2ρ) û_0'] + s_r sqrt(φ) z``.
    Its first-order form (the first step) is the posterior ``q(u_r | u_t, û_0)``, the ancestral
    sampler; the last step returns ``x̂_0``."""
    if grid.is_data(i + 1):
        return LinearStep(x0=ONE.to(grid.times.device))
    (_, s_t), (a_r, s_r) = grid.at(i), grid.at(i + 1)
    h = grid.log_snr(i + 1) - grid.log_snr(i)
    phi = -torch.expm1(-2 * h)
    keep, noise = s_r / s_t * torch.exp(-h), s_r * phi.sqrt()
    if i == 0:
        return LinearStep(x=keep, x0=a_r * phi, noise=noise)
    half = h / (2 * (grid.log_snr(i) - grid.log_snr(i - 1)))  # 1 / (2ρ)
    return LinearStep(x=keep, x0=a_r * phi * (1 + half), history=(-a_r * phi * half,), noise=noise)


def reverse_diffusion(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """The reverse-diffusion predictor of Song et al. (2021): the forward transition
    ``u_t = a_{t|r} u_r + s_{t|r} z`` read backwards as a discretised SDE, per frequency:
    ``u_r = (2 − a_{t|r}) u_t + s²_{t|r} ∇log p_t(u_t) + s_{t|r} z`` with the score
    ``(a_t û_0 − u_t)/s_t²`` (for DDPM ``a_{t|r} = √(1 − β_t)``, ``s²_{t|r} = β_t``: their
    predictor for the VP SDE). A first-order step of the reverse SDE, the predictor a score-based
    sampler with Ghimire et al.'s projection augments; ``x̂_0`` at ``r = 0``."""
    if grid.is_data(i + 1):
        return LinearStep(x0=ONE.to(grid.times.device))
    (a_t, s_t), (a_r, s_r) = grid.at(i), grid.at(i + 1)
    transition = Transition(a_t, s_t, a_r, s_r)
    weight = transition.s2_tr / s_t.square()
    return LinearStep(x=2 - transition.a_tr - weight, x0=weight * a_t, noise=transition.s2_tr.sqrt())


def uni_pc_residuals(grid: Schedule, j: int, order: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """UniPC's step ``j`` (from ``t_j`` to ``t_{j+1}``) at order ``p = min(order, j + 1)``:
    ``a_{j+1} B(h)`` and the weights of its predictor's and corrector's residuals,
    ``Σ_{k<p} ρ^p_k D_k`` and ``Σ_{k≤p} ρ^c_k D_k``, on the ``x̂_0`` of steps
    ``j + 1, j, j − 1, …, j − p + 1`` (in that order).

    Per frequency, ``h = λ(t_{j+1}) − λ(t_j)``, ``r_k = (λ(t_{j−k}) − λ(t_j))/h`` and
    ``D_k = (x̂_0^{(j−k)} − x̂_0^{(j)})/r_k`` for ``k < p``, ``r_p = 1`` and
    ``D_p = x̂_0^{(j+1)} − x̂_0^{(j)}``; ``B(h) = expm1(−h)`` (the paper's ``B_2``),
    ``b_n = n! (−h) φ_{n+1}(−h) / B(h)`` with ``φ_{n+1}(z) = (φ_n(z) − 1/n!)/z``,
    ``φ_1(z) = expm1(z)/z``; ``ρ^c`` solves ``Σ_k r_k^{n−1} ρ^c_k = b_n`` for ``n = 1 … p`` and
    ``ρ^p`` the same system without ``k = p`` and ``n = p`` (``ρ^p = ½`` at ``p = 2`` and
    ``ρ^c = ½`` at ``p = 1``, as in the reference code)."""
    key = ("uni_pc_residuals", j, order)
    if key not in grid.derived:
        grid.derived[key] = uni_pc_weights(grid, j, order)
    return cast(tuple[Tensor, list[Tensor], list[Tensor]], grid.derived[key])


def uni_pc_weights(grid: Schedule, j: int, order: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """``uni_pc_residuals``, computed."""
    p = min(order, j + 1)
    lam = [grid.log_snr(j - k) for k in range(p)]
    h = grid.log_snr(j + 1) - lam[0]
    ones = torch.ones_like(h)
    ranks = [(lam[k] - lam[0]) / h for k in range(1, p)] + [ones]
    b_h = torch.expm1(-h)
    b, h_phi, factorial = [], b_h / -h - 1, 1
    for n in range(1, p + 1):
        b.append(h_phi * factorial / b_h)
        factorial *= n + 1
        h_phi = h_phi / -h - 1 / factorial
    rho_c = [0.5 * ones] if p == 1 else solve_vandermonde(ranks, b)
    rho_p = [] if p == 1 else [0.5 * ones] if p == 2 else solve_vandermonde(ranks[:-1], b[:-1])
    images = [*range(2, p + 1), 0]  # the index of D_k's newer x̂_0, k = 1 … p

    def on_images(rho: list[Tensor]) -> list[Tensor]:
        weights = [torch.zeros_like(h) for _ in range(p + 1)]
        for image, rank, weight in zip(images, ranks, rho, strict=False):
            weights[image] = weights[image] + weight / rank
            weights[1] = weights[1] - weight / rank
        return weights

    a_r, _ = grid.at(j + 1)
    return a_r * b_h, on_images(rho_p), on_images(rho_c)


def solve_vandermonde(ranks: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    """Per frequency, ``ρ`` with ``Σ_k r_k^n ρ_k = b_n`` for ``n = 0 … len(ranks) − 1``:
    ``ρ_k = Σ_n b_n [x^n] L_k(x)``, with ``L_k(x) = Π_{j≠k} (x − r_j)/(r_k − r_j)`` the Lagrange
    basis of the nodes ``r`` (``Σ_k r_k^n L_k(x) = x^n``)."""
    rho = []
    for k, node in enumerate(ranks):
        coefficients, scale = [torch.ones_like(node)], torch.ones_like(node)  # of Π_{j≠k}(x − r_j), lowest first
        for j, other in enumerate(ranks):
            if j != k:
                times_x = [torch.zeros_like(node), *coefficients]
                coefficients = [a - other * c for a, c in zip(times_x, [*coefficients, 0.0], strict=True)]
                scale = scale * (node - other)
        rho.append(sum(b_n * c for b_n, c in zip(b, coefficients, strict=True)) / scale)
    return rho


def uni_pc(process: Process, grid: Schedule, i: int, settings: SamplerSettings, order: int) -> LinearStep:
    """UniPC (Zhao et al. 2023) in data prediction with ``B(h) = expm1(−h)``, per frequency: the
    multistep predictor UniP-p and the corrector UniC-p, which reuses the network call at the
    predicted point (so it costs no call). With the weights of ``uni_pc_residuals``, step ``j``
    is

        x^p_{j+1} = (s_{j+1}/s_j) x^c_j − a_{j+1} expm1(−h) x̂_0^{(j)} − a_{j+1} B(h) Σ_{k<p} ρ^p_k D_k,
        x^c_{j+1} = x^p_{j+1} − a_{j+1} B(h) (Σ_{k≤p} ρ^c_k D_k − Σ_{k<p} ρ^p_k D_k),

    and the network sees ``x^p``. The loop keeps ``x^p``: step ``i`` applies the correction of
    step ``i − 1`` (it needs ``x̂_0`` at ``x^p_i``) and then its own predictor, which is linear in
    ``x^p_i`` and the ``x̂_0`` of steps ``i … i − order``. The order warms up as
    ``min(order, j + 1)`` and stays at ``order`` to the end: lowering it over the last steps
    (diffusers' default) lost with a perfect network at 10 calls (``spdbench samplers``: SPD's
    W2² 2.7e-4 against 6.5e-5 on the ``signal`` grid). The last step returns ``x̂_0``.

    With a Langevin corrector or a projection (``plan``) between steps ``i − 1`` and ``i``, step
    ``i`` corrects the state the corrector left, with ``x̂_0`` there: UniPC's correction is built
    for ``x^p_i``, and the corrector's move (and a Langevin step's noise) goes into the multistep
    history's reference point, which costs UniPC its order (``spdbench samplers``, "With a
    Langevin corrector or a projection")."""
    if grid.is_data(i + 1):
        return LinearStep(x0=ONE.to(grid.times.device))
    (_, s_t), (_, s_r) = grid.at(i), grid.at(i + 1)
    keep = s_r / s_t
    scale, predictor, _ = uni_pc_residuals(grid, i, order)
    lags = [torch.zeros_like(keep) for _ in range(min(order, i) + 1)]  # x̂_0 of steps i, i − 1, …
    lags[0] = -scale  # −a_r expm1(−h): the first-order (DDIM) term
    for lag, weight in enumerate(predictor[1:]):
        lags[lag] = lags[lag] - scale * weight
    if i > 0:
        scale, predictor, corrector = uni_pc_residuals(grid, i - 1, order)
        for lag, (p, c) in enumerate(zip(predictor, corrector, strict=True)):
            lags[lag] = lags[lag] + keep * scale * (p - c)
    return LinearStep(x=keep, x0=lags[0], history=tuple(lags[1:]))


def ihdm(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """IHDM's sampler (Rissanen et al.), strided: with ``x̂ = u_k + f(u_k, k)`` (one level
    sharper) and ``d = k − k'``, ``μ = u_k + d f = (1 − d) u_k + d x̂`` and
    ``u_{k'} = μ + η δ sqrt(d) z``; ``μ`` at ``k' = 0``. With ``d = 1`` and ``η = 1`` this is the
    official sampler; ``d > 1`` is an Euler step in the level index whose noise variance adds up
    over the levels it skips (ours: IHDM has no few-step sampler)."""
    assert isinstance(process, HeatDissipation)
    stride = int(grid.times[i]) - int(grid.times[i + 1])
    keep, sharpen = scalar(1 - stride, grid), scalar(stride, grid)
    if grid.is_data(i + 1):
        return LinearStep(x=keep, x0=sharpen)
    return LinearStep(x=keep, x0=sharpen, noise=scalar(settings.eta * process.delta * math.sqrt(stride), grid))


def scalar(value: float, grid: Schedule) -> Tensor:
    """``value`` as a coefficient of every frequency (``1 × 1 × 1 × 1``, float64, on the grid's device)."""
    return torch.full((1, 1, 1, 1), float(value), dtype=torch.float64, device=grid.times.device)


def langevin(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """A Langevin corrector at ``t = grid[i]``, preconditioned by ``s_t²`` per frequency: with the
    score ``(a_t û_0 − u_t)/s_t²`` (Tweedie) and step ``ε s_t²``,
    ``u'_t = (1 − ε) u_t + ε a_t û_0 + sqrt(2ε) s_t z``. With the oracle on Gaussian data
    (``v = a_t² D + s_t²``) it maps the exact marginal's variance to ``v + ε² s_t⁴ / v``: it keeps
    the marginal to first order in ``ε`` (unadjusted Langevin's bias is of second order), and
    pulls a state off the marginal back towards it by ``1 − ε s_t²/v``."""
    a, s = grid.at(i)
    eps = settings.corrector
    return LinearStep(x=scalar(1 - eps, grid), x0=eps * a, noise=math.sqrt(2 * eps) * s)


def projection(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """The projection of Ghimire et al. (arXiv 2302.04411, §8, Algorithm 1) at ``r = grid[i]``,
    after the solver's step from ``t = grid[i − 1]``: ``x ← x_pred + √β δμ δτ T(x_pred, r)``, with
    ``T`` the minimiser of its training objective ``E‖x_pred + T − a_r x_0‖² + (√β/2)‖T‖²``,
    ``T = (a_r E[x_0 | x_pred] − x_pred)/(1 + √β/2)``, computed from the denoiser's ``x̂_0``
    (the paper trains a second network for it). Per frequency
    ``u' = (1 − c) u + c a_r û_0`` with ``c = min(1, δμ √β δτ / (1 + √β/2))``: a step of the
    state towards ``a_r x̂_0``, the mean of the forward law given the denoised image (for the
    oracle it scales ``u`` by ``1 − c s_r²/v``, a contraction towards the mean path, not a map
    onto the marginal). Time is scaled to ``[0, 1]`` by the prior's time ``t_max``, as in the
    paper's VP SDE: ``δτ = (t − r)/t_max``, and ``β`` is the forward diffusion rate at ``r``
    per frequency, ``s²_{r+ε|r}/(ε/t_max)`` over the process's finest step ``ε`` (for DDPM
    ``1000 β_{r+1}``, the VP SDE's ``β(t)``). No noise: the solver's is added after it (``plan``:
    predict, project, diffuse)."""
    finest = process.time_grid()[:2]
    t_max, step = finest[0].double(), (finest[0] - finest[1]).double()
    r = grid.times[i]
    a_r, s_r = grid.at(i)
    a_up, s_up = process.marginal_coefficients((r + finest[0] - finest[1]).reshape(1))
    root_beta = (Transition(a_up, s_up, a_r, s_r).s2_tr * (t_max / step)).sqrt()
    dtau = (grid.times[i - 1] - r).double() / t_max
    c = (settings.projection * root_beta * dtau / (1 + root_beta / 2)).clamp(max=1.0)
    return LinearStep(x=1 - c, x0=c * a_r)


def level_schedule(process: Process, grid: Tensor) -> Schedule:
    """The schedule of ``grid`` without its repeated times: the solver's grid."""
    return schedule(process, torch.unique_consecutive(grid))


def plan(
    process: Process, solver: Solver, grid: Tensor, times: Schedule, settings: SamplerSettings
) -> Iterator[tuple[LinearStep, bool]]:
    """The loop's steps on ``grid`` (``times``: its ``level_schedule``), one per network call,
    each with whether it is the solver's (its ``x̂_0`` joins the history): a time that repeats
    is a corrector step there (``langevin``, or ``projection`` when the settings ask, which takes
    over the noise of the solver's step before it); the others are the solver's steps on the
    grid without its repeats."""
    level = 0
    repeated = (grid[1:] == grid[:-1]).tolist() + [False]  # one transfer, not one per step
    noise: Tensor | None = None
    for i in range(len(grid) - 1):
        if not repeated[i]:
            step = solver.step(process, times, level, settings)
            if settings.projection and repeated[i + 1]:
                step, noise = replace(step, noise=None), step.noise
            yield step, True
            level += 1
        elif settings.projection:
            if i == 0 or repeated[i - 1]:
                raise ConfigurationError("a projection follows a step of the solver: a grid time repeats at most once")
            yield replace(projection(process, times, level, settings), noise=noise), False
        else:
            yield langevin(process, times, level, settings), False


#: Every solver, by its name.
SOLVERS: dict[str, Solver] = {
    solver.name: solver
    for solver in (
        Solver(
            "ancestral",
            FrequencyDiagonalGaussian,
            ancestral,
            ("eta", "variance", "clip_x0", *CORRECTIONS),
            "the posterior sampler: η from 0 to 1, small or large variance",
        ),
        Solver("ddim", FrequencyDiagonalGaussian, ddim, ("clip_x0", *CORRECTIONS), "DDIM (η = 0), per frequency"),
        Solver(
            "dpmpp2m",
            FrequencyDiagonalGaussian,
            dpm_solver_2m,
            ("clip_x0", *CORRECTIONS),
            "DPM-Solver++(2M), a second-order multistep exponential integrator per frequency",
        ),
        Solver(
            "dpmpp3m",
            FrequencyDiagonalGaussian,
            dpm_solver_3m,
            ("clip_x0", *CORRECTIONS),
            "DPM-Solver++(3M), its third-order multistep form",
        ),
        Solver(
            "sdedpmpp2m",
            FrequencyDiagonalGaussian,
            sde_dpm_solver_2m,
            ("clip_x0", *CORRECTIONS),
            "SDE-DPM-Solver++(2M): the ancestral sampler with a second-order multistep correction",
        ),
        Solver(
            "unipc2",
            FrequencyDiagonalGaussian,
            partial(uni_pc, order=2),
            ("clip_x0", *CORRECTIONS),
            "UniPC-2: a second-order multistep predictor and its corrector, per frequency",
        ),
        Solver(
            "unipc3",
            FrequencyDiagonalGaussian,
            partial(uni_pc, order=3),
            ("clip_x0", *CORRECTIONS),
            "UniPC-3: its third-order form",
        ),
        Solver(
            "reverse",
            FrequencyDiagonalGaussian,
            reverse_diffusion,
            ("clip_x0", *CORRECTIONS),
            "Song et al.'s reverse-diffusion predictor: a first-order step of the reverse SDE, per frequency",
        ),
        Solver("ihdm", HeatDissipation, ihdm, ("eta",), "IHDM's δ-sampler, strided in the level index"),
    )
}


def solvers_for(process: Process) -> list[str]:
    """The names of the solvers that serve ``process``."""
    return [name for name, solver in SOLVERS.items() if isinstance(process, solver.family)]


def get_solver(name: str) -> Solver:
    if name not in SOLVERS:
        raise ConfigurationError(f"unknown sampler {name!r}; valid: {', '.join(SOLVERS)}")
    return SOLVERS[name]
