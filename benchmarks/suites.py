"""The suites: lists of runs that share one protocol (network, training steps, batch, sampler
steps, sample count, FID features, seeds), run by ``benchmarks.harness``.

- ``smoke``: every process (and one perturbed SPD) at the smoke budget: proves the
  pipeline in a few minutes; its numbers say nothing about the processes.
- ``quick``: Fashion-MNIST on a 2-core CPU: ddpm, heat, blurring and spd with two seeds,
  and spd perturbed with ``desync`` and ``spectrum`` at p ∈ {−0.2, −0.1, 0.1, 0.2}.
- ``cifar``: CIFAR-10 on GPUs: each paper's recipe (``paper`` budget) and a matched-budget
  comparison in which every process gets the same network, steps and sampler budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from corruptions import PROCESSES
from spdbench.errors import UserError
from spdbench.runs import RunRequest

MAIN_PROCESSES = tuple(PROCESSES)  #: every registered process
PERTURBATIONS = (-0.2, -0.1, 0.1, 0.2)


@dataclass(frozen=True)
class Suite:
    """A named list of runs under one protocol."""

    name: str
    title: str
    dataset: str
    runs: tuple[RunRequest, ...]
    smoke: bool
    command: str


def comparison(
    dataset: str, budget: str, seeds: tuple[int, ...], kinds: tuple[str, ...], spectrum: str = "empirical"
) -> tuple[RunRequest, ...]:
    """The main processes for every seed, then SPD perturbed by each kind at every p (seed 0)."""
    shared = {"dataset": dataset, "spectrum": spectrum, "budget": budget}
    main = [RunRequest(p, seed=s, **shared) for s in seeds for p in MAIN_PROCESSES]  # type: ignore[arg-type]
    bent = [
        RunRequest("spd", {"perturb": p, "perturb_kind": kind}, seed=seeds[0], **shared)  # type: ignore[arg-type]
        for kind in kinds
        for p in PERTURBATIONS
    ]
    return tuple(main + bent)


SUITES: dict[str, Suite] = {
    "smoke": Suite(
        name="smoke",
        title="smoke: proves the pipeline; these numbers say nothing about the processes",
        dataset="fmnist",
        runs=(
            *(RunRequest(p, budget="smoke") for p in MAIN_PROCESSES),
            RunRequest("spd", {"perturb": 0.1, "perturb_kind": "desync"}, budget="smoke"),
        ),
        smoke=True,
        command="make smoke",
    ),
    "quick": Suite(
        name="quick",
        title="quick: Fashion-MNIST, CPU budget",
        dataset="fmnist",
        runs=comparison("fmnist", "quick", seeds=(0, 1), kinds=("desync", "spectrum")),
        smoke=False,
        command="make bench",
    ),
    "cifar": Suite(
        name="cifar",
        title="cifar: CIFAR-10, each paper's recipe and a matched budget",
        dataset="cifar10",
        runs=(
            *comparison("cifar10", "paper", seeds=(0,), kinds=()),
            *comparison("cifar10", "matched", seeds=(0,), kinds=("desync", "spectrum", "time")),
        ),
        smoke=False,
        command="make bench-cifar",
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise UserError(f"unknown suite {name!r}; valid: {', '.join(SUITES)}")
    return SUITES[name]
