"""The frequency-diagonal linear Gaussian family and its closed-form posterior.

DDPM, blurring diffusion and SPD (with its perturbations) are all of the form

    u_t = a_t ⊙ u_0 + s_t ⊙ (B ε),        u = B x,

with one ``a_t``, ``s_t`` per frequency. The network predicts the pixel noise ``ε``.
Subclasses only give their schedule (``marginal_coefficients``) and time variable.
"""

from __future__ import annotations

from torch import Tensor

from corruptions.base import Corruption, Process


class FrequencyDiagonalGaussian(Process):
    """``u_t = a_t ⊙ u_0 + s_t ⊙ B ε`` with ε-prediction and the closed-form posterior."""

    def corrupt(self, x0: Tensor, t: Tensor, noise: Tensor) -> Corruption:
        """``x_t = B⁻¹(a_t ⊙ B x0 + s_t ⊙ B ε)``; the target is ``ε``."""
        a, s = self.marginal_coefficients(t.to(x0.device))
        return Corruption(x_t=self.mix([(a, x0), (s, noise)]), target=noise)

    def predict_x0(self, net_out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """``û_0 = (u_t − s_t ⊙ B ε̂) / a_t`` per frequency."""
        a, s = self.marginal_coefficients(t.reshape(-1).to(x_t.device))
        return self._x0_from(net_out, x_t, a, s)

    def _x0_from(self, net_out: Tensor, x_t: Tensor, a: Tensor, s: Tensor) -> Tensor:
        return self.mix([(1.0 / a, x_t), (-s / a, net_out.to(x_t.dtype))])

    def net_output_from_x0(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """``ε = B⁻¹((u_t − a_t ⊙ u_0) / s_t)``."""
        a, s = self.marginal_coefficients(t.reshape(-1).to(x_t.device))
        return self.mix([(1.0 / s, x_t), (-a / s, x0)])

    def posterior(self, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``q(u_r | u_t, u_0) = N(c_t u_t + c_0 u_0, var)`` per frequency, for ``r < t``:
        ``a_{t|r} = a_t / a_r``, ``s²_{t|r} = s_t² − a_{t|r}² s_r²`` (clamped at 0),
        ``var = 1 / (1/s_r² + a_{t|r}²/s²_{t|r})``,
        ``mean = var (a_{t|r} u_t / s²_{t|r} + a_r u_0 / s_r²)``, written without divisions
        by ``s_r`` so that ``s_r = 0`` (the data) gives ``mean = u_0``, ``var = 0``.
        Returns ``(c_t, c_0, var)``, float64."""
        a_t, s_t = self.marginal_coefficients(t.reshape(1))
        a_r, s_r = self.marginal_coefficients(r.reshape(1))
        return Transition(a_t, s_t, a_r, s_r).posterior()

    def prior(self, noise: Tensor, reference: Tensor) -> Tensor:
        """``N(0, I)``: white noise (the data batch is not used)."""
        return noise


class Transition:
    """From ``r`` to ``t > r``: ``a_{t|r} = a_t / a_r``, ``s²_{t|r} = s_t² − a_{t|r}² s_r²``."""

    def __init__(self, a_t: Tensor, s_t: Tensor, a_r: Tensor, s_r: Tensor) -> None:
        self.a_r, self.s_r = a_r, s_r
        self.a_tr = a_t / a_r
        self.s2_tr = (s_t.square() - self.a_tr.square() * s_r.square()).clamp_min(0.0)

    def posterior(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(c_t, c_0, var)`` of ``q(u_r | u_t, u_0)`` (see ``posterior``)."""
        s2_r = self.s_r.square()
        denom = self.s2_tr + self.a_tr.square() * s2_r
        return self.a_tr * s2_r / denom, self.a_r * self.s2_tr / denom, s2_r * self.s2_tr / denom
