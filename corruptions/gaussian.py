"""The frequency-diagonal linear Gaussian family and its one generic posterior sampler.

DDPM, blurring diffusion and SPD (with its perturbations) are all of the form

    u_t = a_t ⊙ u_0 + s_t ⊙ (B ε),        u = B x,

with one ``a_t``, ``s_t`` per frequency. The network predicts the pixel noise ``ε``.
Subclasses only give their schedule (``marginal_coefficients``) and time variable.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from corruptions.base import Corruption, Process, SamplerSettings, Step


class FrequencyDiagonalGaussian(Process):
    """``u_t = a_t ⊙ u_0 + s_t ⊙ B ε`` with ε-prediction and the posterior sampler."""

    def mix(self, terms: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """``B⁻¹ Σ_i c_i ⊙ B x_i`` for per-frequency coefficients ``c_i`` (float64, cast to the
        images' dtype); when every ``c_i`` is the same for all frequencies, no transform runs."""
        dtype = terms[0][1].dtype
        if all(c.shape[-2:] == (1, 1) for c, _ in terms):
            return sum(c.to(dtype) * x for c, x in terms)  # type: ignore[return-value]
        return self.basis.mix([(c.to(dtype), x) for c, x in terms])

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
        return _Transition(a_t, s_t, a_r, s_r).posterior()

    def reverse_step(
        self,
        net_out: Tensor,
        x_t: Tensor,
        t: Tensor,
        t_next: Tensor,
        noise: Tensor,
        settings: SamplerSettings,
    ) -> Step:
        """Predict ``x̂_0``, then draw ``u_r`` given ``(u_t, x̂_0)``, on any sub-grid ``r < t``.

        ``small``: ``u_r = a_r û_0 + sqrt(s_r² − σ²) ε̂ + σ z`` with ``ε̂ = (u_t − a_t û_0)/s_t``
        and ``σ² = η² var``; at ``η = 1`` this is exactly the posterior, at ``η = 0`` the
        deterministic (DDIM-like) path. ``large``: the posterior mean plus
        ``η s_{t|r} z``."""
        device = x_t.device
        a_t, s_t = self.marginal_coefficients(t.reshape(1).to(device))
        x0_hat = self._x0_from(net_out, x_t, a_t, s_t)
        if settings.clip_x0:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        if int(t_next == 0):
            return Step(x_next=x0_hat, x0_hat=x0_hat)
        a_r, s_r = self.marginal_coefficients(t_next.reshape(1).to(device))
        transition = _Transition(a_t, s_t, a_r, s_r)
        c_t, c_0, var = transition.posterior()
        if settings.variance == "small":
            std = settings.eta * var.sqrt()
            c_t = (s_r.square() - std.square()).clamp_min(0.0).sqrt() / s_t
            c_0 = a_r - c_t * a_t
        else:
            std = settings.eta * transition.s2_tr.sqrt()
        x_next = self.mix([(c_t, x_t), (c_0, x0_hat), (std, noise)])
        return Step(x_next=x_next, x0_hat=x0_hat)

    def prior(self, noise: Tensor, reference: Tensor) -> Tensor:
        """``N(0, I)``: white noise (the data batch is not used)."""
        return noise


class _Transition:
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
