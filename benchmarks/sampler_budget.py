"""How much of a finished suite's scores is its sampler budget: each chosen run's final (EMA)
checkpoint sampled again with other numbers of network calls, with ``x̂_0`` clipping on or
off, and scored like the suite (same sample set seeds, count and features). At the suite's own
sampler settings it reproduces the run's recorded FID. Prints a table; writes nothing.

    python -m benchmarks.sampler_budget quick --nfe 20,100 [--processes ddpm,spd] [--seeds 0]
        [--clip on,off] [--results results]

Only runs of processes at their defaults are chosen (``--processes`` names them); the suite must have been run
with its checkpoints kept (``make bench``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import typer

from benchmarks.suites import get_suite
from corruptions import PROCESSES, ConfigurationError
from models import UNet, network_config
from spdbench.checkpoint import load_checkpoint
from spdbench.data import load_images
from spdbench.errors import UserError
from spdbench.metrics import Score, score_images
from spdbench.runs import Run, resolve_run, sample_from


def rescore(run: Run, run_dir: Path, nfe: int, clip_x0: bool) -> Score:
    """The score of ``run``'s sample set drawn from the EMA weights in ``run_dir`` with ``nfe``
    network calls and ``x̂_0`` clipping ``clip_x0``."""
    shape = run.process.image_shape
    net = UNet(network_config(run.network, shape[0], shape[1]))
    net.load_state_dict(load_checkpoint(run_dir).ema)
    variant = dataclasses.replace(run, nfe=nfe, sampler=dataclasses.replace(run.sampler, clip_x0=clip_x0))
    images = load_images(run.dataset, "train")
    samples = sample_from(variant, net.eval(), images, run.samples, bf16=False)
    assert samples is not None  # one process: it gets every image
    return score_images(samples, run.dataset, seed=run.seed)


def main(
    suite: str = typer.Argument(help="a suite whose runs are finished, e.g. quick"),
    nfe: str = typer.Option("20,100", help="network calls to sample with, comma-separated"),
    processes: str = typer.Option(",".join(PROCESSES), help="processes (at their defaults), comma-separated"),
    seeds: str = typer.Option("0", help="seeds, comma-separated"),
    clip: str = typer.Option("on", help="x0 clipping: on, off or on,off"),
    results: Path = typer.Option(Path("results"), help="directory of suite directories"),
) -> None:
    """Print each chosen run's FID at every sampler setting asked for."""
    try:
        counts = [int(n) for n in nfe.split(",")]
        clips = [{"on": True, "off": False}[c] for c in clip.split(",")]
        chosen_seeds = {int(s) for s in seeds.split(",")}
    except (ValueError, KeyError):
        typer.echo("error: --nfe and --seeds take integers, --clip takes on, off or on,off", err=True)
        raise typer.Exit(2) from None
    try:
        requests = [
            r
            for r in get_suite(suite).runs
            if r.process in processes.split(",") and not r.options and r.seed in chosen_seeds
        ]
        print(f"suite {suite}: FID of each run sampled again (sample count, seeds and features as the suite)")
        print("| run | NFE | clip x̂0 | FID [95 % interval] | seconds |")
        print("|---|--:|---|---|--:|")
        for request in requests:
            run = resolve_run(request)
            run_dir = results / suite / "runs" / run.run_id
            for count in counts:
                for clip_x0 in clips:
                    started = time.perf_counter()
                    score = rescore(run, run_dir, count, clip_x0)
                    interval = f"{score.fid:.2f} [{score.fid_low:.2f}, {score.fid_high:.2f}]"
                    seconds = time.perf_counter() - started
                    print(f"| {run.run_id} | {count} | {'on' if clip_x0 else 'off'} | {interval} | {seconds:.0f} |")
    except (UserError, ConfigurationError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    typer.run(main)
