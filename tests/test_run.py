"""`spdbench run`: one experiment end to end through the command line, and its refusals."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from corruptions import PROCESSES
from models import UNet, network_config
from spdbench import metrics, runs
from spdbench.checkpoint import load_checkpoint
from spdbench.classifier import ClassifierConfig
from spdbench.cli import app
from spdbench.data import load_images
from spdbench.errors import UserError
from spdbench.metrics import ClassifierFeatures
from tests.conftest import become_rank, free_port, needs_fmnist

pytestmark = needs_fmnist

TINY = ["--budget", "smoke", "--steps", "3", "--batch", "8", "--samples", "6", "--nfe", "3", "--quiet"]


def tiny_scores(images: torch.Tensor, dataset: str, seed: int, **options: str) -> metrics.Score:
    """The real scoring with a classifier trained on 512 images (the suite's own takes minutes
    to train) against 200 reference images; another extractor than the default goes the real way."""
    if options.get("features", "default") != "default":
        return metrics.score_images(images, dataset, seed=seed, **options)
    tiny = ClassifierFeatures(ClassifierConfig(epochs=1, train_limit=512), min_accuracy=0.0)
    return metrics.score_images(images, dataset, features=tiny, reference_count=200, seed=seed, resamples=20)


@pytest.fixture(scope="module", autouse=True)
def private_cache_and_tiny_scores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private cache, and ``tiny_scores`` for every run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPDBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setattr(runs, "score_images", tiny_scores)
        yield


def spdbench(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def run_dirs(out: Path) -> list[Path]:
    return sorted(path for path in out.iterdir() if path.is_dir())


@pytest.mark.parametrize("process", [*PROCESSES, "spd-perturbed"])
def test_every_process_runs_end_to_end(process: str, tmp_path: Path) -> None:
    extra = ["--process", "spd", "--perturb", "0.1"] if process == "spd-perturbed" else ["--process", process]
    code, output = spdbench("run", *extra, *TINY, "--out", str(tmp_path))
    assert code == 0, output
    (run_dir,) = run_dirs(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_steps"] == 3 and summary["samples"] == 6 and summary["nfe"] == 3
    assert np.isfinite(summary["final_loss"])
    scores = summary["scores"]
    assert scores["samples"] == 6 and np.isfinite(scores["fid"]) and scores["fid_low"] <= scores["fid_high"]
    images = np.load(run_dir / "samples.npz")["images"]
    assert images.shape == (6, 1, 28, 28) and images.dtype == np.uint8
    config = json.loads((run_dir / "config.json").read_text())
    assert config["process"]["process"] == ("spd" if process == "spd-perturbed" else process)
    assert (run_dir / "samples.png").stat().st_size > 0 and (run_dir / "metrics.jsonl").exists()


def test_a_run_is_reproducible_from_its_seed(tmp_path: Path) -> None:
    for out in ("a", "b"):
        code, output = spdbench("run", "--process", "spd", *TINY, "--out", str(tmp_path / out))
        assert code == 0, output
    (first,), (second,) = run_dirs(tmp_path / "a"), run_dirs(tmp_path / "b")
    images = [np.load(run / "samples.npz")["images"] for run in (first, second)]
    assert np.array_equal(*images)


def test_fid_is_evaluated_during_training(tmp_path: Path) -> None:
    """The smoke budget evaluates every 20 steps (not at the last step, which is the run's score)."""
    arguments = ["--process", "ddpm", "--budget", "smoke", "--steps", "21", "--batch", "4", "--samples", "4"]
    code, output = spdbench("run", *arguments, "--nfe", "2", "--quiet", "--out", str(tmp_path))
    assert code == 0, output
    (run_dir,) = run_dirs(tmp_path)
    (entry,) = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert entry["step"] == 20 and entry["samples"] == 32 and np.isfinite(entry["fid"])


def test_dry_run_prints_the_configuration_and_writes_nothing(tmp_path: Path) -> None:
    code, output = spdbench("run", "--process", "spd", "--perturb", "0.1", *TINY, "--out", str(tmp_path), "--dry-run")
    assert code == 0, output
    config = json.loads(output)
    assert config["process"]["perturb"] == 0.1 and config["process"]["perturb_kind"] == "desync"
    assert config["train"]["train_steps"] == 3 and config["sampler"]["nfe"] == 3
    assert config["process"]["label"] == "spd-desync+0.1"
    assert config["run_id"].startswith("spd-desync+0.1-fmnist-smoke-s0-")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_run_chooses_its_sampler(tmp_path: Path) -> None:
    """``--sampler``, ``--grid``, ``--nfe`` and the settings the solver uses reach config.json; the
    paper budget samples as each paper did."""
    code, output = spdbench("run", "--process", "spd", *TINY, "--sampler", "dpmpp3m", "--grid", "edm", "--nfe", "10",
                            "--dry-run")
    assert code == 0, output
    assert json.loads(output)["sampler"] == {
        "solver": "dpmpp3m", "grid": "edm", "nfe": 10, "clip_x0": True, "spectrum": "empirical"
    }
    code, output = spdbench("run", "--process", "spd", *TINY, "--sampler", "unipc3", "--grid", "logsnr", "--nfe", "9",
                            "--corrector", "0.2", "--dry-run")
    assert code == 0, output
    assert json.loads(output)["sampler"] == {
        "solver": "unipc3", "grid": "logsnr", "nfe": 9, "clip_x0": True, "corrector": 0.2, "spectrum": "empirical"
    }
    resolved = runs.resolve_run(runs.RunRequest("spd", sampler="unipc3", nfe=9, corrector=0.2))
    assert len(resolved.grid) == 10 and len(torch.unique_consecutive(resolved.grid)) == 6  # 5 solver calls, 4 more
    again = runs.with_sampler(runs.RunRequest("spd", sampler="unipc3", nfe=9, corrector=0.2), {"projection": 1.0})
    assert (again.corrector, again.projection, again.sampler) == (None, 1.0, "unipc3")  # one replaces the other
    code, output = spdbench("run", "--process", "ddpm", *TINY, "--nfe", "9", "--projection", "2", "--dry-run")
    assert code == 0, output
    assert json.loads(output)["sampler"]["projection"] == 2.0 and "corrector" not in json.loads(output)["sampler"]
    papers = {}
    for process in PROCESSES:
        code, output = spdbench(
            "run", "--process", process, "--budget", "paper", "--dataset", "cifar10", "--spectrum", "paper", "--dry-run"
        )
        assert code == 0, output
        papers[process] = json.loads(output)["sampler"]
    assert papers["ddpm"] == {"solver": "ancestral", "grid": "native", "nfe": 1000, "eta": 1.0, "variance": "large",
                              "clip_x0": True}
    assert papers["spd"] == {"solver": "ancestral", "grid": "native", "nfe": 4000, "eta": 1.0, "variance": "large",
                             "clip_x0": False}
    assert papers["heat"] == {"solver": "ihdm", "grid": "native", "nfe": 200, "eta": 1.0}
    assert papers["blurring"]["variance"] == "small" and papers["blurring"]["nfe"] == 1000


def test_grid_auto_gives_each_process_the_sampler_measured_best() -> None:
    """With ``--grid auto`` each process gets, at its 20 calls, the solver and grid with the lowest
    exact W2² with a network error of std 0.1 among every one that serves it."""
    from corruptions import ConfigurationError, make_process
    from spdbench.grids import GRIDS, Grids
    from spdbench.samplerreport import measure, oracle_grid
    from spdbench.solvers import solvers_for
    from spdbench.spectra import process_spectrum, resolve_spectrum

    spectrum = resolve_spectrum("empirical", "fmnist")
    for name in PROCESSES:
        code, output = spdbench("run", "--process", name, "--grid", "auto", "--dry-run")
        assert code == 0, output
        chosen = json.loads(output)["sampler"]
        process = make_process(name, (1, 28, 28), spectrum=spectrum)
        grids = Grids(process, process_spectrum(spectrum, process))
        errors = {}
        for grid in GRIDS:
            try:
                on = oracle_grid(process, grids.make(grid, 20), process_spectrum(spectrum, process))
            except ConfigurationError:  # a grid the process cannot have
                continue
            for solver in solvers_for(process):
                errors[solver, grid] = measure(on, solver, grid, full=False).w2_at_error
        assert errors[chosen["solver"], chosen["grid"]] == min(errors.values()) and chosen["nfe"] == 20, name


def test_any_process_option_is_passed_through(tmp_path: Path) -> None:
    """``--option NAME=VALUE`` reaches the process (numbers as numbers); the SPD shorthand is the
    same request as its options spelt out."""
    code, output = spdbench(
        "run", "--process", "ddpm", "--option", "schedule=cosine", "--option", "levels=500", *TINY, "--dry-run"
    )
    assert code == 0, output
    config = json.loads(output)
    assert config["process"]["schedule"] == "cosine" and config["process"]["levels"] == 500
    assert config["run_id"].startswith("ddpm-schedule=cosine-levels=500-fmnist-smoke-s0-")
    shorthand = spdbench("run", "--process", "spd", "--perturb", "0.1", "--perturb-kind", "time", *TINY, "--dry-run")
    spelt_out = spdbench(
        "run", "--process", "spd", "--option", "perturb=0.1", "--option", "perturb_kind=time", *TINY, "--dry-run"
    )
    assert shorthand == spelt_out and shorthand[0] == 0
    # An integer for a float option is that float: the same configuration, the same run.
    integer = json.loads(spdbench("run", "--process", "spd", "--option", "perturb=0", *TINY, "--dry-run")[1])
    plain = json.loads(spdbench("run", "--process", "spd", *TINY, "--dry-run")[1])
    assert integer["run_id"] == plain["run_id"] and integer["process"]["perturb"] == 0.0


def test_finished_run_is_not_redone_and_interrupted_run_resumes(tmp_path: Path) -> None:
    code, _ = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    assert code == 0
    (run_dir,) = run_dirs(tmp_path)
    samples = np.load(run_dir / "samples.npz")["images"]
    stamp = (run_dir / "summary.json").stat().st_mtime_ns
    code, output = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    assert code == 0 and str(run_dir) in output
    assert (run_dir / "summary.json").stat().st_mtime_ns == stamp

    (run_dir / "summary.json").unlink()  # as if killed while sampling
    (run_dir / "samples.npz").unlink()
    log = (run_dir / "metrics.jsonl").read_text()
    code, output = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    assert code == 0, output
    assert (run_dir / "metrics.jsonl").read_text() == log  # resumed at the end: no step retrained
    assert np.array_equal(np.load(run_dir / "samples.npz")["images"], samples)  # seeded per image

    (run_dir / "stale.txt").write_text("")  # --force starts again from nothing
    code, output = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path), "--force")
    assert code == 0, output
    assert not (run_dir / "stale.txt").exists() and (run_dir / "summary.json").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [run_dir.name]


EVALUATED_TWICE = runs.RunRequest("ddpm", budget="smoke", train_steps=41, batch=4, nfe=2, samples=4)
"""Checkpoints at steps 20, 40 and 41; evaluations at 20 and 40, each right after its checkpoint."""


def evaluations(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]


def test_a_resumed_run_records_what_an_uninterrupted_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between a checkpoint and its evaluation, the run redoes that evaluation from the
    checkpoint; trained again from the start, its evaluations are not duplicated; killed after
    its final checkpoint, it still reports the training it did."""
    run = runs.resolve_run(EVALUATED_TWICE)
    whole_dir, whole = runs.execute(run, tmp_path / "whole")
    assert [entry["step"] for entry in evaluations(whole_dir)] == [20, 40]

    real_append = runs.append_evaluation

    def killed_at_step_40(run_dir: Path, step: int, fid: float, samples: int) -> None:
        if step == 40:
            raise KeyboardInterrupt
        real_append(run_dir, step, fid, samples)

    monkeypatch.setattr(runs, "append_evaluation", killed_at_step_40)
    with pytest.raises(KeyboardInterrupt):
        runs.execute(run, tmp_path / "killed")
    run_dir = tmp_path / "killed" / run.run_id
    assert load_checkpoint(run_dir).step == 40 and [entry["step"] for entry in evaluations(run_dir)] == [20]
    monkeypatch.setattr(runs, "append_evaluation", real_append)
    _, resumed = runs.execute(run, tmp_path / "killed")
    assert evaluations(run_dir) == evaluations(whole_dir)
    assert resumed["scores"] == whole["scores"] and resumed["final_loss"] == whole["final_loss"]

    for name in ("summary.json", "samples.npz", "checkpoints"):  # trained again from the start
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    runs.execute(run, tmp_path / "killed")
    assert evaluations(run_dir) == evaluations(whole_dir)

    (run_dir / "summary.json").unlink()  # killed after the final checkpoint, while sampling
    _, finished = runs.execute(run, tmp_path / "killed")
    assert finished["final_loss"] == whole["final_loss"] and finished["train_steps"] == 41
    assert 0 < finished["train_seconds"] and finished["images_per_second"] == pytest.approx(
        41 * 4 / finished["train_seconds"]
    )


def test_score_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _ = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    assert code == 0
    (run_dir,) = run_dirs(tmp_path)
    code, output = spdbench("score", "--run", str(run_dir))
    assert code == 0, output
    scores = json.loads(output)
    assert scores == json.loads((run_dir / "summary.json").read_text())["scores"]
    assert (run_dir / f"scores-{scores['features']}.json").exists()

    monkeypatch.setenv("SPDBENCH_INCEPTION_WEIGHTS", str(tmp_path / "missing" / "inception-2015-12-05.pt"))
    code, output = spdbench("score", "--run", str(run_dir), "--features", "inception")
    assert code == 2 and output.startswith("error: ") and output.count("\n") == 1
    assert "inception" in output.lower()

    code, output = spdbench("score", "--run", str(tmp_path))
    assert code == 2 and "is not a finished run" in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--process", "nope"], f"unknown process 'nope'; valid: {', '.join(PROCESSES)}"),
        (["--process", "spd", "--perturb", "1.5"], "|p| < 1"),
        (["--process", "spd", "--perturb", "0.1", "--perturb-kind", "bend"], "unknown perturb kind 'bend'"),
        (
            ["--process", "ddpm", "--perturb", "0.1"],
            "process 'ddpm' has no option perturb; its options: schedule, levels",
        ),
        (["--process", "ddpm", "--option", "levels=1"], "DDPM needs between 2 and 100000 levels, got 1"),
        (["--process", "ddpm", "--option", "levels=1000000000"], "DDPM needs between 2 and 100000 levels"),
        (["--process", "heat", "--option", "levels=100000000"], "heat needs between 1 and 100000 levels"),
        (["--process", "heat", "--option", "sigma=nan"], "sigma must be a finite number, got nan"),
        (["--process", "blurring", "--option", "sigma_blur_max=inf"], "sigma_blur_max must be a finite number"),
        (["--process", "ddpm", "--option", "levels"], "--option takes NAME=VALUE"),
        (["--process", "ddpm", "--dataset", "mnist"], "unknown dataset"),
        (["--process", "ddpm", "--budget", "huge"], "unknown budget 'huge'"),
        (["--process", "ddpm", "--steps", "0"], "--steps (train_steps) must be at least 1"),
        (["--process", "heat", "--nfe", "500"], "--nfe must lie in [1, 100] for heat (the levels"),
        (["--process", "blurring", "--nfe", "5000"], "--nfe must lie in [1, 1000] for blurring (the levels"),
        (["--process", "spd", "--spectrum", "flat"], "valid: empirical, fit, paper"),
        (["--process", "ddpm", "--budget", "paper"], "the network ddpm-cifar does not fit fmnist's 1×28×28 images"),
        (["--process", "ddpm", "--sampler", "nope"], "unknown sampler 'nope'; valid: ancestral, ddim, dpmpp2m"),
        (["--process", "heat", "--sampler", "dpmpp2m"], "sampler 'dpmpp2m' serves the FrequencyDiagonalGaussian"),
        (["--process", "ddpm", "--sampler", "ddim", "--eta", "0.5"], "sampler 'ddim' has no setting eta"),
        (["--process", "heat", "--no-clip"], "sampler 'ihdm' has no setting clip_x0"),
        (["--process", "ddpm", "--sampler", "ancestral", "--eta", "2"], "eta must lie in [0, 1]"),
        (["--process", "ddpm", "--sampler", "dpmpp3m", "--eta", "0.5"], "sampler 'dpmpp3m' has no setting eta"),
        (["--process", "ddpm", "--sampler", "ancestral", "--variance", "huge"], "variance must be 'small' or 'large'"),
        (["--process", "ddpm", "--grid", "nope"], "unknown grid 'nope'"),
        (["--process", "spd", "--grid", "edm", "--nfe", "5000"], "--nfe must lie in [1, 4000] for spd (on the edm"),
        (["--process", "heat", "--corrector", "0.3"], "sampler 'ihdm' has no setting corrector"),
        (["--process", "ddpm", "--corrector", "1.5"], "corrector must lie in [0, 1]"),
        (["--process", "ddpm", "--corrector", "0.3", "--nfe", "2"], "--corrector and --projection need --nfe of at"),
        (["--process", "ddpm", "--projection", "1", "--nfe", "2"], "--corrector and --projection need --nfe of at"),
        (["--process", "ddpm", "--corrector", "0.3", "--nfe", "2100"], "--nfe must lie in [3, 1999] for ddpm (with"),
        (["--process", "ddpm", "--corrector", "0.3", "--grid", "auto"], "ranks the samplers without a corrector"),
        (["--process", "ddpm", "--projection", "1", "--grid", "auto"], "ranks the samplers without a corrector"),
        (["--process", "heat", "--projection", "1"], "sampler 'ihdm' has no setting projection"),
        (["--process", "ddpm", "--projection", "-1"], "projection must lie in [0, 100]"),
        (["--process", "ddpm", "--projection", "1", "--corrector", "0.1"], "a Langevin corrector or a projection"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments: list[str], message: str, tmp_path: Path) -> None:
    code, output = spdbench("run", *arguments, "--out", str(tmp_path / "out"), "--dry-run")
    assert code == 2
    assert output.startswith("error: ") and output.count("\n") == 1 and message in output


def test_unwritable_results_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, output = spdbench("run", "--process", "ddpm", *TINY, "--out", str(blocker / "runs"))
    assert code == 2 and output.startswith("error: cannot write to") and output.count("\n") == 1


def test_corrupt_checkpoint_is_refused_and_left_alone(tmp_path: Path) -> None:
    code, _ = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    assert code == 0
    (run_dir,) = run_dirs(tmp_path)
    (run_dir / "summary.json").unlink()
    weights = next((run_dir / "checkpoints").rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    code, output = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    assert code == 2 and output.startswith("error: ") and output.count("\n") == 1
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


def test_a_full_disk_ends_with_one_line_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while the checkpoint of step 21 is written: the one of step 20 stays whole."""
    from spdbench import checkpoint

    real_write = checkpoint._write_synced

    def full_at_step_21(path: Path, data: bytes) -> None:
        if checkpoint.latest_checkpoint(path.parent.parent.parent) is not None:  # step 20 is written
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    arguments = ["--process", "ddpm", "--budget", "smoke", "--steps", "21", "--batch", "4", "--samples", "4"]
    monkeypatch.setattr(checkpoint, "_write_synced", full_at_step_21)
    code, output = spdbench("run", *arguments, "--nfe", "2", "--quiet", "--out", str(tmp_path))
    assert code == 2 and output.count("\n") == 1 and output.startswith("error: No space left on device: ")
    (run_dir,) = run_dirs(tmp_path)
    assert load_checkpoint(run_dir).step == 20 and not list((run_dir / "checkpoints").glob(".tmp-*"))
    assert not (run_dir / "summary.json").exists()
    monkeypatch.setattr(checkpoint, "_write_synced", real_write)  # space freed: the run resumes
    code, output = spdbench("run", *arguments, "--nfe", "2", "--quiet", "--out", str(tmp_path))
    assert code == 0, output
    assert json.loads((run_dir / "summary.json").read_text())["train_steps"] == 21


def test_a_checkpoint_without_its_training_state_is_refused(tmp_path: Path) -> None:
    from spdbench.checkpoint import save_checkpoint

    code, _ = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    (run_dir,) = run_dirs(tmp_path)
    saved = load_checkpoint(run_dir)
    meta = {key: value for key, value in saved.meta.items() if key != "optimizer"}
    shutil.rmtree(saved.path)
    save_checkpoint(run_dir, saved.step, saved.model, saved.ema, saved.state, meta)  # a valid manifest
    (run_dir / "summary.json").unlink()
    code, output = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path))
    assert code == 2 and output.count("\n") == 1
    assert output.startswith(f"error: the checkpoint {saved.path} lacks optimizer: it is damaged")


def test_missing_dataset_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spdbench import data

    def offline(url: str, out: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("SPDBENCH_DATA", str(tmp_path / "no-data"))
    monkeypatch.setattr(data, "_http_get", offline)
    data._load.cache_clear()
    try:
        code, output = spdbench("run", "--process", "ddpm", *TINY, "--out", str(tmp_path / "runs"))
    finally:
        data._load.cache_clear()
    assert code == 2 and output.startswith("error: ") and output.count("\n") == 1
    assert "apt-get install dataset-fashion-mnist" in output


#: A run long enough for one periodic evaluation (the smoke budget evaluates every 20 steps).
EVALUATED = runs.RunRequest("spd", budget="smoke", train_steps=21, batch=8, samples=6, nfe=3)


def _execute_worker(rank: int, world: int, port: int, out: Path, cache: str) -> None:
    """One rank of ``runs.execute`` started the way torchrun starts one."""
    become_rank(rank, world, port)
    os.environ["SPDBENCH_CACHE"] = cache
    runs.score_images = tiny_scores
    generate = runs.generate

    def logged_generate(*args: Any, **options: Any) -> torch.Tensor:
        """``generate``, noting which images this rank made."""
        images = generate(*args, **options)
        with (out / f"rank-{rank}.jsonl").open("a") as log:
            log.write(json.dumps([options["first"], len(images)]) + "\n")
        return images

    runs.generate = logged_generate
    runs.execute(runs.resolve_run(EVALUATED), out)


def _diverging_worker(rank: int, world: int, port: int, out: Path) -> None:
    """One rank sampling with the smoke network; rank 1's weights are NaN."""
    become_rank(rank, world, port)
    torch.distributed.init_process_group("gloo")
    try:
        run = runs.resolve_run(runs.RunRequest("ddpm", budget="smoke", spectrum="paper", nfe=2))
        net = UNet(network_config("smoke", 1, 28))
        if rank == 1:
            for parameter in net.parameters():
                parameter.data.fill_(float("nan"))
        try:
            runs.sample_from(run, net.eval(), torch.zeros(4, 1, 28, 28), 4, False)
            outcome = "sampled"
        except UserError as error:
            outcome = str(error)
        (out / f"rank-{rank}.txt").write_text(outcome)
    finally:
        torch.distributed.destroy_process_group()


def test_images_one_rank_finds_not_finite_stop_every_rank(tmp_path: Path) -> None:
    """Under torchrun a rank whose images diverge does not leave the others waiting at the
    gather: every rank raises the same one-line error."""
    torch.multiprocessing.spawn(_diverging_worker, args=(2, free_port(), tmp_path), nprocs=2)
    outcomes = [(tmp_path / f"rank-{rank}.txt").read_text() for rank in (0, 1)]
    assert outcomes[0] == outcomes[1] and outcomes[0].startswith("images 2–3 of the sample set are not finite")


def test_two_processes_sample_the_same_set_as_one(tmp_path: Path) -> None:
    """Under torchrun every rank samples a share of the set (final samples and periodic
    evaluations) and rank 0 writes the run: exactly the images one process draws from the same
    averaged weights."""
    args = (2, free_port(), tmp_path, os.environ["SPDBENCH_CACHE"])
    torch.multiprocessing.spawn(_execute_worker, args=args, nprocs=2)
    run = runs.resolve_run(EVALUATED)
    run_dir = tmp_path / run.run_id
    assert json.loads((run_dir / "summary.json").read_text())["samples"] == 6
    evaluations = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert [(e["step"], e["samples"]) for e in evaluations] == [(20, 32)]
    logs = [(tmp_path / f"rank-{rank}.jsonl").read_text().splitlines() for rank in (0, 1)]
    shares = [[json.loads(line) for line in log] for log in logs]
    assert shares == [[[0, 16], [0, 3]], [[16, 16], [3, 3]]]  # the evaluation's 32 images, then the final 6
    net = UNet(network_config("smoke", 1, 28))
    net.load_state_dict(load_checkpoint(run_dir).ema)
    alone = runs.sample_from(run, net.eval(), load_images("fmnist", "train"), 6, False)
    assert alone is not None and np.array_equal(np.load(run_dir / "samples.npz")["images"], alone.numpy())
