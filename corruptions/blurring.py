"""Blurring diffusion (Hoogeboom & Salimans, ICLR 2023), continuous time ``t ∈ [0, 1]``.

Blur ``σ_B(t) = σ_{B,max} sin²(tπ/2)``, ``τ_t = σ_B(t)²/2``,
``d_t = (1 − d_min) exp(−Λ τ_t) + d_min`` in the DCT basis; cosine log-SNR
``logsnr(t) = −2 log tan(c0 + c1 t)``, ``c0 = atan(e^{−5})``, ``c1 = atan(e^5) − c0`` (so it
spans ``[−10, 10]``), ``α_t² = sigmoid(logsnr)``, ``σ_t² = sigmoid(−logsnr)``.
In the family: ``a_t = α_t d_t`` per frequency, ``s_t = σ_t``. ``σ_{B,max} = 0`` is plain
cosine diffusion. Time is continuous; ``levels`` is the number of uniform steps of its full
sampling grid (the paper's ``T_sample``), on which the path length is measured too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from corruptions.base import DeviceCopies, ImageShape, batch_view, check_levels, check_nfe
from corruptions.errors import ConfigurationError
from corruptions.gaussian import FrequencyDiagonalGaussian
from corruptions.transforms import BASES, heat_eigenvalues

LOGSNR_MAX = 10.0


class BlurringDiffusion(FrequencyDiagonalGaussian):
    """Heat blur times cosine noise, per DCT frequency; ε-prediction."""

    name = "blurring"

    def __init__(
        self,
        image_shape: ImageShape,
        *,
        sigma_blur_max: float = 20.0,
        min_scale: float = 0.001,
        levels: int = 1000,
    ) -> None:
        if not sigma_blur_max >= 0:
            raise ConfigurationError(f"sigma_blur_max must be ≥ 0, got {sigma_blur_max}")
        if not 0 < min_scale <= 1:
            raise ConfigurationError(f"min_scale must lie in (0, 1], got {min_scale}")
        check_levels("blurring", levels)
        options = {"sigma_blur_max": sigma_blur_max, "min_scale": min_scale, "levels": levels}
        super().__init__(image_shape, BASES["dct"], options)
        self.sigma_blur_max = sigma_blur_max
        self.min_scale = min_scale
        self.levels = levels
        self.constants = DeviceCopies(heat_eigenvalues(image_shape[1], image_shape[2]))

    def sample_time(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.rand(n, generator=generator, device=device, dtype=torch.float64)

    def time_grid(self, nfe: int | None = None) -> Tensor:
        """``t = 1, 1 − 1/S, …, 0`` with ``S = nfe``: the paper's ``s = t − 1/T_sample``; the full
        grid has ``S = levels`` (the paper's ``T_sample``), the most calls it takes."""
        nfe = self.levels if nfe is None else nfe
        check_nfe(nfe, self.levels)
        return torch.linspace(1.0, 0.0, nfe + 1, dtype=torch.float64)

    def network_time(self, t: Tensor) -> Tensor:
        return t.float()

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        (eigenvalues,) = self.constants.on(t.device)
        t = batch_view(t.to(torch.float64))
        c0 = math.atan(math.exp(-LOGSNR_MAX / 2))
        c1 = math.atan(math.exp(LOGSNR_MAX / 2)) - c0
        logsnr = -2 * torch.log(torch.tan(c0 + c1 * t))
        alpha, sigma = torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()
        tau = (self.sigma_blur_max * torch.sin(t * math.pi / 2).square()).square() / 2
        scale = (1 - self.min_scale) * torch.exp(-eigenvalues * tau) + self.min_scale
        return alpha * scale, sigma
