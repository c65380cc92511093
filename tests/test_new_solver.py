"""A new solver is one step rule and one registry line, and a new time grid one coordinate
function and one registry line: a toy solver (Euler's method in the log-SNR) and a toy grid
(uniform in the mean noise-to-signal ratio), defined here and registered for these tests only,
go through the solver contract on every process they serve and reach a run's configuration with
no other change to the project."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from typer.testing import CliRunner

import tests.test_solvers as solver_tests
from corruptions import Process
from corruptions.gaussian import FrequencyDiagonalGaussian
from spdbench import runs
from spdbench.cli import app
from spdbench.grids import GRIDS, make_grid, mean_log_snr
from spdbench.solvers import CORRECTIONS, ONE, SOLVERS, LinearStep, SamplerSettings, Schedule, Solver
from tests.conftest import GAUSSIAN_CASES, build, case_id
from tests.test_new_process import contract


def euler(process: Process, grid: Schedule, i: int, settings: SamplerSettings) -> LinearStep:
    """Euler's method on the probability-flow ODE ``d(u/s)/dλ = e^λ û_0`` per frequency, with
    ``h = λ_r − λ_t``: ``u_r = (s_r/s_t) u_t + s_r e^{λ_t} h û_0`` (DDIM is its exact solution for
    a constant ``û_0``, with ``expm1(h)`` in place of ``h``); the last step returns ``x̂_0``."""
    if grid.is_data(i + 1):
        return LinearStep(x0=ONE.to(grid.times.device))
    (_, s_t), (_, s_r) = grid.at(i), grid.at(i + 1)
    h = grid.log_snr(i + 1) - grid.log_snr(i)
    return LinearStep(x=s_r / s_t, x0=s_r * grid.log_snr(i).exp() * h)


def noise_to_signal_coordinate(process: Process, times: torch.Tensor, spectrum: torch.Tensor | None) -> torch.Tensor:
    """``σ̄(t) = exp(−λ̄(t))`` per time (the ``edm`` grid at ρ = 1)."""
    return torch.exp(-mean_log_snr(process, times))


TOY_SOLVER = Solver("euler", FrequencyDiagonalGaussian, euler, ("clip_x0", *CORRECTIONS), "Euler's method in λ")


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The two registry lines, for the length of each test; the solver registry holds the toy
    alone, so the contract checks it and not again every other solver."""
    every = dict(SOLVERS)
    SOLVERS.clear()
    SOLVERS["euler"] = TOY_SOLVER
    monkeypatch.setitem(GRIDS, "nsr", noise_to_signal_coordinate)
    try:
        yield
    finally:  # in their order (monkeypatch would put deleted entries back in reverse)
        SOLVERS.clear()
        SOLVERS.update(every)


@pytest.mark.parametrize("case", GAUSSIAN_CASES, ids=case_id)
def test_the_solver_contract_holds(case: tuple[str, dict[str, object]]) -> None:
    """Every check that every registered solver passes on every process it serves and every grid
    (reproducible per image, finite, its error falling with more calls, its exact variance what
    Monte-Carlo sampling gives), the toy solver passes on every frequency-diagonal Gaussian
    process, on every grid and the toy grid among them."""
    checks = contract(solver_tests, ("process_case",))
    assert len(checks) >= 3
    for check in checks:
        check(case)


def test_the_grid_steps_evenly_in_its_coordinate() -> None:
    """On DDPM at 10 calls the toy grid's steps in ``σ̄`` are equal to within the levels it picks
    among (the largest is 1.06 times the smallest), where the log-SNR grid's are not."""

    def spread(grid: torch.Tensor) -> float:
        steps = -torch.diff(noise_to_signal_coordinate(process, grid[:-1], None))
        return float(steps.max() / steps.min())

    process = build(("ddpm", {}))
    assert spread(make_grid("nsr", process, 10)) < 1.1 < 10 < spread(make_grid("logsnr", process, 10))


def test_a_run_takes_them() -> None:
    """``--sampler euler --grid nsr`` reach the run's configuration, its grid and its settings."""
    resolved = runs.resolve_run(runs.RunRequest("ddpm", budget="smoke", sampler="euler", grid="nsr", nfe=10))
    assert resolved.solver is TOY_SOLVER and len(resolved.grid) == 11 and resolved.grid[-1] == 0
    result = CliRunner().invoke(
        app, ["run", "--process", "spd", "--budget", "smoke", "--sampler", "euler", "--grid", "nsr", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sampler"] | {"nfe": None} == {
        "solver": "euler", "grid": "nsr", "nfe": None, "clip_x0": True, "spectrum": "empirical"
    }
