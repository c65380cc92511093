"""Inverse heat dissipation (IHDM; Rissanen, Heinonen & Solin, ICLR 2023).

Forward: ``F_k x = IDCT(exp(−Λ τ_k) ⊙ DCT x)``, ``τ_k = σ_{B,k}² / 2``,
``σ_{B,k} = exp(linspace(log σ_min, log σ_max, K))`` for ``k = 1 … K`` and ``σ_{B,0} = 0``.
Training: ``ũ_k = F_k x + σ ε``; the network predicts the residual ``f`` with
``x̂_{k−1} = ũ_k + f(ũ_k, k)``, target ``F_{k−1} x − ũ_k``.
Sampler (``spdbench.solvers.ihdm``): ``u_K = F_K x_data + δ ε``, then ``μ = u_k + f(u_k, k)``,
``u_{k−1} = μ + δ ε``; the last ``μ`` is returned. ``delta`` is the sampler's noise ``δ``.

Noise levels: the official code works on ``[0, 1]`` data with ``σ = 0.01``, ``δ = 0.0125``;
on ``[−1, 1]`` data the same process has ``σ = 0.02``, ``δ = 0.025`` (ours, the defaults).
Levels ``{1 … K}`` are all trained (the official code never trains level ``K``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from corruptions.base import Corruption, DeviceCopies, DiscreteTime, ImageShape, Process, batch_view, check_levels
from corruptions.errors import ConfigurationError
from corruptions.transforms import BASES, heat_eigenvalues


def published_schedule(height: int) -> tuple[int, float]:
    """``(K, σ_max)`` by image size: MNIST 28×28 ``(100, 20)``, CIFAR-10 32×32 ``(200, 24)``;
    other sizes (ours): ``K = 200`` and ``σ_max`` scaled with the size from CIFAR-10's."""
    if height <= 28:
        return 100, 20.0
    return 200, 24.0 * height / 32


class HeatDissipation(DiscreteTime, Process):
    """Blur with the heat equation, a little noise; the network sharpens one level at a time."""

    name = "heat"

    @classmethod
    def option_defaults(cls, image_shape: ImageShape) -> dict[str, Any]:
        """The published schedule for the image size fills the defaults given as ``None``."""
        levels, sigma_blur_max = published_schedule(image_shape[1])
        return {**super().option_defaults(image_shape), "levels": levels, "sigma_blur_max": sigma_blur_max}

    def __init__(
        self,
        image_shape: ImageShape,
        *,
        levels: int | None = None,
        sigma_blur_min: float = 0.5,
        sigma_blur_max: float | None = None,
        sigma: float = 0.02,
        delta: float = 0.025,
    ) -> None:
        default_levels, default_max = published_schedule(image_shape[1])
        levels = default_levels if levels is None else levels
        sigma_blur_max = default_max if sigma_blur_max is None else sigma_blur_max
        check_levels("heat", levels)
        if not 0 < sigma_blur_min <= sigma_blur_max:
            raise ConfigurationError(
                f"heat needs 0 < sigma_blur_min ≤ sigma_blur_max, got {sigma_blur_min}, {sigma_blur_max}"
            )
        if sigma <= 0 or delta < 0:
            raise ConfigurationError(f"heat needs sigma > 0 and delta ≥ 0, got {sigma}, {delta}")
        options = {
            "levels": levels,
            "sigma_blur_min": sigma_blur_min,
            "sigma_blur_max": sigma_blur_max,
            "sigma": sigma,
            "delta": delta,
        }
        super().__init__(image_shape, BASES["dct"], options)
        self.levels = levels
        self.sigma = sigma
        self.delta = delta
        sigma_blur = torch.exp(
            torch.linspace(math.log(sigma_blur_min), math.log(sigma_blur_max), levels, dtype=torch.float64)
        )
        tau = torch.cat([torch.zeros(1, dtype=torch.float64), sigma_blur.square() / 2])
        eigenvalues = heat_eigenvalues(image_shape[1], image_shape[2])
        self.attenuation = torch.exp(-tau[:, None, None] * eigenvalues)[:, None]  # (K+1) × 1 × H × W
        self.constants = DeviceCopies(self.attenuation)

    def _filters(self, t: Tensor) -> Tensor:
        (attenuation,) = self.constants.on(t.device)
        return attenuation[t.long()]

    def blur(self, x: Tensor, t: Tensor) -> Tensor:
        """``F_t x`` for per-image levels ``t``."""
        return self.basis.inverse(self._filters(t.to(x.device)).to(x.dtype) * self.basis.forward(x))

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``a_k = exp(−Λ τ_k)``, ``s_k = σ`` (``0`` at the data)."""
        return self._filters(t), batch_view((t > 0).to(torch.float64) * self.sigma)

    def corrupt(self, x0: Tensor, t: Tensor, noise: Tensor) -> Corruption:
        """``ũ_k = F_k x0 + σ ε``; target ``F_{k−1} x0 − ũ_k``."""
        t = t.to(x0.device)
        u0 = self.basis.forward(x0)
        filters = self._filters(t).to(x0.dtype)
        sharper = self._filters(t - 1).to(x0.dtype)
        x_t = self.basis.inverse(filters * u0) + self.sigma * noise
        return Corruption(x_t=x_t, target=self.basis.inverse(sharper * u0) - x_t)

    def predict_x0(self, net_out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The network's sharpest estimate, ``x̂_{k−1} = u_k + f``: heat predicts one level of
        sharpening, not the clean image (they coincide at ``k = 1``)."""
        return x_t + net_out.to(x_t.dtype)

    def net_output_from_x0(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """``f = F_{k−1} x0 − u_k``."""
        return self.blur(x0, t.reshape(-1) - 1) - x_t

    def prior(self, noise: Tensor, reference: Tensor) -> Tensor:
        """``u_K = F_K x_data + δ ε``: the prior is built from training images."""
        if reference.shape != noise.shape:
            raise ConfigurationError(
                f"heat's prior needs one training image per sample: {tuple(reference.shape)} vs {tuple(noise.shape)}"
            )
        levels = torch.full((noise.shape[0],), self.levels, device=noise.device)
        return self.blur(reference.to(noise.dtype), levels) + self.delta * noise
