"""The one sampling loop: a plain function of a denoiser, a process, a solver and a time grid.

The process supplies its prior and ``predict_x0``; the solver (``spdbench.solvers``) the
coefficients of each step; this loop walks the grid and applies them. The state is kept in
float64 (the denoiser decides its own dtype). Noise is drawn per image from its own seed, one
draw for the prior and one per step, on the sampling device (``PerImageNoise``), so any subset
of a sample set can be regenerated exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from corruptions import Process
from spdbench.errors import UserError
from spdbench.solvers import SamplerSettings, Solver, level_schedule, plan

MAX_HISTORY = 3  #: earlier ``x̂_0`` a solver may use (UniPC-3 uses three)
MAX_SAMPLES = 1_000_000  #: images in a sample set, at most

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``(x_t, t) ↦`` network output, with ``t`` the process's own (scalar) time."""

Callback = Callable[[int, Tensor, Tensor, Tensor], None]
"""``(i, t, x, x0_hat)`` after each step, k-diffusion style."""


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  #: splitmix64's increment (2⁶⁴ / φ)
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)  #: splitmix64's finaliser multipliers


def _signed(value: int) -> int:
    """The unsigned 64-bit ``value`` as the int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """The logical right shift of int64 bit patterns (torch's ``>>`` shifts arithmetically)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 bit patterns, with products taken modulo 2⁶⁴:
    ``z ← (z ⊕ z≫30)·m₁; z ← (z ⊕ z≫27)·m₂; z ⊕ z≫31``."""
    x = x ^ _shift_right(x, 30)
    x.mul_(_signed(_MIX[0]))
    x.bitwise_xor_(_shift_right(x, 27))
    x.mul_(_signed(_MIX[1]))
    return x.bitwise_xor_(_shift_right(x, 31))


class PerImageNoise:
    """Standard normal pixel noise, each image's its own: a counter-based generator on the
    sampling device, so drawing it costs a few element-wise kernels, never the CPU.

    Draw ``k`` of the image with seed ``s`` fills pixel ``j`` (row-major) by Box–Muller,
    ``√(−2 ln u₁) · cos(2π u₂)``, with ``u₁`` and ``u₂`` in (0, 1] the high and the low 32 bits
    of ``splitmix64(key + (j + 1)·γ)`` (plus one, over 2³²), where
    ``key = splitmix64(splitmix64(s·γ) + k·γ)`` and ``γ`` is splitmix64's increment (so no
    draw lies beyond 6.7σ). A pixel's value depends only on ``(s, k, j)``: any subset of a
    sample set, in batches of any size, draws the same noise (the rounding of ``log`` and
    ``cos`` may differ between devices)."""

    def __init__(self, seeds: Sequence[int], image_shape: tuple[int, int, int], device: torch.device) -> None:
        self.image_shape = image_shape
        self.device = device
        self.streams = splitmix64(torch.tensor([_times_golden(int(seed)) for seed in seeds], dtype=torch.long))
        self.streams = self.streams.to(device)
        self.counters = torch.arange(1, math.prod(image_shape) + 1, dtype=torch.long) * _signed(_GOLDEN)
        self.counters = self.counters.to(device)
        self.draws = 0

    def skip(self) -> None:
        """Pass over the next draw (a step without noise): the draws after it are unchanged."""
        self.draws += 1

    def draw(self) -> Tensor:
        """The next draw of every image: float64, ``len(seeds) × image_shape``."""
        key = splitmix64(self.streams + _times_golden(self.draws))
        self.draws += 1
        bits = splitmix64(key[:, None] + self.counters)
        u1 = (_shift_right(bits, 32) + 1).double() / 2.0**32
        u2 = ((bits & 0xFFFFFFFF) + 1).double() / 2.0**32
        normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
        return normal.reshape(len(key), *self.image_shape)


def _times_golden(value: int) -> int:
    """``value · γ`` modulo 2⁶⁴, as an int64."""
    return _signed(value * _GOLDEN & _MASK64)


def sample(
    denoiser: Denoiser,
    process: Process,
    noise: PerImageNoise,
    reference: Tensor,
    grid: Tensor,
    solver: Solver,
    settings: SamplerSettings = SamplerSettings(),
    callback: Callback | None = None,
) -> Tensor:
    """Run ``solver`` over ``grid`` (``spdbench.grids``) from the process's prior (``reference``:
    one training image per sample, for data-dependent priors); returns float64 images. Each
    step: ``x̂_0`` from the network (clipped to ``[-1, 1]`` when ``settings.clip_x0``), then the
    solver's linear step in the process's basis, or the corrector's at a repeated time
    (``spdbench.solvers.plan``)."""
    solver.check(process)
    x = process.prior(noise.draw(), reference.to(noise.device, torch.float64))
    grid = grid.to(noise.device)
    history: list[Tensor] = []  # the earlier solver steps' x̂_0, the most recent first
    for i, (step, solver_step) in enumerate(plan(process, solver, grid, level_schedule(process, grid), settings)):
        t = grid[i]
        x0_hat = process.predict_x0(denoiser(x, t), x, t)
        if settings.clip_x0:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        if step.noise is None:  # each step has its draw: one without noise passes over it
            noise.skip()
        x = process.mix(step.terms(x, x0_hat, history, None if step.noise is None else noise.draw()))
        if callback is not None:
            callback(i, t, x, x0_hat)
        if solver_step:
            history = [x0_hat, *history[: MAX_HISTORY - 1]]
    return x


def network_denoiser(net: torch.nn.Module, process: Process, bf16: bool = False) -> Denoiser:
    """The network as a denoiser: ``net(x_t, network_time(t))`` in float32 (bf16 autocast if
    asked), under ``torch.no_grad``."""

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            return net(x.float(), process.network_time(t.reshape(1)).expand(len(x)).to(x.device)).float()

    return denoise


def to_uint8(images: Tensor) -> Tensor:
    """``[-1, 1]`` images to uint8 ``round((x + 1) · 127.5)``, clipped."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def generate(
    denoiser: Denoiser,
    process: Process,
    train_images: Tensor,
    count: int,
    seed: int,
    grid: Tensor,
    solver: Solver,
    settings: SamplerSettings,
    batch: int,
    device: torch.device,
    first: int = 0,
    callback: Callable[[int], None] | None = None,
) -> Tensor:
    """Images ``first … first + count − 1`` of the sample set ``seed``, as uint8.

    Each image's noise and reference are its own (``sample_set_inputs``): any subset of a sample
    set is regenerated exactly, whatever the batch size. Images that are not finite are refused:
    no FID is computed from a sampler or network that diverged."""
    chunks = []
    for start in range(first, first + count, batch):
        indices = range(start, min(start + batch, first + count))
        noise, reference = sample_set_inputs(process, train_images, seed, indices, device)
        images = sample(denoiser, process, noise, reference, grid, solver, settings)
        if not torch.isfinite(images).all():
            raise UserError(
                f"images {indices.start}–{indices.stop - 1} of the sample set are not finite: "
                f"the network or the sampler ({solver.name}, {len(grid) - 1} calls) diverged"
            )
        chunks.append(to_uint8(images).cpu())
        if callback is not None:
            callback(len(indices))
    return torch.cat(chunks)


def sample_set_inputs(
    process: Process, train_images: Tensor, seed: int, indices: range, device: torch.device
) -> tuple[PerImageNoise, Tensor]:
    """The noise and reference images of images ``indices`` of the sample set ``seed``: image
    ``i`` draws its noise from seed ``seed · 10⁶ + i`` (``MAX_SAMPLES``: sample sets of two seeds
    share no image's noise) and, for a data-dependent prior, starts from training image
    ``perm[i]`` of a permutation seeded by ``seed``."""
    order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))
    chosen = torch.tensor(list(indices), dtype=torch.long)
    noise = PerImageNoise([seed * MAX_SAMPLES + int(i) for i in chosen], process.image_shape, device)
    return noise, train_images[order[chosen % len(train_images)]]
