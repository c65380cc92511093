"""The interface every corruption process implements.

A process is pure tensor maths: it never sees the network, the trainer or the data
loader. Randomness comes in as tensors the caller draws (``noise``), so a process call is
a deterministic function of its arguments and the caller controls seeding (per image,
if it wants any subset to be reproducible).

Time: each process has its own time variable ``t`` (an integer level for discrete
processes, a float in ``[0, 1]`` for continuous ones). ``t = 0`` is the data. The network
is conditioned on ``network_time(t)``, the fraction of the path in ``[0, 1]``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from corruptions.errors import ConfigurationError, NfeRangeError
from corruptions.transforms import Basis

ImageShape = tuple[int, int, int]


@dataclass(frozen=True)
class Corruption:
    """A corrupted batch and what the network should output for it."""

    x_t: Tensor
    target: Tensor


class Process(ABC):
    """A forward corruption process: its marginals, the network's target, and what a sampler
    needs of it (time grid, prior, ``predict_x0``); the samplers themselves are
    ``spdbench.solvers``."""

    name: ClassVar[str]
    #: True when the constructor takes the data's power spectrum (``spectrum=``).
    uses_spectrum: ClassVar[bool] = False
    #: Named families of options worth comparing with the defaults (a process's ablations, such
    #: as SPD's perturbations): ``spdbench paths`` measures each and draws each family together.
    variants: ClassVar[dict[str, list[dict[str, Any]]]] = {}

    def __init__(self, image_shape: ImageShape, basis: Basis, options: dict[str, Any]) -> None:
        channels, height, width = image_shape
        if channels < 1 or height < 2 or width < 2:
            raise ConfigurationError(f"image shape must be C×H×W with H, W ≥ 2, got {image_shape}")
        self.image_shape: ImageShape = (channels, height, width)
        self.basis = basis
        self.options = options

    def config(self) -> dict[str, Any]:
        """The resolved options and the label, as written into a run's configuration."""
        return {"process": self.name, "label": self.label(), "basis": self.basis.name, **self.options}

    @classmethod
    def option_defaults(cls, image_shape: ImageShape) -> dict[str, Any]:
        """The value each keyword option of the constructor takes when it is not given, for
        images of ``image_shape`` (options without a default, such as a spectrum, are left out)."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}

    def changed_options(self) -> dict[str, Any]:
        """The options (the basis among them, where it is one) whose values differ from
        ``option_defaults``."""
        defaults = self.option_defaults(self.image_shape)
        options = {"basis": self.basis.name, **self.options}
        return {key: value for key, value in options.items() if key in defaults and defaults[key] != value}

    def label_parts(self) -> list[str]:
        """What the label adds to the name: ``key=value`` for each changed option."""
        return [option_text(key, value) for key, value in self.changed_options().items()]

    def label(self) -> str:
        """The process's short name, from its options: ``ddpm``, ``ddpm-schedule=cosine``,
        ``spd-desync+0.1``. Run ids, tables, plots, path reports and pictures all use it."""
        return "-".join([self.name, *self.label_parts()])

    @abstractmethod
    def sample_time(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Training times for a batch of ``n`` (on the generator's device)."""

    @abstractmethod
    def time_grid(self, nfe: int | None = None) -> Tensor:
        """Sampling times, strictly decreasing, from the prior's time down to ``0`` (the data);
        ``nfe + 1`` entries, so ``nfe`` network calls. ``None`` gives the full grid: every one
        of the process's ``levels``."""

    @abstractmethod
    def network_time(self, t: Tensor) -> Tensor:
        """What the network is conditioned on: the fraction of the path, float32 in ``[0, 1]``."""

    @abstractmethod
    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Per-frequency ``a_t``, ``s_t`` (float64, ``len(t) × C|1 × H|1 × W|1``) in ``self.basis``:
        the marginal is ``u_t = a_t ⊙ u_0 + s_t ⊙ B ε``."""

    @abstractmethod
    def corrupt(self, x0: Tensor, t: Tensor, noise: Tensor) -> Corruption:
        """``x_t`` from clean images ``x0`` at per-image times ``t``, with pixel noise ``noise``."""

    @abstractmethod
    def predict_x0(self, net_out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The clean image the network output implies."""

    @abstractmethod
    def net_output_from_x0(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The network output that would predict ``x0`` at ``(x_t, t)``: the inverse of
        ``predict_x0``, used to put an analytic denoiser where the network goes."""

    @abstractmethod
    def prior(self, noise: Tensor, reference: Tensor) -> Tensor:
        """The sampler's starting state from pixel noise and a batch of training images of the
        same shape (only data-dependent priors use them)."""

    def mix(self, terms: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """``B⁻¹ Σ_i c_i ⊙ B x_i`` for per-frequency coefficients ``c_i`` (float64, cast to the
        images' dtype); when every ``c_i`` is the same for all frequencies, no transform runs."""
        dtype = terms[0][1].dtype
        if all(c.shape[-2:] == (1, 1) for c, _ in terms):
            return sum(c.to(dtype) * x for c, x in terms)  # type: ignore[return-value]
        return self.basis.mix([(c.to(dtype), x) for c, x in terms])

    def loss(self, net_out: Tensor, corruption: Corruption) -> Tensor:
        """Per-image loss ``mean over pixels of (net_out − target)²``."""
        return (net_out.float() - corruption.target.float()).square().flatten(1).mean(1)


def option_text(key: str, value: Any) -> str:
    """``key=value``, a float in its shortest form (``sigma=0.05``)."""
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def check_nfe(nfe: int, levels: int) -> None:
    """Refuse ``nfe`` outside ``[1, levels]``: a process's full grid, all its levels, is the most
    network calls its sampler takes (for a continuous-time process, raise its ``levels``)."""
    if not 1 <= nfe <= levels:
        raise NfeRangeError(nfe, levels, "the levels; the process option levels sets them")


def discrete_time_grid(levels: int, nfe: int | None) -> Tensor:
    """Levels ``L … 1`` evenly thinned to ``nfe`` of them, then ``0``: int64, decreasing."""
    if nfe is None:
        nfe = levels
    check_nfe(nfe, levels)
    grid = torch.linspace(levels, 1, nfe, dtype=torch.float64).round().long()
    return torch.cat([grid, torch.zeros(1, dtype=torch.long)])


#: The most levels a discrete process takes (25 times SPD's 4000): its per-level tables stay small.
MAX_LEVELS = 100_000


def check_levels(process: str, levels: int, least: int = 1) -> None:
    """Refuse ``levels`` outside ``[least, MAX_LEVELS]``."""
    if not least <= levels <= MAX_LEVELS:
        raise ConfigurationError(f"{process} needs between {least} and {MAX_LEVELS} levels, got {levels}")


class DiscreteTime:
    """Time for processes with integer levels ``0 … L`` (``0`` the data): training draws levels
    uniformly from ``{1 … L}``, sampling walks a thinned grid, the network sees ``t / L``."""

    levels: int

    def sample_time(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randint(1, self.levels + 1, (n,), generator=generator, device=device)

    def time_grid(self, nfe: int | None = None) -> Tensor:
        return discrete_time_grid(self.levels, nfe)

    def network_time(self, t: Tensor) -> Tensor:
        return t.float() / self.levels


class DeviceCopies:
    """Constants a process builds once (in float64), copied once to each device that uses them."""

    def __init__(self, *tensors: Tensor) -> None:
        self._built = tensors
        self._copies: dict[torch.device, tuple[Tensor, ...]] = {}

    def on(self, device: torch.device) -> tuple[Tensor, ...]:
        if device not in self._copies:
            self._copies[device] = tuple(tensor.to(device) for tensor in self._built)
        return self._copies[device]


def batch_view(values: Tensor) -> Tensor:
    """A per-image vector as ``N × 1 × 1 × 1``, to broadcast over images."""
    return values.reshape(-1, 1, 1, 1)
