"""The suite harness: idempotent, resumable, and honest about failed runs."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from benchmarks import harness
from benchmarks.flops import network_flops
from benchmarks.suites import SUITES, Suite, get_suite
from corruptions import PROCESSES
from corruptions.gaussian import FrequencyDiagonalGaussian
from models import network_config
from spdbench import geometryreport, metrics, report, runs
from spdbench.budgets import SHORT_ASSUMED_FLOPS, resolve_budget
from spdbench.checkpoint import load_checkpoint
from spdbench.classifier import ClassifierConfig
from spdbench.cli import app
from spdbench.metrics import ClassifierFeatures
from spdbench.records import RUNS_DIR, SUMMARY
from spdbench.report import write_report
from spdbench.runs import RunRequest, resolve_run
from tests.conftest import needs_fmnist

pytestmark = needs_fmnist

TINY = {"budget": "smoke", "train_steps": 3, "batch": 8, "samples": 6, "nfe": 3}
SUITE = Suite(
    name="tiny",
    title="tiny: a test suite; these numbers say nothing about the processes",
    dataset="fmnist",
    runs=tuple(RunRequest(process, **TINY) for process in ("ddpm", "heat", "spd")),  # type: ignore[arg-type]
    smoke=True,
    command="pytest",
)


TINY_FEATURES = ClassifierConfig(epochs=1, train_limit=512)
"""Real scoring, with a classifier trained on 512 images against 200 reference images."""


def tiny_score(images: torch.Tensor, dataset: str, seed: int) -> metrics.Score:
    tiny = ClassifierFeatures(TINY_FEATURES, min_accuracy=0.0)
    return metrics.score_images(images, dataset, features=tiny, reference_count=200, seed=seed, resamples=20)


def tiny_floor(dataset: str, count: int) -> metrics.Score:
    tiny = ClassifierFeatures(TINY_FEATURES, min_accuracy=0.0)
    return metrics.floor_score(dataset, count, features=tiny, reference_count=200, resamples=20)


def no_estimate(runs: list[runs.Run], done: set[str]) -> harness.Estimate:
    return harness.Estimate(0.0, {})


ESTIMATE_SECONDS = harness.estimate_seconds  #: the real one (the suites here are given ``no_estimate``)


@pytest.fixture(scope="module", autouse=True)
def tiny_scores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setattr(runs, "score_images", tiny_score)
        patch.setattr(harness, "floor_score", tiny_floor)
        patch.setattr(harness, "estimate_seconds", no_estimate)
        yield


def table(suite_dir: Path) -> list[dict[str, str]]:
    with (suite_dir / "fid.csv").open() as file:
        return list(csv.DictReader(file))


def summaries(runs_dir: Path) -> dict[str, int]:
    return {path.parent.name: path.stat().st_mtime_ns for path in runs_dir.glob("*/summary.json")}


def test_rerun_after_deleting_one_run_redoes_only_that_one(tmp_path: Path) -> None:
    suite_dir = harness.run_suite(SUITE, tmp_path)
    runs_dir = suite_dir / "runs"
    first = summaries(runs_dir)
    assert len(first) == 3 and json.loads((suite_dir / "suite.json").read_text())["floor"]["samples"] == 6
    assert {row["status"] for row in table(suite_dir)} == {"done"}

    deleted = sorted(first)[1]
    for path in sorted((runs_dir / deleted).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (runs_dir / deleted).rmdir()
    harness.run_suite(SUITE, tmp_path)
    second = summaries(runs_dir)
    assert set(second) == set(first)
    assert [name for name in first if second[name] != first[name]] == [deleted]

    made = {**json.loads((suite_dir / "suite.json").read_text()), "date": "2026-01-01"}  # as a committed suite
    (suite_dir / "suite.json").write_text(json.dumps(made))
    harness.run_suite(SUITE, tmp_path)  # nothing left to run: the record (its date, its invocations) stands
    assert json.loads((suite_dir / "suite.json").read_text()) == made
    invocations = made["invocations"]
    assert [entry["runs"] for entry in invocations] == [3, 1]
    assert all(entry["seconds"] > 0 and entry["estimated_seconds"] == 0.0 for entry in invocations)
    assert report.invocations_text(invocations) in (suite_dir / "fid.md").read_text()


def test_an_interrupted_invocation_keeps_its_time_up_to_its_last_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_train = runs.train

    def interrupted_at_spd(process, *args, **kwargs):  # type: ignore[no-untyped-def]
        if process.name == "spd":
            raise KeyboardInterrupt
        return real_train(process, *args, **kwargs)

    monkeypatch.setattr(runs, "train", interrupted_at_spd)
    with pytest.raises(KeyboardInterrupt):
        harness.run_suite(SUITE, tmp_path)
    (entry,) = json.loads((tmp_path / SUITE.name / "suite.json").read_text())["invocations"]
    assert entry["runs"] == 2 and entry["seconds"] > 0

    monkeypatch.setattr(runs, "train", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed in its first run: recorded, with no run
        harness.run_suite(SUITE, tmp_path)
    invocations = json.loads((tmp_path / SUITE.name / "suite.json").read_text())["invocations"]
    assert [entry["runs"] for entry in invocations] == [2, 0]


def test_a_suite_record_of_other_runs_keeps_none_of_their_invocations(tmp_path: Path) -> None:
    """``suite.json``'s invocations are those that ran the runs it lists: a suite whose runs
    changed (another protocol) starts its record anew."""
    suite_dir = harness.run_suite(SUITE, tmp_path)
    other = dataclasses.replace(SUITE, runs=SUITE.runs[:2])
    harness.run_suite(other, tmp_path)  # its runs are done: nothing to run
    assert json.loads((suite_dir / "suite.json").read_text())["invocations"] == []


@pytest.mark.parametrize("damage", [b"{not json", b"[]", b'{"invocations": [{"runs": 1}]}'])
def test_a_damaged_suite_record_is_written_anew(tmp_path: Path, damage: bytes) -> None:
    suite_dir = harness.run_suite(SUITE, tmp_path)
    (suite_dir / "suite.json").write_bytes(damage)
    harness.run_suite(SUITE, tmp_path)  # its runs are done: nothing to run
    record = json.loads((suite_dir / "suite.json").read_text())
    assert record["suite"] == SUITE.name and record["invocations"] == []


def test_a_failed_run_is_a_row_with_its_error_and_the_suite_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_train = runs.train

    def train_failing_heat(process, *args, **kwargs):  # type: ignore[no-untyped-def]
        if process.name == "heat":
            raise RuntimeError("out of memory (injected)")
        return real_train(process, *args, **kwargs)

    monkeypatch.setattr(runs, "train", train_failing_heat)
    with pytest.raises(SystemExit) as exited:
        harness.run_suite(SUITE, tmp_path)
    assert exited.value.code == harness.SUITE_INCOMPLETE_EXIT_CODE != 0
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: 1 of 3 runs of suite tiny did not finish") and "out of memory (injected)" in error
    suite_dir = tmp_path / SUITE.name
    assert {path.name for path in suite_dir.iterdir()} >= {"fid.md", "fid.csv", "fid.png", "suite.json", "show"}
    rows = {row["process"]: row for row in table(suite_dir)}
    assert rows["heat"]["status"] == "failed" and "out of memory (injected)" in rows["heat"]["error"]
    assert rows["ddpm"]["status"] == rows["spd"]["status"] == "done"
    assert "out of memory (injected)" in (suite_dir / "fid.md").read_text()

    monkeypatch.setattr(runs, "train", real_train)  # the next attempt succeeds and clears the record
    harness.run_suite(SUITE, tmp_path)
    assert {row["status"] for row in table(suite_dir)} == {"done"}
    assert not list((suite_dir / "runs").glob("*/failed.json"))


def test_sampling_again_at_the_run_settings_reproduces_the_recorded_score(tmp_path: Path) -> None:
    """``spdbench sample`` draws a run's sample set again from its checkpoint: at the run's own
    settings it gets the recorded samples and FID, with other settings other images; each draw
    is recorded in the run directory. A run still training is refused (its weights are not the
    ones its summary will come from)."""
    suite_dir = harness.run_suite(SUITE, tmp_path)
    run = resolve_run(SUITE.runs[2])
    run_dir = suite_dir / "runs" / run.run_id
    recorded = json.loads((run_dir / "summary.json").read_text())["scores"]
    again = runs.sample_again(run_dir, [run.nfe], {})[0]
    other = runs.sample_again(run_dir, [2], {"sampler": "dpmpp3m"})[0]
    assert again["scores"] == recorded and again["sampler"] == run.config()["sampler"]
    assert other["scores"]["fid"] != recorded["fid"] and other["sampler"]["solver"] == "dpmpp3m"
    assert {path.name for path in (run_dir / "resampled").iterdir()} == {
        "sdedpmpp2m-logsnr-nfe3-clip_x0True-spectrumempirical.json",
        "dpmpp3m-logsnr-nfe2-clip_x0True-spectrumempirical.json",
    }
    result = CliRunner().invoke(app, ["sample", "--run", str(run_dir), "--nfe", "2", "--sampler", "ihdm"])
    assert result.exit_code == 2 and "sampler 'ihdm' serves the HeatDissipation processes" in result.output
    (run_dir / "summary.json").unlink()  # as a run stopped after a checkpoint leaves it
    for command in (["sample", "--nfe", "2"], ["geometry"]):
        result = CliRunner().invoke(app, [*command, "--run", str(run_dir)])
        assert result.exit_code == 2 and "it has no summary.json" in result.output


def test_a_run_is_sampled_again_in_the_precision_of_its_own_samples() -> None:
    """bf16 on the kind of device a bf16 run trained on (a CIFAR-10 budget on CUDA), fp32 elsewhere
    and for every run trained in fp32 (the CPU budgets, on any device)."""
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    bf16_on_cuda = {"device": "cuda", "config": {"bf16": True}}
    fp32_on_cpu = {"device": "cpu", "config": {"bf16": False}}
    assert runs.samples_in_bf16(bf16_on_cuda, cuda)
    assert not runs.samples_in_bf16(bf16_on_cuda, cpu)
    assert not runs.samples_in_bf16(fp32_on_cpu, cuda) and not runs.samples_in_bf16(fp32_on_cpu, cpu)
    assert not runs.samples_in_bf16({}, cuda)


def test_the_geometry_of_a_run_is_written_under_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``spdbench geometry``: one row per point of the path, a summary, a plot; the samples are the
    run's own, so their FID is the run's (and for the Gaussian processes, whose last step returns
    x̂_0, so is the last jump's); the optimal denoiser's gap is measured where it exists (not for
    heat); a corrector or a projection is an option of the sampler it follows."""
    suite_dir = harness.run_suite(SUITE, tmp_path)
    monkeypatch.setattr(geometryreport, "score_images", tiny_score)
    for request in SUITE.runs:
        run = resolve_run(request)
        run_dir = suite_dir / "runs" / run.run_id
        files = geometryreport.geometry_report(run_dir, run.samples, {}, "cpu", "pytest")
        assert [path.name for path in files] == ["geometry.csv", "summary.json", "geometry.png"]
        with files[0].open() as file:
            rows = list(csv.DictReader(file))
        assert [int(row["step"]) for row in rows] == list(range(run.nfe + 1))
        assert float(rows[0]["path_fraction"]) == 0.0 and float(rows[-1]["path_fraction"]) == pytest.approx(1.0)
        summary = json.loads(files[1].read_text())
        recorded = json.loads((run_dir / "summary.json").read_text())["scores"]["fid"]
        assert summary["steps"] == run.nfe and summary["sampler"] == run.config()["sampler"]
        assert 0 <= summary["sampling_deviation_mean"] <= summary["sampling_deviation_max"]
        assert summary["final_fid"] == recorded
        if not isinstance(run.process, FrequencyDiagonalGaussian):  # no Gaussian posterior, no optimal denoiser
            assert summary["optimal_gap_mean"] is None
        else:  # the last call returns x̂_0: the sample
            assert summary["best_jump_fid"] <= recorded == float(rows[-2]["jump_fid"])
            assert summary["optimal_gap_mean"] > 0
    result = CliRunner().invoke(app, ["geometry", "--run", str(run_dir), "--samples", "1000"])
    assert result.exit_code == 2 and "--samples must be at most the run's 6 samples" in result.output
    write_report(suite_dir)
    section = (suite_dir / "fid.md").read_text().split("## Geometry of the sampling paths")[1]
    assert [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:] == [
        "ddpm", "heat", "spd"
    ]
    result = CliRunner().invoke(app, ["geometry", "--run", str(run_dir), "--nfe", "5", "--projection", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "geometry" / "summary.json").read_text())
    assert summary["steps"] == 5 and summary["sampler"]["projection"] == 1.0  # 3 solver calls, 2 projections


def test_the_suites_share_one_protocol() -> None:
    """Within a suite every run of a budget has the same network, steps, batch, sampler steps
    and sample count (paper recipes differ by process, by design)."""
    for suite in SUITES.values():
        protocols = {
            (budget.name, budget.network, budget.train.train_steps, budget.train.batch, budget.nfe, budget.samples)
            for budget in (resolve_budget(r.budget, r.process) for r in suite.runs if r.budget != "paper")
        }
        assert len(protocols) == len({r.budget for r in suite.runs if r.budget != "paper"}), suite.name
        assert all(r.train_steps is r.batch is r.nfe is r.samples is None for r in suite.runs), suite.name


def test_a_clone_holds_no_run_of_the_suites_the_harness_writes_unless_told() -> None:
    """The default directory of suites (the harness's and make's) is ignored by git and holds no
    tracked file, so `make bench` in a fresh clone trains every run instead of finding the
    committed reference suites (results/) done and skipping them."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    default = harness.DEFAULT_RESULTS
    assert default.resolve() != (root / "results").resolve()
    assert f"\nRESULTS ?= {default}\n" in (root / "Makefile").read_text()  # make's suites go there too
    tracked = subprocess.run(["git", "ls-files", str(default)], cwd=root, capture_output=True, text=True, check=True)
    assert tracked.stdout == ""
    for name in SUITES:
        summary = default / name / RUNS_DIR / "a-run" / SUMMARY
        ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", str(summary)], cwd=root)
        assert ignored.returncode == 0, f"{summary} is not ignored by git"


def test_the_estimate_is_split_over_the_devices_and_given_in_device_hours() -> None:
    assert harness.estimate_line(1800.0, 16, 1, "CPU") == (
        "estimated time for the 16 runs left: 30.0 min on 1 CPU (0.50 CPU-hours)"
    )
    assert harness.estimate_line(36000.0, 3, 4, "GPU") == (
        "estimated time for the 3 runs left: 2.5 h on 4 GPUs (10.00 GPU-hours)"
    )


def flop_costs(run: runs.Run) -> harness.Costs:
    """The costs of ``run``'s settings at the rate the ``short`` budget assumes, from the FLOPs
    ``torch.utils.flop_counter`` counts for one image on the meta device."""
    training, call = network_flops(network_config(run.network, *run.process.image_shape[:2]))
    seconds = training / SHORT_ASSUMED_FLOPS, call / SHORT_ASSUMED_FLOPS
    return harness.Costs(seconds[0] * run.train.batch, seconds[1] * run.sample_batch)


def test_the_short_cifar_suite_ranks_the_processes_within_8_gpu_hours() -> None:
    """``cifar-short``: every process with two seeds, SPD perturbed at two strengths with the same
    seeds, all on one network and protocol, within 8 GPU-hours at the achieved rate its budget
    was sized for; the estimate says its basis, one line per setting. (The runs are resolved with
    the papers' spectrum, which costs the same and needs no CIFAR-10 here.)"""
    suite = get_suite("cifar-short")
    requests = [(r.process, r.seed, dict(r.options)) for r in suite.runs]
    assert {(p, s) for p, s, options in requests if not options} == {(p, s) for p in PROCESSES for s in (0, 1)}
    perturbed = {(s, options["perturb"]) for p, s, options in requests if options}
    assert perturbed == {(s, p) for s in (0, 1) for p in (-0.5, 0.5)}
    assert len(requests) == len({repr(request) for request in requests}) == 2 * len(PROCESSES) + 4
    resolved = [runs.resolve_run(dataclasses.replace(r, spectrum="paper")) for r in suite.runs]
    estimate = ESTIMATE_SECONDS(resolved, set(), flop_costs)
    assert 4 * 3600 < estimate.seconds < 8 * 3600
    (line,) = estimate.basis("GPU")
    assert line.startswith("  basis: network ddpm-cifar: 0.") and "at batch 128" in line and "on 1000 images" in line


FOUR = dataclasses.replace(
    SUITE, runs=tuple(RunRequest(p, **TINY) for p in PROCESSES)  # type: ignore[arg-type]
)


def test_a_suite_runs_under_torchrun(tmp_path: Path) -> None:
    """Under torchrun one process group serves every run of the suite (re-creating it for each
    run fails on torchrun's own store): each run trains with both ranks, and rank 0 writes the
    records and the report. The ranks run this file's ``__main__`` part: the tiny scores."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "tests.test_harness", str(tmp_path), os.environ["SPDBENCH_CACHE"]]
    environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    suite_dir = tmp_path / FOUR.name
    assert [row["status"] for row in table(suite_dir)] == ["done"] * 4
    for run_dir in (suite_dir / "runs").iterdir():
        assert load_checkpoint(run_dir).meta["world_size"] == 2


if __name__ == "__main__":  # one rank of the torchrun test above
    runs.score_images, harness.floor_score, harness.estimate_seconds = tiny_score, tiny_floor, no_estimate
    os.environ["SPDBENCH_CACHE"] = sys.argv[2]
    harness.run_suite(FOUR, Path(sys.argv[1]))
