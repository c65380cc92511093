"""DDPM (Ho et al. 2020), with the cosine schedule of Nichol & Dhariwal (2021).

``a_t = sqrt(ᾱ_t)``, ``s_t = sqrt(1 − ᾱ_t)`` for every frequency, ``ᾱ_t = Π_{i ≤ t} (1 − β_i)``,
levels ``t ∈ {0 … T}`` with ``t = 0`` the data.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from corruptions.base import DeviceCopies, DiscreteTime, ImageShape, batch_view, check_levels
from corruptions.errors import ConfigurationError
from corruptions.gaussian import FrequencyDiagonalGaussian
from corruptions.transforms import BASES

SCHEDULES = ("linear", "cosine")


def linear_betas(levels: int) -> Tensor:
    """``β`` from ``1e-4`` to ``0.02`` for ``T = 1000``, both ends scaled by ``1000/T``."""
    scale = 1000.0 / levels
    return torch.linspace(1e-4 * scale, 0.02 * scale, levels, dtype=torch.float64)


def cosine_betas(levels: int, offset: float = 0.008) -> Tensor:
    """``ᾱ(t) = cos²(((t/T + s)/(1 + s)) π/2)``, ``β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999)``."""
    t = torch.arange(levels + 1, dtype=torch.float64) / levels
    alpha_bar = torch.cos((t + offset) / (1 + offset) * math.pi / 2).square()
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


class DDPM(DiscreteTime, FrequencyDiagonalGaussian):
    """White Gaussian noise at every frequency alike; ε-prediction."""

    name = "ddpm"

    def __init__(
        self,
        image_shape: ImageShape,
        *,
        schedule: Literal["linear", "cosine"] = "linear",
        levels: int = 1000,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ConfigurationError(f"unknown DDPM schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
        check_levels("DDPM", levels, least=2)
        # The coefficients are the same at every frequency, so the basis never runs;
        # the DCT is where the path analysis measures the spectrum.
        super().__init__(image_shape, BASES["dct"], {"schedule": schedule, "levels": levels})
        betas = linear_betas(levels) if schedule == "linear" else cosine_betas(levels)
        self.levels = levels
        self.alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        self.constants = DeviceCopies(self.alpha_bar)

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        (alpha_bar,) = self.constants.on(t.device)
        alpha_bar = batch_view(alpha_bar[t.long()])
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
