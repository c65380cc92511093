"""Tests of ``spdbench report`` (``spdbench.report``) on synthetic suites.

EVERY NUMBER HERE IS MADE UP: the suites are written by the tests, with invented scores, so that
the report's tables and plots can be checked without training anything. The processes are
built with the paper's spectrum, so no dataset is needed.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from corruptions import make_process
from corruptions.spectrum import PAPER_SPECTRUM
from spdbench import report, spectra
from spdbench.cli import app
from spdbench.errors import UserError
from spdbench.groups import is_default, option_sweeps
from spdbench.records import differences, read_suite
from spdbench.report import (
    COLUMNS,
    SEED_MEAN_LABEL,
    fid_figure,
    measure_paths,
    nfe_figure,
    ordered,
    report_texts,
    seed_table,
    verdict_table,
    write_report,
)
from spdbench.show import tile
from spdbench.verdicts import claims, seed_mean

runner = CliRunner()
SHAPE = (1, 28, 28)
RESULTS = Path(__file__).parents[1] / "results"
FIGURES = ("fid.png", "fid_vs_option.png", "fid_vs_step.png", "fid_vs_nfe.png", "samples.png")
#: Synthetic floor: not a measurement.
FLOOR = {"fid": 1.5, "fid_low": 1.2, "fid_high": 1.9, "kid": 0.0002, "kid_std": 0.0001, "samples": 64}


def synthetic_scores(fid: float) -> dict[str, Any]:
    """A made-up score dict around ``fid``."""
    return {
        "fid": fid,
        "fid_low": fid - 1.0,
        "fid_high": fid + 1.5,
        "kid": fid / 1000,
        "kid_std": 0.0004,
        "features": "fmnist-cnn-synthetic",
        "samples": 64,
        "reference": "fmnist-train-64",
    }


def write_run(
    suite_dir: Path,
    process: str,
    seed: int,
    status: str,
    fid: float = 0.0,
    spectrum: str = "paper",
    budget: str = "quick",
    solver: str = "ancestral",
    **options: Any,
) -> Path:
    """A synthetic run directory: ``config.json`` and, for ``done``, a summary with made-up
    scores, an ``eval.jsonl`` and a sample file; for ``failed``, ``failed.json``."""
    built = make_process(process, SHAPE, spectrum=PAPER_SPECTRUM, **options)
    process_config = built.config() | ({"spectrum": spectrum} if "spectrum" in built.config() else {})
    run_id = f"{built.label()}-{budget}-s{seed}" + ("" if solver == "ancestral" else f"-{solver}")
    run_dir = suite_dir / "runs" / run_id
    run_dir.mkdir(parents=True)
    config = {
        "process": process_config,
        "dataset": "fmnist",
        "image_shape": list(SHAPE),
        "budget": budget,
        "network": {"size": "quick"},
        "train": {"train_steps": 100, "batch": 8, "seed": seed},
        "sampler": {
            "solver": solver, "grid": "native", "nfe": 10, "eta": 1.0, "variance": "small", "clip_x0": True
        },
        "samples": 64,
        "seed": seed,
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    if status == "failed":
        (run_dir / "failed.json").write_text(json.dumps({"run_id": run_id, "error": "CUDA out of memory | boom"}))
    if status == "done":
        summary = {
            "run_id": run_id,
            "train_steps": 100,
            "train_seconds": 330.0,
            "images_per_second": 2.5,
            "final_loss": 0.1,
            "nfe": 10,
            "samples": 64,
            "sampling_seconds": 4.0,
            "scores": synthetic_scores(fid),
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
        lines = [{"step": step, "fid": fid + 1000 / step, "samples": 32} for step in (25, 50, 100)]
        (run_dir / "eval.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        images = np.random.default_rng(seed).integers(0, 256, (64, *SHAPE), dtype=np.uint8)
        if process == "ddpm":  # an 8 × 8 grid of the samples; the others have the images themselves
            rows = [torch.from_numpy(images[i : i + 8]).float() / 255 for i in range(0, 64, 8)]
            Image.fromarray((tile(rows) * 255).round().byte().numpy()).save(run_dir / "samples.png")
        else:
            np.savez_compressed(run_dir / "samples.npz", images=images)
    return run_dir


def write_suite(root: Path, name: str = "quick", smoke: bool = False, spectrum: str = "paper") -> Path:
    """A synthetic suite with 4 finished runs (two seeds of SPD), one failed, one unfinished."""
    suite_dir = root / name
    suite_dir.mkdir(parents=True)
    suite = {
        "suite": name,
        "title": "synthetic test suite",
        "budget": "quick",
        "dataset": "fmnist",
        "features": "fmnist-cnn-synthetic",
        "samples": 64,
        "reference": "fmnist-train-64",
        "command": "pytest tests/test_report.py",
        "machine": "test machine",
        "floor": FLOOR,
        "smoke": smoke,
    }
    (suite_dir / "suite.json").write_text(json.dumps(suite))
    write_run(suite_dir, "spd", 1, "done", 30.0, spectrum)
    write_run(suite_dir, "spd", 0, "done", 28.0, spectrum)
    write_run(suite_dir, "spd", 0, "done", 33.0, spectrum, perturb=0.1, perturb_kind="desync")
    write_run(suite_dir, "ddpm", 0, "done", 40.0)
    write_run(suite_dir, "heat", 0, "failed")
    write_run(suite_dir, "blurring", 0, "unfinished")
    return suite_dir


def read_rows(suite_dir: Path) -> list[dict[str, str]]:
    with (suite_dir / "fid.csv").open() as file:
        return list(csv.DictReader(file))


def table_cells(markdown: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``markdown``, stripped of their padding."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in rows]


def test_report_tables_have_one_row_per_run_in_order(tmp_path: Path) -> None:
    suite_dir = write_suite(tmp_path)
    files = write_report(suite_dir)
    assert [path.name for path in files] == ["fid.csv", "fid.md", *FIGURES]
    rows = read_rows(suite_dir)
    assert list(rows[0]) == list(COLUMNS)
    order = [(row["process"], row["label"], row["seed"], row["status"]) for row in rows]
    assert order == [
        ("ddpm", "ddpm", "0", "done"),
        ("heat", "heat", "0", "failed"),
        ("blurring", "blurring", "0", "unfinished"),
        ("spd", "spd", "0", "done"),
        ("spd", "spd", "1", "done"),
        ("spd", "spd-desync+0.1", "0", "done"),
    ]
    assert json.loads(rows[5]["options"])["perturb"] == 0.1
    assert all(float(row["floor_fid"]) == FLOOR["fid"] for row in rows)
    failed = rows[1]
    assert failed["error"] == "CUDA out of memory | boom" and failed["fid"] == ""
    assert float(rows[3]["fid"]) == 28.0 and float(rows[3]["fid_high"]) == 29.5
    assert float(rows[3]["path_efficiency"]) == pytest.approx(1.0, abs=1e-3)
    assert 0 < float(rows[0]["path_efficiency"]) < 1
    assert 0 < float(rows[1]["path_efficiency"]) < 1  # a failed run's process has a path too
    markdown = (suite_dir / "fid.md").read_text()
    heading = markdown.splitlines()[0]
    assert heading.startswith("# ") and "SMOKE" not in markdown
    for fact in ("suite quick", "budget quick", "fmnist", "FID on 64 samples against fmnist-train-64"):
        assert fact in heading
    assert "features fmnist-cnn-synthetic" in heading
    assert "`pytest tests/test_report.py` on test machine" in markdown
    cells = table_cells(markdown)
    assert "failed: CUDA out of memory \\| boom" in markdown and ["blurring", "quick", "0", "unfinished"] in [
        row[:4] for row in cells
    ]
    assert "28.00 [27.00, 29.50]" in markdown and "5.5 min" in markdown
    assert ["spd", "0, 1", "2 of 2", "29.00 [16.29, 41.71]", "1.41"] in cells  # the seed table: t-interval
    assert "Warning" not in markdown
    for name in FIGURES:
        with Image.open(suite_dir / name) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_runs_scored_otherwise_are_flagged(tmp_path: Path) -> None:
    suite_dir = write_suite(tmp_path)
    summary_path = next((suite_dir / "runs").glob("ddpm*")) / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["scores"]["samples"] = 32
    summary_path.write_text(json.dumps(summary))
    write_report(suite_dir)
    markdown = (suite_dir / "fid.md").read_text()
    assert "Warning: these runs were scored otherwise" in markdown and "ddpm-quick-s0: features" in markdown


def test_a_sample_set_drawn_again_is_checked_and_tabled_once(tmp_path: Path) -> None:
    """A run sampled again (``spdbench sample``) with scores computed otherwise than the suite's is
    flagged like a run; drawn again with the run's own sampler and the run's scores, it is the
    run's own row, not a second one; with other scores (it did not reproduce), a row of its own."""
    suite_dir = write_suite(tmp_path)
    run_dir = suite_dir / "runs" / "spd-quick-s0"
    own = json.loads((run_dir / "config.json").read_text())["sampler"]
    other = {**own, "solver": "dpmpp3m", "nfe": 20}
    (run_dir / "resampled").mkdir()
    drawn_again = (
        ("reproduced", own, synthetic_scores(28.0)),
        ("not-reproduced", own, synthetic_scores(28.5)),
        ("other", other, {**synthetic_scores(31.0), "samples": 32}),
    )
    for name, sampler, scores in drawn_again:
        record = {"sampler": sampler, "scores": scores, "sampling_seconds": 1.0}
        (run_dir / "resampled" / f"{name}.json").write_text(json.dumps(record))
    write_report(suite_dir)
    markdown = (suite_dir / "fid.md").read_text()
    settings = "native, eta 1.0, variance small, clip_x0 True"
    assert f"- spd-quick-s0, dpmpp3m, {settings} at 20 NFE: features" in markdown
    rows = table_cells(markdown.split("FID against the sampler")[1])
    drawn = [[row[2], row[4]] for row in rows if row[:2] == ["spd", "0"]]
    own_text = f"ancestral, {settings}"
    assert drawn == [[own_text, "28.00 [27.00, 29.50]"], [own_text, "28.50 [27.50, 30.00]"],
                     [f"dpmpp3m, {settings}", "31.00 [30.00, 32.50]"]]


def test_smoke_suite_says_so(tmp_path: Path) -> None:
    suite_dir = write_suite(tmp_path, smoke=True)
    write_report(suite_dir)
    markdown = (suite_dir / "fid.md").read_text()
    assert markdown.startswith("# SMOKE TEST, NOT A RESULT")
    assert "smoke: these numbers say nothing about the processes" in markdown


def test_suite_without_finished_runs_still_writes_everything(tmp_path: Path) -> None:
    suite_dir = tmp_path / "empty"
    write_suite(tmp_path, "empty")
    for run_dir in (suite_dir / "runs").iterdir():
        (run_dir / "summary.json").unlink(missing_ok=True)
    files = write_report(suite_dir)
    assert {row["status"] for row in read_rows(suite_dir)} == {"failed", "unfinished"}
    assert all(path.is_file() for path in files)


def test_missing_dataset_leaves_path_efficiency_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: object) -> None:
        raise UserError("Fashion-MNIST is not here")

    monkeypatch.setattr(spectra, "empirical_spectrum", unavailable)
    suite_dir = write_suite(tmp_path, spectrum="empirical")
    write_report(suite_dir)
    assert all(row["path_efficiency"] == "" for row in read_rows(suite_dir))
    assert "ddpm: Fashion-MNIST is not here" in (suite_dir / "fid.md").read_text()


def test_report_command_writes_and_prints(tmp_path: Path) -> None:
    write_suite(tmp_path, "one")
    write_suite(tmp_path, "two")
    result = runner.invoke(app, ["report", "two", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| spd-desync+0.1 " in result.stdout and f"wrote {tmp_path / 'two' / 'fid.csv'}" in result.stdout
    assert not (tmp_path / "one" / "fid.csv").exists()
    result = runner.invoke(app, ["report", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one" / "fid.csv").exists()


def test_unknown_suite_exits_2_with_one_line(tmp_path: Path) -> None:
    write_suite(tmp_path, "quick")
    result = runner.invoke(app, ["report", "nope", "--results", str(tmp_path)])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown suite 'nope'") and "quick" in lines[0]



def test_report_shows_the_runs_the_suite_lists(tmp_path: Path) -> None:
    """A run directory of an earlier protocol stays out of the table (and is named below it);
    a listed run that never started is a row saying so."""
    suite_dir = write_suite(tmp_path)
    info = json.loads((suite_dir / "suite.json").read_text())
    stale = write_run(suite_dir, "ddpm", 7, "done", 99.0)
    listed = sorted(path.name for path in (suite_dir / "runs").iterdir() if path != stale)
    info["runs"] = [*listed, "blurring-never-started"]
    (suite_dir / "suite.json").write_text(json.dumps(info))
    write_report(suite_dir)
    rows = read_rows(suite_dir)
    assert stale.name not in {row["run_id"] for row in rows} and len(rows) == len(listed) + 1
    assert [row["status"] for row in rows if row["run_id"] == "blurring-never-started"] == ["not started"]
    markdown = (suite_dir / "fid.md").read_text()
    assert f"- `{stale.name}`" in markdown.split("Left out:")[1]


def test_a_suite_of_two_budgets_keeps_them_apart(tmp_path: Path) -> None:
    """The cifar suite runs each paper's recipe and a matched budget: the table says which is
    which (grouped by budget, in ``BUDGETS`` order), and SPD's perturbations are drawn against
    SPD of their own budget."""
    suite_dir = tmp_path / "two"
    write_suite(tmp_path, "two")
    write_run(suite_dir, "spd", 0, "done", 12.0, budget="paper")
    write_run(suite_dir, "ddpm", 0, "done", 14.0, budget="paper")
    write_report(suite_dir)
    rows = read_rows(suite_dir)
    assert [(row["budget"], row["process"]) for row in rows[-2:]] == [("paper", "ddpm"), ("paper", "spd")]
    assert {row["budget"] for row in rows[:-2]} == {"quick"}
    assert ["spd", "paper", "0", "done", "12.00 [11.00, 13.50]"] in [
        row[:5] for row in table_cells((suite_dir / "fid.md").read_text())
    ]
    (sweep,) = option_sweeps(read_suite(suite_dir).scored())
    assert (sweep.process, sweep.option, sweep.budget) == ("spd", "perturb", "quick")
    (series,) = sweep.series.values()
    assert sorted((run.options["perturb"], run.seed) for run in series) == [(0.0, 0), (0.0, 1), (0.1, 0)]


def test_runs_sampled_again_are_tabled_and_plotted_against_nfe(tmp_path: Path) -> None:
    """``resampled/*.json`` (``spdbench sample``) become a table of FID against the sampler and
    NFE, the run's own sampler among its rows, and ``fid_vs_nfe.png``, whose lines each go
    through the mean over the seeds they have at every NFE (a seed drawn at one NFE only would
    bend the line)."""
    suite_dir = write_suite(tmp_path)
    write_report(suite_dir)
    assert "FID against the sampler and NFE" not in (suite_dir / "fid.md").read_text()
    for seed, draws in ((0, ((5, 90.0), (20, 31.0))), (1, ((20, 61.0),))):
        resampled = suite_dir / "runs" / f"spd-quick-s{seed}" / "resampled"
        resampled.mkdir()
        for nfe, fid in draws:
            sampler = {"solver": "dpmpp3m", "grid": "edm", "nfe": nfe, "clip_x0": True, "spectrum": "paper"}
            record = {"sampler": sampler, "scores": synthetic_scores(fid), "sampling_seconds": 1.0}
            (resampled / f"dpmpp3m-edm-nfe{nfe}.json").write_text(json.dumps(record))
    write_report(suite_dir)
    lines = {line.get_label(): list(line.get_ydata()) for axes in nfe_figure(read_suite(suite_dir)).axes
             for line in axes.lines}
    assert lines["dpmpp3m, edm, clip_x0 True (seed 0)"] == [90.0, 31.0]
    assert lines["ancestral, native, eta 1.0, variance small, clip_x0 True (seeds 0, 1)"] == [29.0]
    rows = [row[:5] for row in table_cells((suite_dir / "fid.md").read_text().split("FID against the sampler")[1])]
    own = "ancestral, native, eta 1.0, variance small, clip_x0 True"
    assert ["spd", "0", own, "10", "28.00 [27.00, 29.50]"] in rows
    assert ["spd", "0", "dpmpp3m, edm, clip_x0 True", "5", "90.00 [89.00, 91.50]"] in rows
    assert ["spd", "0", "dpmpp3m, edm, clip_x0 True", "20", "31.00 [30.00, 32.50]"] in rows
    with Image.open(suite_dir / "fid_vs_nfe.png") as image:
        assert image.format == "PNG" and min(image.size) > 300


def test_sweeps_are_found_for_any_numeric_option(tmp_path: Path) -> None:
    """Runs of one process that differ in one numeric option form a sweep, with the process at
    its defaults in every series of it; series differ in the other options (SPD's kinds)."""
    suite_dir = write_suite(tmp_path)
    write_run(suite_dir, "spd", 0, "done", 31.0, perturb=-0.1, perturb_kind="spectrum")
    write_run(suite_dir, "ddpm", 0, "done", 45.0, levels=500)
    write_run(suite_dir, "ddpm", 0, "done", 42.0, schedule="cosine")  # text option: no sweep of its own
    sweeps = {(sweep.process, sweep.option): sweep for sweep in option_sweeps(read_suite(suite_dir).scored())}
    assert set(sweeps) == {("spd", "perturb"), ("ddpm", "levels")}
    kinds = sweeps["spd", "perturb"].series
    assert set(kinds) == {"perturb_kind=desync", "perturb_kind=spectrum"}
    assert sorted(run.label for run in kinds["perturb_kind=spectrum"]) == ["spd", "spd", "spd-spectrum-0.1"]
    (levels,) = sweeps["ddpm", "levels"].series.values()
    assert sorted(run.label for run in levels) == ["ddpm", "ddpm-levels=500"]
    write_report(suite_dir)
    with Image.open(suite_dir / "fid_vs_option.png") as image:
        assert image.height > image.width  # one panel per sweep: two, one above the other


def imported_modules(*arguments: str) -> set[str]:
    """The modules ``python -X importtime ARGUMENTS`` imports (read from its import-time log)."""
    finished = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments], capture_output=True, text=True, timeout=300, check=True
    )
    lines = [line.split("|") for line in finished.stderr.splitlines() if line.startswith("import time:")]
    return {parts[-1].strip() for parts in lines if len(parts) == 3}


def test_reading_results_needs_none_of_the_machinery_that_made_them(tmp_path: Path) -> None:
    """``spdbench report`` loads the records schema, not the trainer, checkpoints, metrics, clean-fid
    or the sampler, and no distributed code beyond what ``import torch`` itself loads."""
    write_suite(tmp_path, "quick")
    report = imported_modules("-m", "spdbench", "report", "quick", "--results", str(tmp_path))
    assert "spdbench.records" in report and (tmp_path / "quick" / "fid.csv").is_file()
    machinery = {"spdbench.train", "spdbench.checkpoint", "spdbench.metrics", "spdbench.sampling", "spdbench.runs"}
    assert not report & machinery and not any(name.startswith("cleanfid") for name in report)
    torch_alone = imported_modules("-c", "import torch")
    assert not {name for name in report - torch_alone if name.startswith("torch.distributed")}


@pytest.mark.parametrize("name", ["quick", "perturb"])
def test_the_readme_quotes_the_committed_verdicts(name: str) -> None:
    """The README's verdict and seed tables are the ones the report makes from the committed
    ``results/quick/`` and ``results/perturb/`` records (regenerate them after ``make bench``
    and ``make bench-perturb``)."""
    root = Path(__file__).parents[1]
    suite = ordered(read_suite(root / "results" / name))
    readme = (root / "README.md").read_text()
    assert verdict_table(suite) in readme and seed_table(suite) in readme


@pytest.mark.parametrize("suite_dir", sorted(path.parent for path in RESULTS.glob("*/suite.json")), ids=str)
def test_every_committed_report_is_what_its_records_make(suite_dir: Path) -> None:
    """Each committed suite's ``fid.csv`` and ``fid.md`` are what ``spdbench report`` makes now
    from its records: no report is left stale by a change to the report (run ``spdbench report``
    after one)."""
    suite = ordered(read_suite(suite_dir))
    for name, text in report_texts(suite, measure_paths(suite)).items():
        assert (suite_dir / name).read_text() == text, f"{suite_dir / name} is stale: run spdbench report"


def test_a_series_away_from_the_defaults_in_another_option_has_no_origin(tmp_path: Path) -> None:
    """DDPM with the cosine schedule at two numbers of levels is a series named by its schedule;
    DDPM at its defaults (the linear schedule) is not its origin, so no verdict reads the
    schedule's effect as that of the levels. SPD at its defaults stays the origin of every kind
    of perturbation (with none, every kind is SPD)."""
    suite_dir = write_suite(tmp_path)
    write_run(suite_dir, "spd", 0, "done", 31.0, perturb=-0.1, perturb_kind="spectrum")
    for levels, fid in ((250, 50.0), (500, 45.0)):
        write_run(suite_dir, "ddpm", 0, "done", fid, schedule="cosine", levels=levels)
    scored = read_suite(suite_dir).scored()
    sweeps = {(sweep.process, sweep.option): sweep for sweep in option_sweeps(scored)}
    (name, runs), = sweeps["ddpm", "levels"].series.items()
    assert name == "schedule=cosine" and sorted(run.options["levels"] for run in runs) == [250, 500]
    assert not any(is_default(run) for run in runs)
    assert all(is_default(runs[0]) for runs in sweeps["spd", "perturb"].series.values())
    tested = [claim.claim for claim in claims(scored, "spd")]
    assert not [claim for claim in tested if "levels" in claim or "ddpm-" in claim]
    assert "spd's FID rises as perturb leaves 0.0 (perturb_kind=spectrum)" in tested


def test_runs_that_never_started_are_in_no_group(tmp_path: Path) -> None:
    """A listed run that never started has no configuration: it joins no configuration's seeds
    and does not count as a budget of its own (which would add the budget to every label)."""
    suite_dir = write_suite(tmp_path)
    info = json.loads((suite_dir / "suite.json").read_text())
    listed = sorted(path.name for path in (suite_dir / "runs").iterdir())
    info["runs"] = [*listed, "spd-quick-s2", "heat-quick-s1"]
    (suite_dir / "suite.json").write_text(json.dumps(info))
    suite = ordered(read_suite(suite_dir))
    assert [row[:3] for row in table_cells(seed_table(suite))[2:]] == [["spd", "0, 1", "2 of 2"]]
    write_report(suite_dir)
    assert "spd, quick" not in (suite_dir / "fid.md").read_text()


def test_the_fid_figure_shows_the_mean_over_seeds_with_its_interval(tmp_path: Path) -> None:
    """Each run's bootstrap interval holds the sample set's noise alone; beside the runs of a
    process with several seeds, their mean with its t-interval over seeds holds the training
    seed's too."""
    suite = ordered(read_suite(write_suite(tmp_path)))
    (axes,) = fid_figure(suite).axes
    (means,) = [c for c in axes.containers if c.get_label() == SEED_MEAN_LABEL]  # SPD alone has two seeds
    estimate = seed_mean([28.0, 30.0])
    assert list(means.lines[0].get_ydata()) == [estimate.value]
    assert means.lines[2][0].get_segments()[0][:, 1].tolist() == [estimate.low, estimate.high]


def test_configurations_that_share_a_label_are_named_apart(tmp_path: Path) -> None:
    """SPD at its defaults drawn with two samplers is two configurations: the tables, the seed
    table and the verdicts name each by what tells it apart, and never pool their runs."""
    suite_dir = write_suite(tmp_path)
    info = json.loads((suite_dir / "suite.json").read_text())
    (suite_dir / "suite.json").write_text(json.dumps(info | {"claims_about": "spd"}))
    for seed, fid in ((0, 50.0), (1, 54.0)):
        write_run(suite_dir, "spd", seed, "done", fid, solver="ddim")
    suite = ordered(read_suite(suite_dir))
    ancestral, ddim = "spd (sampler.solver=ancestral)", "spd (sampler.solver=ddim)"
    assert [suite.names[run.run_id] for run in suite.runs if run.process == "spd"] == [
        ancestral, ancestral, ddim, ddim, "spd-desync+0.1"
    ]
    seeds = {row[0]: row[3] for row in table_cells(seed_table(suite))[2:]}
    assert seeds[ancestral].startswith("29.00") and seeds[ddim].startswith("52.00")
    verdicts = {row[0]: row[2] for row in table_cells(verdict_table(suite))[2:]}
    assert verdicts[f"{ancestral}'s FID is lower than ddpm's"] == "-12.0"  # seed 0 alone has a ddpm run
    assert verdicts[f"{ddim}'s FID is lower than ddpm's"] == "10.0"
    write_report(suite_dir)
    names = [row[0] for row in table_cells((suite_dir / "fid.md").read_text())]
    assert names.count(ancestral) == names.count(ddim) == 2 + 1 + 1  # the runs, over seeds, over training
    assert [row["name"] for row in read_rows(suite_dir) if row["process"] == "spd"] == [
        ancestral, ancestral, ddim, ddim, "spd-desync+0.1"
    ]


def test_settings_that_differ_never_look_alike() -> None:
    """A name shows each differing value so that two values never read the same: a string that
    reads as a number or ``null`` is quoted, a missing setting is ``absent``, and a string is
    otherwise bare."""
    told = differences({
        "number": {"k": 1}, "text": {"k": "1"}, "null": {"k": None}, "word": {"k": "null"},
        "flag": {"k": True}, "name": {"k": "ddim"}, "missing": {},
    })
    assert told == {
        "number": "k=1", "text": 'k="1"', "null": "k=null", "word": 'k="null"',
        "flag": "k=true", "name": "k=ddim", "missing": "k absent",
    }


def test_the_report_states_what_the_harness_invocations_took() -> None:
    """The runs and seconds of every invocation, and the first one's start and estimate."""
    first = {"started": "2026-11-30 10:00:00 UTC", "seconds": 100.0, "runs": 1, "estimated_seconds": 150.0}
    second = {"started": "2026-11-30 11:00:00 UTC", "seconds": 200.0, "runs": 2, "estimated_seconds": 90.0}
    assert report.invocations_text([]) == ""
    assert report.invocations_text([first]) == (
        " The harness ran 1 run in 100 s (one invocation, from its start to its last run; it started "
        "2026-11-30 10:00:00 UTC and estimated 2.5 min for the runs left then)."
    )
    assert report.invocations_text([first, second]) == (
        " The harness ran 3 runs in 5.0 min (2 invocations, each from its start to its last run; the first "
        "started 2026-11-30 10:00:00 UTC and estimated 2.5 min for the runs left then)."
    )
