"""The oracle denoiser: the best possible network when the data really are Gaussian.

If ``u_0 ~ N(0, diag D)`` in basis ``B`` then, per frequency,
``E[u_0 | u_t] = a_t D / (a_t² D + s_t²) · u_t``. Converted to a process's own network
output, it stands where the network goes, so schedules, posteriors and samplers can be
checked without training.
"""

from __future__ import annotations

from torch import Tensor

from corruptions.base import Process


def gaussian_images(spectrum: Tensor, process: Process, noise: Tensor) -> Tensor:
    """Images whose coefficients in the process's basis are ``N(0, D)``: ``B⁻¹(sqrt(D) ⊙ B ε)``."""
    basis = process.basis
    return basis.inverse(spectrum.sqrt().to(noise.dtype) * basis.forward(noise))


class OracleDenoiser:
    """``(x_t, t) ↦`` the network output that predicts ``E[x_0 | x_t]`` under ``N(0, diag D)``."""

    def __init__(self, process: Process, spectrum: Tensor) -> None:
        self.process = process
        self.spectrum = spectrum

    def posterior_mean(self, x_t: Tensor, t: Tensor) -> Tensor:
        a, s = self.process.marginal_coefficients(t.reshape(-1))
        gain = (a * self.spectrum / (a.square() * self.spectrum + s.square())).to(x_t.dtype)
        basis = self.process.basis
        return basis.inverse(gain * basis.forward(x_t))

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.process.net_output_from_x0(self.posterior_mean(x_t, t), x_t, t)
