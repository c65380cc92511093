"""Run a suite: every run under one protocol, idempotently, then its report.

    python -m benchmarks.harness quick [--results runs] [--estimate-only]

It writes ``<results>/<suite>/``, by default under ``runs/``, which git ignores: ``results/``
holds the committed reference suites, and a clone whose harness wrote there would find their
runs done and skip them.

Finished runs are skipped, interrupted ones resume from their last checkpoint, and a run
that fails leaves ``failed.json`` (its error) so the table shows it instead of losing it; the
suite still writes its whole report, then exits non-zero naming the runs that did not finish.
Before starting, the harness times a few training steps and sampler calls of the suite's
networks on this machine and prints the estimated time of what is left to do; ``suite.json``
keeps, for each invocation that runs runs, its start, its seconds to the end of its last run,
rewritten after each run, and that estimate (``records.INVOCATION``), and the report states
their total.

Under ``torchrun`` (``make bench-cifar GPUS=N``) one process group serves the whole suite:
every rank trains each run (DistributedDataParallel) and samples its share of the images,
and rank 0 scores them and writes the records and the report.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import typer

from benchmarks.suites import SUITES, Suite, get_suite
from models import UNet, network_config
from spdbench.classifier import ClassifierConfig, classifier_available, estimate_training_seconds
from spdbench.errors import OneLineCommand, UserError, command_errors
from spdbench.files import check_output_directory
from spdbench.metrics import floor_score
from spdbench.progress import hide_bars
from spdbench.records import (
    FAILED,
    RUNS_DIR,
    SUITE_FILE,
    SUITE_KEYS,
    SUITE_KINDS,
    SUMMARY,
    read_record,
    read_suite,
    write_failure,
    write_json,
)
from spdbench.report import duration, write_report
from spdbench.runs import Run, execute, launch_rank, resolve_run
from spdbench.show import show_processes
from spdbench.train import process_group, training_device

SUITE_INCOMPLETE_EXIT_CODE = 1
"""The exit code of a suite that wrote its report with a run failed or missing."""


def say(line: str) -> None:
    """Print ``line`` once: on rank 0 under torchrun."""
    if launch_rank() == 0:
        print(line)


@dataclass(frozen=True)
class Costs:
    """Measured seconds per training step and per sampler network call of one run's settings."""

    train_step: float
    sampler_call: float


def measure_costs(run: Run, repeats: int = 3) -> Costs:
    """Time ``repeats`` training steps (after one warm-up) and sampler calls of ``run``'s network."""
    shape = run.process.image_shape
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = UNet(network_config(run.network, shape[0], shape[1])).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(run.train.batch, *shape, device=device)
    t = torch.rand(run.train.batch, device=device)
    timings = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        optimizer.zero_grad()
        net(x, t).square().mean().backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    train_step = sum(timings[1:]) / repeats
    net.eval()
    batch = torch.randn(min(run.sample_batch, run.samples), *shape, device=device)
    with torch.no_grad():
        started = time.perf_counter()
        for _ in range(repeats):
            net(batch, torch.rand(len(batch), device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return Costs(train_step, (time.perf_counter() - started) / repeats)


@dataclass(frozen=True)
class Estimate:
    """The estimated seconds of the runs left, and its basis: the costs of each setting timed."""

    seconds: float
    costs: dict[tuple[str, int, int], Costs]

    def basis(self, device: str) -> list[str]:
        """One line per (network, training batch, sampling batch): the costs the estimate used."""
        return [
            f"  basis: network {network}: {cost.train_step:.3f} s a training step at batch {batch}, "
            f"{cost.sampler_call:.3f} s a sampler call on {sample_batch} images, timed on this {device} now "
            "(feature extraction and data loading not counted)"
            for (network, batch, sample_batch), cost in self.costs.items()
        ]


def estimate_seconds(
    runs: list[Run], done: set[str], costs_of: Callable[[Run], Costs] = measure_costs
) -> Estimate:
    """Estimated seconds of the runs not yet done: steps × step cost + sampler calls (final
    samples and periodic evaluations) × call cost, the costs from ``costs_of`` once per setting."""
    costs: dict[tuple[str, int, int], Costs] = {}
    total = 0.0
    for run in runs:
        if run.run_id in done:
            continue
        key = (run.network, run.train.batch, run.sample_batch)
        if key not in costs:
            costs[key] = costs_of(run)
        evaluations = (run.train.train_steps - 1) // run.eval_every
        batches = -(-run.samples // run.sample_batch)
        batches += evaluations * -(-run.eval_samples // run.sample_batch)
        total += run.train.train_steps * costs[key].train_step + run.nfe * batches * costs[key].sampler_call
    return Estimate(total, costs)


DEFAULT_RESULTS = Path("runs")
"""Where suites go unless told: ignored by git, apart from the committed ``results/``."""


def estimate_line(seconds: float, runs_left: int, world: int, device: str) -> str:
    """The estimate printed before a suite starts: ``seconds`` (one device's cost, from
    ``estimate_seconds``) split over ``world`` devices, communication not counted (``duration``);
    then the device-hours."""
    span = duration(seconds / world)
    devices = f"{world} {device}" + ("s" if world > 1 else "")
    return f"estimated time for the {runs_left} runs left: {span} on {devices} ({seconds / 3600:.2f} {device}-hours)"


def run_suite(suite: Suite, results: Path, estimate_only: bool = False) -> Path:
    """Run every run of ``suite`` into ``<results>/<suite>/runs/`` and write the report; then, if
    any run failed or is missing, say which on one line and exit with ``SUITE_INCOMPLETE_EXIT_CODE``."""
    clock, started_utc = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    suite_dir = results / suite.name
    runs_dir = suite_dir / RUNS_DIR
    leader = launch_rank() == 0  # under torchrun, only rank 0 writes records and reports
    check_output_directory(suite_dir)
    runs = [resolve_run(request) for request in suite.runs]
    done = {run.run_id for run in runs if (runs_dir / run.run_id / SUMMARY).exists()}
    say(f"suite {suite.name}: {len(runs)} runs, {len(done)} done; timing this machine for the estimate…")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = "GPU" if torch.cuda.is_available() else "CPU"
    estimate = estimate_seconds(runs, done)
    say(estimate_line(estimate.seconds, len(runs) - len(done), world, device))
    for line in estimate.basis(device):
        say(line)
    estimated = estimate.seconds / world
    if suite.dataset == "fmnist" and not classifier_available(ClassifierConfig()):
        seconds = estimate_training_seconds(ClassifierConfig())
        estimated += seconds
        say(f"  plus {duration(seconds)} to train the Fashion-MNIST feature classifier (once; then cached)")
    if estimate_only:
        return suite_dir
    invocation = {"started": started_utc, "seconds": 0.0, "runs": 0, "estimated_seconds": estimated}
    recorded = invocation if len(done) < len(runs) else None  # nothing to run: not recorded
    record = write_suite_record(suite, runs, suite_dir, recorded) if leader else {}
    with process_group(training_device(None)):  # under torchrun, one group serves every run
        for index, run in enumerate(runs, 1):
            if run.run_id in done:
                say(f"[{index}/{len(runs)}] {run.run_id}: done, skipped")
                continue
            say(f"[{index}/{len(runs)}] {run.run_id}")
            run_one(run, runs_dir, leader)
            if leader:
                invocation.update(seconds=time.perf_counter() - clock, runs=invocation["runs"] + 1)
                write_json(suite_dir / SUITE_FILE, record)  # holds ``invocation``: killed later, it keeps this
    if leader:
        for path in [*write_report(suite_dir), *write_corruption_grids(suite, suite_dir / "show")]:
            say(f"wrote {path}")
        unfinished = [run for run in read_suite(suite_dir).runs if run.status != "done"]
        if unfinished:
            listed = "; ".join(f"{run.run_id} ({run.error or run.status})" for run in unfinished)
            print(f"error: {len(unfinished)} of {len(runs)} runs of suite {suite.name} did not finish: {listed}; "
                  f"the report in {suite_dir} shows them", file=sys.stderr)
            raise SystemExit(SUITE_INCOMPLETE_EXIT_CODE)
    return suite_dir


def run_one(run: Run, runs_dir: Path, leader: bool) -> None:
    """Execute ``run``; if it fails, the leader writes ``failed.json`` and every rank goes on
    to the next run (an error every rank sees, such as a non-finite loss, keeps them in step;
    one that a single rank sees leaves the others waiting until the group's timeout)."""
    run_dir = runs_dir / run.run_id
    try:
        if leader:
            (run_dir / FAILED).unlink(missing_ok=True)
        execute(run, runs_dir)
    except Exception as error:  # noqa: BLE001 - a failed run is recorded, the suite goes on
        message = " ".join(str(error).split()) or type(error).__name__
        if leader:
            write_failure(run_dir, message, traceback.format_exc())
            say(f"    failed: {message}")


def write_corruption_grids(suite: Suite, out: Path) -> list[Path]:
    """What each process of the suite does to real images (``spdbench show``), beside its report."""
    spectrum = suite.runs[0].spectrum if suite.runs else "empirical"
    return show_processes("all", suite.dataset, None, spectrum, {}, 6, 6, 0, out)


def write_suite_record(
    suite: Suite, runs: list[Run], suite_dir: Path, invocation: dict[str, Any] | None
) -> dict[str, Any]:
    """``suite.json``: the protocol, the machine, the floor (held-out real images scored like
    the samples, at the same count), the suite's run ids (what its report shows) and the
    invocations of the harness that ran them (``records.INVOCATION``): the earlier ones (those of a
    record listing other runs are not these runs' and are dropped), then ``invocation``, this one;
    returns it. With ``invocation`` ``None`` (every run is done) a readable record of these runs
    is left as it is: it says when and where they ran."""
    earlier: list[dict[str, Any]] = []
    path = suite_dir / SUITE_FILE
    with contextlib.suppress(UserError):  # an unreadable record is written anew
        found = read_record(path, SUITE_KEYS, SUITE_KINDS) if path.is_file() else {}
        if found.get("runs") == [run.run_id for run in runs]:
            if invocation is None:  # nothing to run: the record (its date, machine, floor) stands
                return found
            earlier = found.get("invocations", [])
    samples = max(run.samples for run in runs)
    floor = floor_score(suite.dataset, samples)
    record = {
        "suite": suite.name,
        "title": suite.title,
        "budget": ", ".join(sorted({run.budget for run in runs})),
        "dataset": suite.dataset,
        "features": floor.features,
        "samples": samples,
        "reference": floor.reference,
        "command": suite.command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "floor": floor.to_dict(),
        "smoke": suite.smoke,
        "claims_about": suite.claims_about,
        "runs": [run.run_id for run in runs],
        "invocations": earlier + ([invocation] if invocation is not None else []),
    }
    write_json(path, record)
    return record


def main(
    suite: str = typer.Argument(help=f"suite to run: {', '.join(SUITES)}"),
    results: Path = typer.Option(
        DEFAULT_RESULTS, help="directory of suite directories (the committed reference suites are in results/)"
    ),
    estimate_only: bool = typer.Option(False, "--estimate-only", metavar="", help="print the time estimate and stop"),
    quiet: bool = typer.Option(False, "--quiet", metavar="", help="no progress bars"),
) -> None:
    """Run a suite and write its report."""
    if quiet:
        hide_bars()
    with command_errors(f"benchmarks.harness {suite}"):
        run_suite(get_suite(suite), results, estimate_only)


app = typer.Typer(add_completion=False)
app.command(cls=OneLineCommand)(main)

if __name__ == "__main__":
    app()
