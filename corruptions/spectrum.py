"""Power spectra: the per-frequency second moment ``D_k = E|u_k|²`` of the data in a basis.

SPD's schedule, the Fisher path analysis and the oracle denoiser all model the data as a
zero-mean Gaussian with covariance ``diag(D)`` in a basis. A spectrum is either measured
from images (``estimate_spectrum``, streamed over batches) or a radial law
``D(r) = c1 / |c2 + r|^m`` (the official SPD code's CIFAR-10 constants, or a fit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from corruptions.errors import ConfigurationError
from corruptions.transforms import Basis

ImageShape = tuple[int, int, int]


def check_spectrum(values: Tensor, image_shape: ImageShape) -> Tensor:
    """``values`` as float64 ``C|1 × H × W``, refused unless finite and positive."""
    values = values.to(torch.float64)
    channels, height, width = image_shape
    if values.ndim != 3 or values.shape[1:] != (height, width) or values.shape[0] not in (1, channels):
        raise ConfigurationError(f"spectrum of shape {tuple(values.shape)} does not fit images {image_shape}")
    if not torch.isfinite(values).all() or (values <= 0).any():
        raise ConfigurationError("spectrum entries must be finite and positive")
    return values


class Spectrum(ABC):
    """A power spectrum that can be evaluated in any basis."""

    name: str

    @abstractmethod
    def values(self, basis: Basis, image_shape: ImageShape) -> Tensor:
        """``D_k`` for every coefficient of ``basis``: float64 ``C|1 × H × W``, positive."""


@dataclass(frozen=True)
class RadialPowerLaw(Spectrum):
    """``D(r) = c1 / |c2 + r|^m`` with ``r`` the basis's frequency radius, the same for every
    channel."""

    c1: float
    c2: float
    m: float
    name: str = "radial"

    def values(self, basis: Basis, image_shape: ImageShape) -> Tensor:
        radius = basis.radius(image_shape[1], image_shape[2])
        return check_spectrum((self.c1 / (self.c2 + radius).abs() ** self.m)[None], image_shape)


#: The official SPD code's hard-coded CIFAR-10 spectrum.
PAPER_SPECTRUM = RadialPowerLaw(c1=1.59, c2=0.0086, m=2.0, name="paper")


class MeasuredSpectrum(Spectrum):
    """A spectrum measured from data, once per basis: ``measure(basis)`` is called on first use."""

    def __init__(self, name: str, measure: Callable[[Basis], Tensor]) -> None:
        self.name = name
        self._measure = measure
        self._by_basis: dict[str, Tensor] = {}

    def values(self, basis: Basis, image_shape: ImageShape) -> Tensor:
        if basis.name not in self._by_basis:
            self._by_basis[basis.name] = self._measure(basis)
        return check_spectrum(self._by_basis[basis.name], image_shape)


def estimate_spectrum(batches: Iterable[Tensor], basis: Basis) -> Tensor:
    """``D_{c,k} = mean over images of |(B x)_{c,k}|²``, streamed: float64 ``C × H × W``."""
    total: Tensor | None = None
    count = 0
    for batch in batches:
        power = basis.forward(batch.to(torch.float64)).abs().square().sum(0)
        total = power if total is None else total + power
        count += batch.shape[0]
    if total is None or count == 0:
        raise ConfigurationError("cannot estimate a spectrum from no images")
    return total / count


def radial_bins(basis: Basis, height: int, width: int) -> Tensor:
    """Ring index of every coefficient: its radius rounded to whole cycles, int64 ``H × W``."""
    return basis.radius(height, width).round().long()


def radial_average(values: Tensor, basis: Basis) -> Tensor:
    """Average ``values`` (``C × H × W``) over the coefficients of each ring, per channel."""
    bins = radial_bins(basis, values.shape[-2], values.shape[-1]).flatten()
    flat = values.flatten(1)
    sums = torch.zeros(flat.shape[0], int(bins.max()) + 1, dtype=flat.dtype).index_add_(1, bins, flat)
    counts = torch.bincount(bins).to(flat.dtype)
    return (sums / counts)[:, bins].reshape(values.shape)


def fit_power_law(values: Tensor, basis: Basis, name: str = "fit") -> RadialPowerLaw:
    """Least-squares fit of ``log D = log c1 − m log(c2 + r)`` to the channel-mean, ring-averaged
    spectrum, one point per ring: ``(log c1, m)`` in closed form for each ``c2`` on a log grid,
    keeping the best."""
    height, width = values.shape[-2:]
    bins = radial_bins(basis, height, width).flatten()
    mean = values.to(torch.float64).mean(0).flatten()
    counts = torch.bincount(bins)
    rings = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, bins, mean)[counts > 0] / counts[counts > 0]
    ring_radius = torch.zeros(len(counts), dtype=torch.float64).index_add_(
        0, bins, basis.radius(height, width).flatten()
    )[counts > 0] / counts[counts > 0]
    target = rings.log()
    best: tuple[float, float, float, float] | None = None
    for c2 in torch.logspace(-4, 1, 101, dtype=torch.float64).tolist():
        design = torch.stack([torch.ones_like(ring_radius), -(c2 + ring_radius).log()], 1)
        solution = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
        error = float((design @ solution - target).square().sum())
        if best is None or error < best[0]:
            best = (error, float(solution[0].exp()), c2, float(solution[1]))
    assert best is not None
    return RadialPowerLaw(c1=best[1], c2=best[2], m=best[3], name=name)
