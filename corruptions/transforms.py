"""Orthonormal 2-D transforms applied per channel, and the frequency grids they index.

A basis ``B`` maps an image ``x`` (``... × H × W``) to coefficients ``u = B x`` and back.
Both bases here are orthonormal, so white pixel noise stays white noise in either basis
and a per-coefficient multiplier that is real (and, for the FFT, symmetric under
``k → −k``) maps real images to real images.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

from corruptions.errors import ConfigurationError


class Basis(ABC):
    """An orthonormal per-channel 2-D transform with a notion of frequency radius."""

    name: str

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """``u = B x`` over the last two dimensions."""

    @abstractmethod
    def inverse(self, u: Tensor) -> Tensor:
        """``x = Bᵀ u`` (real images)."""

    @abstractmethod
    def radius(self, height: int, width: int) -> Tensor:
        """Frequency radius of every coefficient, in cycles per image, float64 ``H × W``."""

    def mix(self, terms: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """``B⁻¹ Σ_i c_i ⊙ B x_i`` for real per-coefficient multipliers ``c_i``."""
        return self.inverse(sum(c * self.forward(x) for c, x in terms))  # type: ignore[arg-type]


@lru_cache(maxsize=32)
def dct_matrix(n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Orthonormal type-II DCT matrix ``M[k, i] = c_k cos(π (2i + 1) k / 2n)``,
    ``c_0 = sqrt(1/n)``, ``c_k = sqrt(2/n)``; built in float64, cast once per device and dtype."""
    i = torch.arange(n, dtype=torch.float64)
    k = i[:, None]
    m = torch.cos(math.pi * (2 * i[None, :] + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.to(device=device, dtype=dtype)


class DCT(Basis):
    """Type-II DCT with ``norm='ortho'``, computed as two small matrix products
    ``u = M_H x M_Wᵀ``."""

    name = "dct"

    def forward(self, x: Tensor) -> Tensor:
        mh = dct_matrix(x.shape[-2], x.device, x.dtype)
        mw = dct_matrix(x.shape[-1], x.device, x.dtype)
        return mh @ x @ mw.T

    def inverse(self, u: Tensor) -> Tensor:
        mh = dct_matrix(u.shape[-2], u.device, u.dtype)
        mw = dct_matrix(u.shape[-1], u.device, u.dtype)
        return mh.T @ u @ mw

    def radius(self, height: int, width: int) -> Tensor:
        """A DCT index counts half cycles: ``r = sqrt(i² + j²) / 2`` (for square images)."""
        i = torch.arange(height, dtype=torch.float64)[:, None] * (max(height, width) / height)
        j = torch.arange(width, dtype=torch.float64)[None, :] * (max(height, width) / width)
        return torch.sqrt(i**2 + j**2) / 2


class FFT(Basis):
    """``torch.fft.fft2(x, norm='ortho')``; coefficients are complex with Hermitian symmetry."""

    name = "fft"

    def forward(self, x: Tensor) -> Tensor:
        return torch.fft.fft2(x, norm="ortho")

    def inverse(self, u: Tensor) -> Tensor:
        return torch.fft.ifft2(u, norm="ortho").real

    def mix(self, terms: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """Through ``rfft2``: the multipliers are symmetric under ``k → −k`` (they depend on
        ``|k|``), so half the spectrum carries them and the result is real."""
        width = terms[0][1].shape[-1]
        half = width // 2 + 1
        mixed = sum(c[..., :half] * torch.fft.rfft2(x, norm="ortho") for c, x in terms)
        return torch.fft.irfft2(mixed, s=terms[0][1].shape[-2:], norm="ortho")  # type: ignore[arg-type]

    def radius(self, height: int, width: int) -> Tensor:
        """``r = |k|`` with ``k`` from ``fftfreq(N, 1/N)`` (signed integers)."""
        i = torch.fft.fftfreq(height, 1.0 / height, dtype=torch.float64)[:, None]
        j = torch.fft.fftfreq(width, 1.0 / width, dtype=torch.float64)[None, :]
        i = i * (max(height, width) / height)
        j = j * (max(height, width) / width)
        return torch.sqrt(i**2 + j**2)


BASES: dict[str, Basis] = {"dct": DCT(), "fft": FFT()}


def get_basis(name: str) -> Basis:
    if name not in BASES:
        raise ConfigurationError(f"unknown basis {name!r}; valid: {', '.join(BASES)}")
    return BASES[name]


def heat_eigenvalues(height: int, width: int) -> Tensor:
    """Eigenvalues of the negative Neumann Laplacian in the DCT basis,
    ``Λ_ij = π² (i²/H² + j²/W²)``, float64 ``H × W``."""
    i = torch.arange(height, dtype=torch.float64)[:, None]
    j = torch.arange(width, dtype=torch.float64)[None, :]
    return math.pi**2 * (i**2 / height**2 + j**2 / width**2)
