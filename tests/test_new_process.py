"""A sixth process is one class and one registry line: a toy variance-exploding process, defined
here and registered for these tests only, goes through the contract suites (every process's,
and every frequency-diagonal Gaussian process's: the solvers that serve it, the corrector,
the projection and the geometry of its paths), the oracle check,
``spdbench paths``, ``spdbench show``, a suite of one smoke run and ``spdbench report`` with no
other change to the project."""

from __future__ import annotations

import csv
import inspect
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

import tests.test_gaussian_family as gaussian_tests
import tests.test_geometry as geometry_tests
import tests.test_process_contract as contract_tests
import tests.test_solvers as solver_tests
from benchmarks import harness
from benchmarks.suites import Suite
from corruptions import PROCESSES
from corruptions.base import DeviceCopies, DiscreteTime, ImageShape, batch_view
from corruptions.gaussian import FrequencyDiagonalGaussian
from corruptions.transforms import BASES
from spdbench import runs
from spdbench.cli import app
from spdbench.runs import RunRequest
from tests.conftest import needs_fmnist
from tests.test_harness import TINY, no_estimate, tiny_floor, tiny_score


class VarianceExploding(DiscreteTime, FrequencyDiagonalGaussian):
    """``u_t = u_0 + σ_t ε`` with ``σ_t`` geometric from ``sigma_min`` to ``sigma_max`` over the
    levels (``σ_0 = 0``), and the prior ``N(0, σ_max² I)``; ε-prediction."""

    name = "ve"

    def __init__(self, image_shape: ImageShape, *, levels: int = 200, sigma_min: float = 0.01, sigma_max: float = 80.0):
        super().__init__(image_shape, BASES["dct"], {"levels": levels, "sigma_min": sigma_min, "sigma_max": sigma_max})
        self.levels = levels
        self.sigma_max = sigma_max
        geometric = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), levels, dtype=torch.float64))
        self.constants = DeviceCopies(torch.cat([torch.zeros(1, dtype=torch.float64), geometric]))

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        (sigmas,) = self.constants.on(t.device)
        s = batch_view(sigmas[t.long()])
        return torch.ones_like(s), s

    def prior(self, noise: Tensor, reference: Tensor) -> Tensor:
        return self.sigma_max * noise


CASE = ("ve", {})


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The one registry line, for the length of each test."""
    monkeypatch.setitem(PROCESSES, "ve", VarianceExploding)
    yield


def contract(
    module: object, cases: tuple[str, ...] = ("process_case", "gaussian_case")
) -> list[Callable[[tuple[str, dict[str, object]]], None]]:
    """The tests of ``module`` that every registered process runs (those taking ``process_case``
    alone) and those every frequency-diagonal Gaussian one runs (``gaussian_case`` alone), as
    the toy process is; those of the fixtures ``cases`` among them."""
    return [
        function
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("test_") and [*inspect.signature(function).parameters] in ([case] for case in cases)
    ]


def test_the_contract_suite_and_the_oracle_hold() -> None:
    modules = (contract_tests, gaussian_tests, solver_tests, geometry_tests)
    checks = [check for module in modules for check in contract(module)]
    assert len(checks) >= 16
    for check in checks:
        check(CASE)
    gaussian_tests.test_posterior_equals_direct_gaussian_conditioning("ve")
    gaussian_tests.test_ancestral_step_draws_from_the_posterior("ve")
    gaussian_tests.check_oracle_samples(CASE)


def test_paths_measures_it(tmp_path: Path) -> None:
    out = tmp_path / "paths"
    result = CliRunner().invoke(
        app, ["paths", "--spectrum", "paper", "--size", "16", "--channels", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with (out / "paths.csv").open() as file:
        (row,) = [row for row in csv.DictReader(file) if row["process"] == "ve"]
    assert row["label"] == "ve" and row["levels"] == "200" and 0 < float(row["efficiency"]) <= 1


@needs_fmnist
def test_show_run_and_report_take_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runs, "score_images", tiny_score)
    monkeypatch.setattr(harness, "floor_score", tiny_floor)
    monkeypatch.setattr(harness, "estimate_seconds", no_estimate)
    runner = CliRunner()
    shown = runner.invoke(app, ["show", "--process", "ve", "--option", "sigma_max=40", "--out", str(tmp_path / "show")])
    assert shown.exit_code == 0, shown.output
    assert (tmp_path / "show" / "ve-sigma_max=40.png").is_file()

    suite = Suite("new", "a new process: a test suite", "fmnist", (RunRequest("ve", **TINY),), True, "pytest")  # type: ignore[arg-type]
    suite_dir = harness.run_suite(suite, tmp_path / "results")
    (run_dir,) = (suite_dir / "runs").iterdir()
    assert run_dir.name.startswith("ve-fmnist-smoke-s0-") and (run_dir / "samples.npz").is_file()
    assert json.loads((run_dir / "config.json").read_text())["process"]["label"] == "ve"
    assert (suite_dir / "show" / "ve.png").is_file()  # the suite's pictures of every process

    reported = runner.invoke(app, ["report", "new", "--results", str(tmp_path / "results")])
    assert reported.exit_code == 0, reported.output
    with (suite_dir / "fid.csv").open() as file:
        (row,) = csv.DictReader(file)
    assert row["process"] == "ve" and row["status"] == "done" and float(row["fid"]) > 0
    assert 0 < float(row["path_efficiency"]) <= 1
