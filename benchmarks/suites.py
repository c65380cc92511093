"""The suites: lists of runs that share one protocol (network, training steps, batch, sampler
steps, sample count, FID features, seeds), run by ``benchmarks.harness``.

- ``smoke``: every process (and one perturbed SPD) at the smoke budget: proves the
  pipeline in a few minutes; its numbers say nothing about the processes.
- ``quick``: Fashion-MNIST on a 2-core CPU: ddpm, heat, blurring and spd with four seeds.
- ``perturb``: the same budget: spd, and spd perturbed with ``desync`` and ``spectrum`` at
  p = ±0.5, with three seeds (the design of results/perturb/README.md).
- ``cifar``: CIFAR-10 on GPUs: each paper's recipe (``paper`` budget) and a matched-budget
  comparison in which every process gets the same network, steps and sampler budget.
- ``cifar-short``: CIFAR-10 on one GPU in at most 8 GPU-hours (``short`` budget): the four
  processes with two seeds, and SPD perturbed by ``desync`` at p = ±0.5 with the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from corruptions import PROCESSES
from spdbench.errors import UserError
from spdbench.runs import RunRequest

MAIN_PROCESSES = tuple(PROCESSES)  #: every registered process
#: The quick suite's seeds: four, because seeds, not samples, dominate the noise of a quick run's
#: FID (std over seeds 13–44 against a sampling std of about 7 at 500 samples; results/quick), and
#: a paired t-interval's half-width falls from 12.7 to 3.2 standard errors from two seeds to four.
QUICK_SEEDS = (0, 1, 2, 3)
#: The perturbation suite's design, from the power calculation in results/perturb/README.md.
PERTURB_SEEDS = (0, 1, 2)
PERTURBATIONS = (-0.5, 0.5)
CIFAR_PERTURBATIONS = (-0.2, -0.1, 0.1, 0.2)
#: cifar-short's seeds: two, the fewest that give a paired interval at all (its half-width is
#: 12.7 standard errors of a difference), so its verdicts separate only large differences; what a
#: GPU-hour budget of 8 allows with 12 runs.
SHORT_SEEDS = (0, 1)


@dataclass(frozen=True)
class Suite:
    """A named list of runs under one protocol."""

    name: str
    title: str
    dataset: str
    runs: tuple[RunRequest, ...]
    smoke: bool
    command: str
    #: The process the suite's claims are about (the papers': SPD's FID is lower than every other
    #: process's); ``None``: the suite tests no such claim (its sweeps' slopes are still tested).
    claims_about: str | None = "spd"


def comparison(dataset: str, budget: str, seeds: tuple[int, ...]) -> tuple[RunRequest, ...]:
    """Every main process at its defaults, for every seed."""
    return tuple(
        RunRequest(p, dataset=dataset, budget=budget, seed=s)  # type: ignore[arg-type]
        for s in seeds
        for p in MAIN_PROCESSES
    )


def perturbation_sweep(
    dataset: str,
    budget: str,
    seeds: tuple[int, ...],
    kinds: tuple[str, ...],
    strengths: tuple[float, ...],
    unperturbed: bool = True,
) -> tuple[RunRequest, ...]:
    """For every seed: SPD (if ``unperturbed``; a suite that has it already says ``False``), then
    SPD perturbed by each kind at each strength ``p`` (the slope test of ``spdbench.verdicts`` fits
    FID against ``|p|`` within seeds)."""
    shared = {"dataset": dataset, "budget": budget}
    perturbed = [{"perturb": p, "perturb_kind": kind} for kind in kinds for p in strengths]
    return tuple(
        RunRequest("spd", options, seed=s, **shared)  # type: ignore[arg-type]
        for s in seeds
        for options in ([{}] if unperturbed else []) + perturbed
    )


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
        runs=comparison("fmnist", "quick", seeds=QUICK_SEEDS),
        smoke=False,
        command="make bench",
    ),
    "perturb": Suite(
        name="perturb",
        title="perturb: SPD and its perturbations, Fashion-MNIST, CPU budget",
        dataset="fmnist",
        runs=perturbation_sweep("fmnist", "quick", PERTURB_SEEDS, ("desync", "spectrum"), PERTURBATIONS),
        smoke=False,
        command="make bench-perturb",
    ),
    "cifar": Suite(
        name="cifar",
        title="cifar: CIFAR-10, each paper's recipe and a matched budget",
        dataset="cifar10",
        runs=(
            *comparison("cifar10", "paper", seeds=(0,)),
            *comparison("cifar10", "matched", seeds=(0,)),
            *perturbation_sweep(
                "cifar10", "matched", (0,), ("desync", "spectrum", "time"), CIFAR_PERTURBATIONS, unperturbed=False
            ),
        ),
        smoke=False,
        command="make bench-cifar",
    ),
    "cifar-short": Suite(
        name="cifar-short",
        title="cifar-short: CIFAR-10 on one GPU in at most 8 GPU-hours",
        dataset="cifar10",
        runs=(
            *comparison("cifar10", "short", seeds=SHORT_SEEDS),
            *perturbation_sweep("cifar10", "short", SHORT_SEEDS, ("desync",), PERTURBATIONS, unperturbed=False),
        ),
        smoke=False,
        command="make bench-cifar SUITE=short",
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise UserError(f"unknown suite {name!r}; valid: {', '.join(SUITES)}")
    return SUITES[name]
