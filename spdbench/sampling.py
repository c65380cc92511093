"""The one sampling loop: a plain function of a denoiser, a process and its time grid.

Every process supplies ``prior``, ``time_grid`` and ``reverse_step``; this loop only walks
the grid. The state is kept in float64 (the denoiser decides its own dtype). Noise is drawn
per image from its own seed, so any subset of a sample set can be regenerated exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from corruptions import Process, SamplerSettings

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``(x_t, t) ↦`` network output, with ``t`` the process's own (scalar) time."""

Callback = Callable[[int, Tensor, Tensor, Tensor], None]
"""``(i, t, x, x0_hat)`` after each step, k-diffusion style."""


class PerImageNoise:
    """Standard normal pixel noise, one generator per image seeded by ``seeds[i]``."""

    def __init__(self, seeds: Sequence[int], image_shape: tuple[int, int, int], device: torch.device) -> None:
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.image_shape = image_shape
        self.device = device

    def draw(self) -> Tensor:
        noise = [torch.randn(self.image_shape, generator=g, dtype=torch.float64) for g in self.generators]
        return torch.stack(noise).to(self.device)


def sample(
    denoiser: Denoiser,
    process: Process,
    noise: PerImageNoise,
    reference: Tensor,
    steps: int | None = None,
    settings: SamplerSettings = SamplerSettings(),
    callback: Callback | None = None,
) -> Tensor:
    """Run the reverse process on ``process.time_grid(steps)`` from its prior (``reference``:
    one training image per sample, for data-dependent priors); returns float64 images."""
    x = process.prior(noise.draw(), reference.to(noise.device, torch.float64))
    grid = process.time_grid(steps).to(noise.device)
    for i in range(len(grid) - 1):
        t, t_next = grid[i], grid[i + 1]
        step = process.reverse_step(denoiser(x, t), x, t, t_next, noise.draw(), settings)
        if callback is not None:
            callback(i, t, step.x_next, step.x0_hat)
        x = step.x_next
    return x
