"""Named budgets: the network, training and sampling settings a run gets.

- ``smoke`` proves the pipeline (about a minute a run on a 2-core CPU); its numbers say
  nothing about the processes.
- ``quick`` is the CPU comparison budget on Fashion-MNIST, sized from measured costs on a
  2-core machine (``benchmarks/train_speed.py``; the 2026-11-22 reference run): 0.32 s a
  training step at batch 64 and about 16 s to sample 500 images with 20 calls, so a run
  of 450 steps with two 200-image evaluations costs about 3 minutes and the 16 runs of the
  ``quick`` suite about 50, leaving room for training the feature classifier once.
- ``paper`` is each paper's recipe on a GPU. Published: DDPM (Ho et al. 2020: 800k steps,
  batch 128, Adam lr 2e-4, 5000 warm-up steps, clip 1, EMA 0.9999, flips, 1000 sampling
  steps); SPD (official code: guided-diffusion network, AdamW lr 1e-4, batch 256, EMA
  0.9999, flips, all 4000 steps; no warm-up or clipping in guided-diffusion). Ours, stated:
  SPD's step count (not in our reference sheet; we give it DDPM's 800k), and heat and
  blurring trained with DDPM's recipe and network (IHDM's official network has 61 M
  parameters; blurring diffusion has no official code). Each samples as its paper did:
  DDPM ancestral with the fixed-large variance, x̂_0 clipped, all 1000 levels; SPD ancestral,
  fixed-large, unclipped, all 4000 levels; heat IHDM's δ-sampler over all K levels; blurring
  the posterior (small-variance ancestral) sampler over its published 1000 steps (clipping
  x̂_0 is ours).
- ``matched`` (ours): the fair GPU comparison: every process with DDPM's network and
  optimiser, 200k steps, 100 sampler steps.
- ``short`` (ours): ``matched`` cut to what a researcher can afford on one GPU: 15k steps,
  an EMA decay of 0.9995 (with warm-up) that forgets the early weights within the run, 10,000
  samples for FID (biased upwards against 50,000, the same for every process). Its cost per run,
  counted with ``torch.utils.flop_counter`` on this package's ``ddpm-cifar`` network (37.3 GFLOP a
  training image, 12.4 GFLOP a sampler call on one image), is 71.7 PFLOP of training and 14.9 of
  sampling: 29 minutes at an achieved 50 TFLOP/s (5 % of an H100's dense bf16 peak, a
  deliberately low figure), so the 12 runs of the ``cifar-short`` suite take about 5.8 GPU-hours
  (``SHORT_ASSUMED_FLOPS``; the harness measures the real rate before it starts).
Every budget trains every process with the same settings, except ``paper``, where each
process gets its own recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from spdbench.errors import UserError
from spdbench.solvers import SamplerSettings

BUDGETS = ("smoke", "quick", "paper", "matched", "short")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; ``dataclasses.asdict`` gives its JSON form.

    Attributes:
        train_steps: optimizer steps to train for (in total, counting those of a resumed run).
        batch: the global batch size, split evenly across the processes of a distributed run.
        lr: the AdamW learning rate after warm-up.
        warmup: steps of linear learning-rate warm-up (step ``k`` uses ``lr * min(1, k / warmup)``).
        grad_clip: the gradient-norm clipping threshold; ``None`` for no clipping.
        ema_decay: decay of the exponential moving average of the weights.
        ema_warmup: use :class:`models.EMA`'s warm-up of the decay.
        weight_decay: AdamW's decoupled weight decay.
        seed: seeds the data order, the times and noise, and dropout.
        flips: flip each training image left-right with probability ½ (DDPM's and SPD's recipes).
        checkpoint_every: write a checkpoint every this many steps (and always at the end); a
            multiple of ``log_every``, so that a run resumed from a checkpoint logs the windows
            of steps an uninterrupted one does.
        log_every: write a log entry every this many steps (and always at the end).
        bf16: run the network under bf16 autocast; ``None``: on CUDA only (on this project's CPU,
            without bf16 instructions, it is slower; see ``benchmarks/train_speed.py``).
        compile: ``torch.compile`` the network; ``None``: on CUDA only (on an H200 it takes a
            bf16 step of ``ddpm-cifar`` at batch 128 from 78 to 61 ms after about 80 s of
            compiling, ``results/perf/train_speed-h200.txt``; on this project's CPU it is
            slower, ``results/perf/train_speed-cpu.txt``).
        channels_last: keep the network's weights and inputs in channels-last memory format.
    """

    train_steps: int
    batch: int = 128
    lr: float = 2e-4
    warmup: int = 5000
    grad_clip: float | None = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = False
    weight_decay: float = 0.0
    seed: int = 0
    flips: bool = False
    checkpoint_every: int = 5000
    log_every: int = 10
    bf16: bool | None = None
    compile: bool | None = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        """Reject out-of-range settings with a message that names them."""
        problems = [
            f"{name} must be at least {low}, got {value}"
            for name, low in (
                ("train_steps", 1), ("batch", 1), ("warmup", 0), ("checkpoint_every", 1), ("log_every", 1)
            )
            if (value := getattr(self, name)) < low
        ]
        if not problems and self.checkpoint_every % self.log_every:  # a resumed run logs the windows it would have
            problems.append(
                f"checkpoint_every must be a multiple of log_every, got {self.checkpoint_every} and {self.log_every}"
            )
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be positive or None, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay <= 1.0:
            problems.append(f"ema_decay must lie in [0, 1], got {self.ema_decay}")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay must not be negative, got {self.weight_decay}")
        if problems:
            raise UserError("invalid training settings: " + "; ".join(problems))

    def resolved(self, device: torch.device) -> TrainConfig:
        """This configuration with the automatic choices made for ``device``."""
        cuda = device.type == "cuda"
        return dataclasses.replace(
            self,
            bf16=cuda if self.bf16 is None else self.bf16,
            compile=cuda if self.compile is None else self.compile,
        )


@dataclass(frozen=True)
class Budget:
    """What one run spends: network size, training settings, sampler calls and samples.

    ``train``: the training settings (its seed is the run's, set when a run is resolved).
    ``samplers``: ``(solver, grid)`` pairs in order of preference; a run gets the first whose
    solver serves its process (``spdbench.solvers``), on that time grid (``spdbench.grids``).
    ``exceptions``: ``(process, solver, grid)``: a process that gets another sampler, because the
    budget's would not suit it (each with its measured reason where it is defined).
    No budget uses the grid ``auto`` (a run may: the solver and grid that ``spdbench samplers``'
    exact measure ranks best with a network error of std 0.1): on the quick networks its choice
    (DPM-Solver++(3M) for DDPM and SPD) lost FID to the posterior sampler at 20 calls
    (``results/quick-auto-sampler``): a white error of fixed size adds variance, which that
    measure credits to a sampler that loses variance, and the networks' errors are larger.
    ``nfe``: network calls of the sampler (``None``: the process's full grid, all its levels).
    ``sampler_settings``: η, the variance and clipping, for the solvers that use them.
    ``eval_every``, ``eval_samples``: a small FID evaluation of the EMA network every so many
    training steps, for FID against training step."""

    name: str
    network: str
    train: TrainConfig
    samplers: tuple[tuple[str, str], ...]
    exceptions: tuple[tuple[str, str, str], ...]
    nfe: int | None
    sampler_settings: SamplerSettings
    samples: int
    sample_batch: int
    eval_every: int
    eval_samples: int


#: The posterior sampler for the frequency-diagonal Gaussian processes, IHDM's for heat: the
#: papers' samplers, and every run's before solvers were a choice ("today's" in spdbench samplers).
TODAYS_SAMPLERS = ("ancestral", "ihdm")
POSTERIOR_SAMPLERS = tuple((name, "native") for name in TODAYS_SAMPLERS)
#: The few-step samplers of the smoke, quick, matched and short budgets: SDE-DPM-Solver++(2M) on
#: the log-SNR grid for the frequency-diagonal Gaussian processes (on the quick networks at 20
#: calls, seed 0: DDPM 120.9 and SPD 127.6, against 160.9 and 154.6 with the posterior sampler on
#: the native grid and 119.7 and 130.1, the best either reached with it at up to 1000 and 200
#: calls; results/quick-auto-sampler), IHDM's on the native grid for heat (it has no other).
FEW_STEP_SAMPLERS = (("sdedpmpp2m", "logsnr"), ("ihdm", "native"))
#: Blurring diffusion keeps the posterior sampler on its native grid: at 20 calls SDE-DPM-Solver++(2M)
#: amplifies a white network error 7.2e4 times (on the log-SNR grid) where the posterior sampler
#: amplifies it 38 times, and with an error of std 0.1 its W2² to the data is 693 against 0.11
#: (``spdbench samplers``, results/samplers/fmnist-28): its ``d_min`` frequency scaling divides
#: network errors by up to 1000, and a multistep solver carries them on.
FEW_STEP_EXCEPTIONS = (("blurring", "ancestral", "native"),)
AUTO = "auto"  #: as a run's grid: the solver and grid measured best

SMOKE = Budget(
    name="smoke",
    network="smoke",
    train=TrainConfig(
        train_steps=40, batch=32, lr=1e-3, warmup=5, grad_clip=1.0, ema_decay=0.99, ema_warmup=True, checkpoint_every=20
    ),
    samplers=FEW_STEP_SAMPLERS,
    exceptions=FEW_STEP_EXCEPTIONS,
    nfe=10,
    sampler_settings=SamplerSettings(),
    samples=64,
    sample_batch=64,
    eval_every=20,
    eval_samples=32,
)

QUICK = Budget(
    name="quick",
    network="quick",
    train=TrainConfig(
        train_steps=450, batch=64, lr=1e-3, warmup=50, grad_clip=1.0, ema_decay=0.995, ema_warmup=True,
        checkpoint_every=150,
    ),
    samplers=FEW_STEP_SAMPLERS,
    exceptions=FEW_STEP_EXCEPTIONS,
    nfe=20,
    sampler_settings=SamplerSettings(),
    samples=500,
    sample_batch=250,
    eval_every=150,
    eval_samples=200,
)

DDPM_RECIPE = Budget(
    name="paper",
    network="ddpm-cifar",
    train=TrainConfig(
        train_steps=800_000, batch=128, lr=2e-4, warmup=5000, grad_clip=1.0, ema_decay=0.9999, ema_warmup=False,
        flips=True, checkpoint_every=10_000, compile=None,
    ),
    samplers=POSTERIOR_SAMPLERS,
    exceptions=(),
    nfe=None,
    sampler_settings=SamplerSettings(variance="large", clip_x0=True),
    samples=50_000,
    sample_batch=1000,
    eval_every=50_000,
    eval_samples=5000,
)

SPD_RECIPE = dataclasses.replace(
    DDPM_RECIPE,
    network="spd-cifar",
    train=dataclasses.replace(DDPM_RECIPE.train, batch=256, lr=1e-4, warmup=0, grad_clip=None),
    sampler_settings=SamplerSettings(variance="large", clip_x0=False),
)

BLURRING_RECIPE = dataclasses.replace(DDPM_RECIPE, sampler_settings=SamplerSettings(variance="small", clip_x0=True))

MATCHED = dataclasses.replace(
    DDPM_RECIPE,
    name="matched",
    train=dataclasses.replace(DDPM_RECIPE.train, train_steps=200_000),
    samplers=FEW_STEP_SAMPLERS,
    exceptions=FEW_STEP_EXCEPTIONS,
    nfe=100,
    sampler_settings=SamplerSettings(),
    eval_every=20_000,
)

SHORT = dataclasses.replace(
    MATCHED,
    name="short",
    train=dataclasses.replace(MATCHED.train, train_steps=15_000, warmup=1000, ema_decay=0.9995, ema_warmup=True),
    samples=10_000,
    eval_every=5000,
    eval_samples=1000,
)
SHORT_ASSUMED_FLOPS = 50e12
"""The achieved rate (FLOP/s) the ``short`` budget was sized for: 5 % of an H100's dense bf16 peak."""


def resolve_budget(name: str, process: str) -> Budget:
    """The budget ``name`` for ``process`` (only ``paper`` differs by process)."""
    if name not in BUDGETS:
        raise UserError(f"unknown budget {name!r}; valid: {', '.join(BUDGETS)}")
    if name == "smoke":
        return SMOKE
    if name == "quick":
        return QUICK
    if name == "matched":
        return MATCHED
    if name == "short":
        return SHORT
    return {"spd": SPD_RECIPE, "blurring": BLURRING_RECIPE}.get(process, DDPM_RECIPE)
