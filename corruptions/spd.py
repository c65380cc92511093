"""Shortest Path Diffusion (Das et al., ICML 2023) and its perturbations.

With data modelled as ``N(0, diag D)`` in a Fourier basis, the Fisher-Rao geodesic to white
noise keeps each frequency's variance on ``v_k(τ) = D_k^τ`` (``τ = 1`` data, ``τ = 0`` noise),
walked at constant speed. Splitting it into signal and noise with ``a² + s² = 1``:

    ᾱ_k(τ) = (1 − D_k^τ) / (1 − D_k),   a = sqrt(ᾱ),   s = sqrt(1 − ᾱ)

(limit ``ᾱ = τ`` at ``D_k = 1``). Levels ``t = 0 … T`` with ``t = 0`` the data and, as in
the official code, ``τ_t = (T − t')/T`` for ``t' = linspace(1, T − 1, T)`` at ``t = 1 … T``.

Perturbations (ours) keep both endpoints and the split ``ᾱ = (1 − v)/(1 − D)``:

- ``desync``: ``v_k = D_k^{τ^{1 + p z_k}}``, ``z_k ∈ [−1, 1]`` affine in ``log(1 + r_k)``;
- ``spectrum``: the schedule of a wrong spectrum ``D_k^{1+p}``, applied to data with ``D_k``;
- ``time``: ``τ → τ^{1+p}`` for every frequency (the same curve at uneven speed).

All three are ``ᾱ = expm1(τ'_k L_k) / expm1(L_k)`` with ``L_k = (1 + q) log D_k`` and the warped
time ``τ' = τ_T + (1 − τ_T) ((τ − τ_T)/(1 − τ_T))^{e_k}``, which keeps both ends of the
discrete grid (``τ = 1`` and the official last level ``τ_T = 1/T``) where they are:
``e_k = 1 + p z_k, q = 0`` (desync), ``e_k = 1, q = p`` (spectrum), ``e_k = 1 + p, q = 0``
(time). ``p = 0`` is SPD exactly.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from corruptions.base import DeviceCopies, DiscreteTime, ImageShape, batch_view, check_levels, option_text
from corruptions.errors import ConfigurationError
from corruptions.gaussian import FrequencyDiagonalGaussian
from corruptions.spectrum import Spectrum
from corruptions.transforms import get_basis

PERTURB_KINDS = ("desync", "spectrum", "time")
PERTURBATIONS = (-0.2, -0.1, 0.1, 0.2)  #: the strengths ``spdbench paths`` measures for each kind


class ShortestPathDiffusion(DiscreteTime, FrequencyDiagonalGaussian):
    """The Fisher-Rao shortest path from the data's spectrum to white noise; ε-prediction."""

    name = "spd"
    uses_spectrum = True
    variants = {kind: [{"perturb": p, "perturb_kind": kind} for p in PERTURBATIONS] for kind in PERTURB_KINDS}

    def __init__(
        self,
        image_shape: ImageShape,
        *,
        spectrum: Spectrum,
        levels: int = 4000,
        basis: Literal["fft", "dct"] = "fft",
        perturb: float = 0.0,
        perturb_kind: Literal["desync", "spectrum", "time"] = "desync",
    ) -> None:
        check_levels("SPD", levels, least=2)
        if perturb_kind not in PERTURB_KINDS:
            raise ConfigurationError(f"unknown perturb kind {perturb_kind!r}; valid: {', '.join(PERTURB_KINDS)}")
        if not abs(perturb) < 1:
            raise ConfigurationError(f"perturb must satisfy |p| < 1, got {perturb}")
        options = {
            "spectrum": spectrum.name,
            "levels": levels,
            "perturb": perturb,
            "perturb_kind": perturb_kind,
        }
        super().__init__(image_shape, get_basis(basis), options)
        self.levels = levels
        self.spectrum = spectrum.values(self.basis, image_shape)
        radius = self.basis.radius(image_shape[1], image_shape[2])
        log_radius = torch.log1p(radius)
        z = 2 * (log_radius - log_radius.min()) / (log_radius.max() - log_radius.min()) - 1
        ones = torch.ones_like(self.spectrum)
        exponent = {"desync": 1 + perturb * z, "spectrum": ones, "time": (1 + perturb) * ones}[perturb_kind]
        spectral_factor = 1 + perturb if perturb_kind == "spectrum" else 1.0
        self.exponent = exponent * ones
        log_spectrum = spectral_factor * self.spectrum.log()
        self.flat = log_spectrum.abs() < 1e-12
        self.log_spectrum = torch.where(self.flat, torch.ones_like(log_spectrum), log_spectrum)
        official = torch.linspace(1, levels - 1, levels, dtype=torch.float64)
        self.tau = torch.cat([torch.ones(1, dtype=torch.float64), (levels - official) / levels])
        self.constants = DeviceCopies(
            self.tau, self.exponent, self.log_spectrum, self.flat, torch.expm1(self.log_spectrum)
        )

    def label_parts(self) -> list[str]:
        """``desync+0.1`` for a perturbation (``p = 0`` is SPD, whatever the kind), then the other
        changed options."""
        changed: dict[str, Any] = self.changed_options()
        perturb = float(changed.pop("perturb", 0.0))
        changed.pop("perturb_kind", None)
        bend = [f"{self.options['perturb_kind']}{perturb:+g}"] if perturb else []
        return bend + [option_text(key, value) for key, value in changed.items()]

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``ᾱ = expm1(τ' L) / expm1(L)`` per frequency (``τ'`` where ``L = 0``)."""
        tau, exponent, log_spectrum, flat, denominator = self.constants.on(t.device)
        tau_t = batch_view(tau[t.long()])
        last = tau[-1]
        warped = last + (1 - last) * ((tau_t - last) / (1 - last)) ** exponent
        progress = torch.where(exponent == 1, tau_t, warped)
        alpha_bar = torch.where(flat, progress, torch.expm1(progress * log_spectrum) / denominator)
        return alpha_bar.sqrt(), (1 - alpha_bar).clamp_min(0.0).sqrt()
