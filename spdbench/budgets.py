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
  parameters; blurring diffusion has no official code).
- ``matched`` (ours): the fair GPU comparison: every process with DDPM's network and
  optimiser, 200k steps, 100 sampler steps.
Every budget trains every process with the same settings, except ``paper``, where each
process gets its own recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spdbench.errors import UserError

BUDGETS = ("smoke", "quick", "paper", "matched")


@dataclass(frozen=True)
class Budget:
    """What one run spends: network size, optimiser settings, sampler steps and samples.

    ``nfe``: network calls of the sampler (``None``: the process's full grid).
    ``eval_every``, ``eval_samples``: a small FID evaluation of the EMA network every so many
    training steps, for FID against training step."""

    name: str
    network: str
    steps: int
    batch: int
    lr: float
    warmup: int
    grad_clip: float | None
    ema_decay: float
    ema_warmup: bool
    flips: bool
    nfe: int | None
    samples: int
    sample_batch: int
    checkpoint_every: int
    eval_every: int
    eval_samples: int


SMOKE = Budget(
    name="smoke",
    network="smoke",
    steps=40,
    batch=32,
    lr=1e-3,
    warmup=5,
    grad_clip=1.0,
    ema_decay=0.99,
    ema_warmup=True,
    flips=False,
    nfe=10,
    samples=64,
    sample_batch=64,
    checkpoint_every=20,
    eval_every=20,
    eval_samples=32,
)

QUICK = Budget(
    name="quick",
    network="quick",
    steps=450,
    batch=64,
    lr=1e-3,
    warmup=50,
    grad_clip=1.0,
    ema_decay=0.995,
    ema_warmup=True,
    flips=False,
    nfe=20,
    samples=500,
    sample_batch=250,
    checkpoint_every=150,
    eval_every=150,
    eval_samples=200,
)

DDPM_RECIPE = Budget(
    name="paper",
    network="ddpm-cifar",
    steps=800_000,
    batch=128,
    lr=2e-4,
    warmup=5000,
    grad_clip=1.0,
    ema_decay=0.9999,
    ema_warmup=False,
    flips=True,
    nfe=None,
    samples=50_000,
    sample_batch=1000,
    checkpoint_every=10_000,
    eval_every=50_000,
    eval_samples=5000,
)

SPD_RECIPE = dataclasses.replace(
    DDPM_RECIPE, network="spd-cifar", batch=256, lr=1e-4, warmup=0, grad_clip=None
)

MATCHED = dataclasses.replace(DDPM_RECIPE, name="matched", steps=200_000, nfe=100, eval_every=20_000)


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
    return SPD_RECIPE if process == "spd" else DDPM_RECIPE
