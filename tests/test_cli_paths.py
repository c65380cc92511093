"""Tests of ``spdbench paths`` and ``spdbench show`` through the command line, of the spectra they
use (the on-disk cache of the empirical spectrum) and of the one-line errors every command gives."""

import csv
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from corruptions import PROCESSES, make_process
from corruptions.spectrum import PAPER_SPECTRUM, RadialPowerLaw
from corruptions.transforms import BASES
from spdbench import spectra
from spdbench.cli import app
from spdbench.pathreport import COLUMNS
from tests.conftest import needs_fmnist

runner = CliRunner()


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test has its own empty spectrum cache."""
    monkeypatch.setenv("SPDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_paths_writes_the_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "paths"
    result = runner.invoke(app, ["paths", "--spectrum", "paper", "--size", "16", "--channels", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "paths.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert set(COLUMNS) >= {"process", "label", "length", "geodesic", "efficiency", "basis", "levels"}
    assert list(rows[0]) == list(COLUMNS)
    # Every process at its defaults, then every variant each process declares, by its label.
    assert [(row["process"], row["label"]) for row in rows[: len(PROCESSES)]] == [(name, name) for name in PROCESSES]
    shape = (1, 16, 16)
    variants = [
        (name, make_process(name, shape, spectrum=PAPER_SPECTRUM, **options).label())
        for name, cls in PROCESSES.items()
        for family in cls.variants.values()
        for options in family
    ]
    assert [(row["process"], row["label"]) for row in rows[len(PROCESSES) :]] == variants
    spd = next(row for row in rows if row["label"] == "spd")
    assert float(spd["efficiency"]) == pytest.approx(1.0, abs=1e-3)
    assert all(0 < float(row["efficiency"]) <= 1 + 1e-9 for row in rows)
    markdown = (out / "paths.md").read_text()
    assert "spectrum paper" in markdown and "size 16" in markdown and "`spdbench paths --spectrum paper" in markdown
    assert all(f"| {label} " in markdown for _, label in variants)
    for name in ("speed.png", "snr.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 300
    assert str(out / "paths.csv") in result.stdout


@needs_fmnist
def test_empirical_spectrum_is_cached_and_a_corrupt_cache_recomputed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def counting(*args: object) -> torch.Tensor:
        calls.append(args)
        return estimate(*args)

    estimate = spectra.estimate_spectrum
    monkeypatch.setattr(spectra, "estimate_spectrum", counting)
    fft, shape = BASES["fft"], (1, 8, 8)
    first = spectra.resolve_spectrum("empirical", "fmnist", size=8).values(fft, shape)
    path = spectra.cache_path("fmnist", 8, fft)
    assert path.is_file() and len(calls) == 1
    again = spectra.resolve_spectrum("empirical", "fmnist", size=8).values(fft, shape)
    assert len(calls) == 1 and torch.equal(again, first)
    path.write_bytes(path.read_bytes()[:100])
    recomputed = spectra.resolve_spectrum("empirical", "fmnist", size=8).values(fft, shape)
    assert len(calls) == 2 and torch.allclose(recomputed, first)
    assert spectra.read_cached_spectrum(path, shape) is not None
    averaged = spectra.resolve_spectrum("empirical", "fmnist", size=8, channels=3)
    assert averaged.values(fft, (3, 8, 8)).shape == (1, 8, 8) and len(calls) == 2
    fit = spectra.resolve_spectrum("fit", "fmnist", size=8)
    assert isinstance(fit, RadialPowerLaw) and fit.name == "fit" and fit.m > 0


@needs_fmnist
@pytest.mark.parametrize(
    ("process", "files"), [("spd", ["spd"]), ("all", list(PROCESSES))], ids=["spd", "all"]
)
def test_show_writes_image_and_noise_grids(tmp_path: Path, process: str, files: list[str]) -> None:
    out = tmp_path / "show"
    result = runner.invoke(
        app, ["show", "--process", process, "--size", "16", "--images", "6", "--times", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for name in files:
        for path in (out / f"{name}.png", out / f"{name}-noise.png"):
            with Image.open(path) as image:
                width, height = image.size
                assert image.format == "PNG" and 1.3 < width / height < 2.6  # 6 columns, 3 rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "--process", "nope"], f"unknown process 'nope'; valid: {', '.join(PROCESSES)}, all"),
        (["show", "--process", "spd", "--spectrum", "paper", "--perturb", "1.5"], "|p| < 1"),
        (["show", "--process", "spd", "--spectrum", "paper", "--perturb-kind", "nope"], "desync, spectrum, time"),
        (["show", "--process", "ddpm", "--perturb", "0.1"], "process 'ddpm' has no option perturb"),
        (["show", "--process", "ddpm", "--option", "schedule"], "--option takes NAME=VALUE"),
        (["show", "--process", "ddpm", "--option", "shape=round"], "its options: schedule, levels"),
        (["show", "--process", "spd", "--perturb", "0.1", "--option", "perturb=0.2"], "given twice"),
        (["paths", "--spectrum", "nope"], "valid: empirical, fit, paper"),
        (["paths", "--dataset", "nope"], "fmnist, cifar10"),
    ],
    ids=["process", "perturb", "perturb-kind", "perturb-ddpm", "option-no-value", "option-unknown", "option-twice",
         "spectrum", "dataset"],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


@needs_fmnist
def test_the_committed_paths_are_what_spdbench_paths_makes(tmp_path: Path) -> None:
    """``results/paths/fmnist-28-empirical`` (``make paths``) holds what ``spdbench paths`` makes
    now, but for the output path its command line names."""
    committed = Path(__file__).parents[1] / "results" / "paths" / "fmnist-28-empirical"
    out = tmp_path / "paths"
    result = runner.invoke(app, ["paths", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # Another CPU's vector code may round the last digits otherwise: to 1e-9, not bit for bit.
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "paths.csv"),
        pd.read_csv(committed / "paths.csv"),
        rtol=1e-9,
        obj="results/paths (the measure changed: if the change was meant, make paths; if not, a process's maths broke)",
    )
    made = (out / "paths.md").read_text().replace(f" --out {out}", "")
    assert made == (committed / "paths.md").read_text()
