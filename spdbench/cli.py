"""The ``spdbench`` command line: parsing and printing only; every command calls the library.

Commands import what only they need (training, scoring) when they run, so that reading results
(``spdbench report``) never loads the machinery that made them. Every command is registered
with ``@command``, which turns every error into one line ``error: <message>`` on stderr and an
exit code (``spdbench.errors.command_errors``: 2 for what the user can fix, 1 for an internal
error), with no traceback.

A process's options are generic: ``--option NAME=VALUE`` (repeatable) passes any option to the
process, which validates it; ``--perturb P`` and ``--perturb-kind K`` are the shorthand for
SPD's ``perturb`` and ``perturb_kind``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from corruptions import PROCESSES
from spdbench.budgets import BUDGETS
from spdbench.data import DATA_DIR_VARIABLE, DATASETS
from spdbench.errors import OneLineCommand, OneLineGroup, UserError, command_errors, parse_path
from spdbench.files import check_output_directory
from spdbench.grids import GRIDS
from spdbench.pathreport import DISPLAY_COLUMNS, TEXT_COLUMNS, display_cells, paths_report
from spdbench.progress import hide_bars
from spdbench.records import suite_dirs
from spdbench.report import MARKDOWN_FILE, write_report
from spdbench.show import show_processes
from spdbench.solvers import SOLVERS

app = typer.Typer(
    help="A benchmark of image-corruption diffusion processes: DDPM, heat dissipation, blurring "
    "diffusion, Shortest Path Diffusion (SPD) and perturbed SPD.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineGroup,
)

P = ParamSpec("P")
FLAG = ""  #: the metavar of an on/off flag: it takes no value


def path_option(help: str) -> Any:
    """A typer option of a path (``<path>`` in the help), refused when empty (``parse_path``)."""
    return typer.Option(parser=parse_path, metavar="<path>", help=help)


@app.callback()
def main(
    data_dir: Annotated[
        Path | None,
        path_option(
            f"a directory holding the dataset's own files (Fashion-MNIST's four official .gz files; "
            f"CIFAR-10's python archive or its extracted batches), used instead of every other source; "
            f"also ${DATA_DIR_VARIABLE}"
        ),
    ] = None,
) -> None:
    """Options shared by every command."""
    if data_dir is not None:
        os.environ[DATA_DIR_VARIABLE] = str(data_dir)


def command(function: Callable[P, None]) -> Callable[P, None]:
    """Register ``function`` as a command of ``app`` (named after it) whose errors print
    ``error: <message>`` on one line to stderr and exit with the code ``command_errors`` gives;
    its help is its docstring with each paragraph's lines joined, as the terminal wraps them."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with command_errors(f"spdbench {function.__name__}"):
            function(*args, **kwargs)

    paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
    app.command(cls=OneLineCommand, help="\n\n".join(" ".join(text.split()) for text in paragraphs))(run)
    return run


SpectrumOption = Annotated[
    str,
    typer.Option(
        help="power spectrum of the data: empirical (measured on the training images, cached), "
        "fit (a power law fitted to it) or paper (the official SPD CIFAR-10 law, no data)"
    ),
]
DatasetOption = Annotated[str, typer.Option(help=f"dataset: {', '.join(DATASETS)}")]
OptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        help="a process option NAME=VALUE (repeatable; numbers are read as numbers), "
        "e.g. schedule=cosine or levels=500",
    ),
]
PerturbOption = Annotated[
    float | None, typer.Option(help="SPD's perturbation strength p, |p| < 1: shorthand for --option perturb=P")
]
PerturbKindOption = Annotated[
    str | None,
    typer.Option(help="SPD's perturbation family (desync, spectrum or time): shorthand for --option perturb_kind=K"),
]
RunOption = Annotated[
    Path, path_option("a finished run directory (config.json and checkpoints/)")
]
SizeOption = Annotated[int | None, typer.Option(help="image size N (N×N pixels); default: the dataset's")]
SamplerOption = Annotated[
    str | None, typer.Option(help=f"solver: {', '.join(SOLVERS)} (default: the budget's for the process)")
]
GridOption = Annotated[
    str | None, typer.Option(help=f"time grid: {', '.join(GRIDS)}, or auto (measured best) (default: the budget's)")
]


def solvers_with(setting: str) -> str:
    """The solvers that take ``setting``, as option help names them: listed, or ``every sampler
    but …`` where that is shorter."""
    taking = [name for name, solver in SOLVERS.items() if setting in solver.settings]
    others = [name for name in SOLVERS if name not in taking]
    return ", ".join(taking) if len(taking) <= len(others) else f"every sampler but {', '.join(others)}"


EtaOption = Annotated[float | None, typer.Option(help=f"noise scale η in [0, 1] ({solvers_with('eta')})")]
VarianceOption = Annotated[str | None, typer.Option(help=f"small or large step variance ({solvers_with('variance')})")]
CorrectorOption = Annotated[
    float | None,
    typer.Option(
        help="Langevin corrector step ε in [0, 1] (0: none); about half of the --nfe calls "
        f"({solvers_with('corrector')})"
    ),
]
ProjectionOption = Annotated[
    float | None,
    typer.Option(
        help="Ghimire et al.'s projection step δμ in [0, 100] (0: none); about half of the --nfe calls "
        f"({solvers_with('projection')})"
    ),
]
ClipOption = Annotated[
    bool | None,
    typer.Option("--clip/--no-clip", metavar=FLAG, help=f"clip x̂0 to [-1, 1] ({solvers_with('clip_x0')})"),
]


def option_value(text: str) -> Any:
    """``text`` as an int, else a float, else ``true``/``false`` as a bool, else the string itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def requested_options(pairs: list[str] | None, perturb: float | None, perturb_kind: str | None) -> dict[str, Any]:
    """The process options of ``--option NAME=VALUE`` and of the SPD shorthand; a one-line error
    for a pair without ``=`` or an option given twice."""
    given = [*(pairs or [])]
    given += [f"perturb={perturb}"] if perturb is not None else []
    given += [f"perturb_kind={perturb_kind}"] if perturb_kind is not None else []
    options: dict[str, Any] = {}
    for pair in given:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise UserError(f"--option takes NAME=VALUE, got {pair!r}")
        if name.strip() in options:
            raise UserError(f"the process option {name.strip()!r} is given twice")
        options[name.strip()] = option_value(value.strip())
    return options


def invocation(command: str, given: dict[str, object]) -> str:
    """The command line that repeats a command: ``command`` and each flag given a value (not ``None``)."""
    return " ".join([command, *(f"{flag} {value}" for flag, value in given.items() if value is not None)])


@command
def paths(
    spectrum: SpectrumOption = "empirical",
    dataset: DatasetOption = "fmnist",
    size: SizeOption = None,
    channels: Annotated[int | None, typer.Option(help="image channels; default: the dataset's")] = None,
    out: Annotated[
        Path | None,
        path_option(
            "output directory; default: results/paths/<dataset>-<size>-<spectrum>, "
            "or results/paths/paper-<size>x<channels> for the paper spectrum"
        ),
    ] = None,
) -> None:
    """Fisher path length, speed and per-frequency SNR of every process (no training)."""
    given = {"--spectrum": spectrum, "--dataset": dataset, "--size": size, "--channels": channels, "--out": out}
    if out is not None:
        check_output_directory(out)
    report = paths_report(spectrum, dataset, size, channels, out, invocation("spdbench paths", given))
    table = Table(title=f"Fisher path length: {report.description}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in DISPLAY_COLUMNS:
        table.add_column(column, justify="left" if column in TEXT_COLUMNS else "right", no_wrap=True)
    for row in report.rows:
        table.add_row(*display_cells(row))
    Console().print(table)
    for path in report.files:
        typer.echo(f"wrote {path}")


@command
def samplers(
    spectrum: SpectrumOption = "empirical",
    dataset: DatasetOption = "fmnist",
    size: SizeOption = None,
    out: Annotated[
        Path | None,
        path_option("output directory; default: results/samplers/<dataset>-<size>"),
    ] = None,
) -> None:
    """Every solver × grid × NFE measured exactly with a perfect network on Gaussian data with the
    data's spectrum (no training): W2² to the data and error amplification."""
    from spdbench.samplerreport import sampler_report

    given = {"--spectrum": spectrum, "--dataset": dataset, "--size": size, "--out": out}
    if out is not None:
        check_output_directory(out)
    report = sampler_report(spectrum, dataset, size, out, invocation("spdbench samplers", given))
    typer.echo(report.files[1].read_text())
    for path in report.files:
        typer.echo(f"wrote {path}")


@command
def show(
    process: Annotated[str, typer.Option(help=f"process to show: {', '.join(PROCESSES)}, or all")],
    option: OptionOption = None,
    perturb: PerturbOption = None,
    perturb_kind: PerturbKindOption = None,
    dataset: DatasetOption = "fmnist",
    size: SizeOption = None,
    images: Annotated[int, typer.Option(help="number of training images (columns)")] = 6,
    times: Annotated[int, typer.Option(help="number of times (rows), evenly spread over the path")] = 6,
    spectrum: SpectrumOption = "empirical",
    seed: Annotated[int, typer.Option(help="seed of the image choice and the noise")] = 0,
    out: Annotated[Path, path_option("output directory")] = Path("results/show"),
) -> None:
    """PNG grids of training images corrupted by a process at several times, and of the noise part."""
    options = requested_options(option, perturb, perturb_kind)
    check_output_directory(out)
    files = show_processes(process, dataset, size, spectrum, options, images, times, seed, out)
    for path in files:
        typer.echo(f"wrote {path}")


@command
def run(
    process: Annotated[str, typer.Option(help=f"process to train: {', '.join(PROCESSES)}")],
    option: OptionOption = None,
    perturb: PerturbOption = None,
    perturb_kind: PerturbKindOption = None,
    dataset: DatasetOption = "fmnist",
    spectrum: SpectrumOption = "empirical",
    budget: Annotated[str, typer.Option(help=f"named budget: {', '.join(BUDGETS)}")] = "quick",
    steps: Annotated[int | None, typer.Option(help="optimizer (training) steps (default: the budget's)")] = None,
    batch: Annotated[int | None, typer.Option(help="global batch size (default: the budget's)")] = None,
    sampler: SamplerOption = None,
    grid: GridOption = None,
    nfe: Annotated[int | None, typer.Option(help="sampler network calls (default: the budget's)")] = None,
    eta: EtaOption = None,
    variance: VarianceOption = None,
    clip: ClipOption = None,
    corrector: CorrectorOption = None,
    projection: ProjectionOption = None,
    samples: Annotated[int | None, typer.Option(help="images to generate (default: the budget's)")] = None,
    seed: Annotated[int, typer.Option(help="seed of training and sampling")] = 0,
    out: Annotated[Path, path_option("directory of run directories")] = Path("runs"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar=FLAG, help="print the resolved configuration and exit")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", metavar=FLAG, help="start a finished or interrupted run again")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", metavar=FLAG, help="no progress bar")] = False,
) -> None:
    """Train one process, sample from it and write one run directory (resumes if interrupted)."""
    from spdbench.runs import RunRequest, execute, resolve_run

    options = requested_options(option, perturb, perturb_kind)
    request = RunRequest(
        process, options, dataset, spectrum, budget, train_steps=steps, batch=batch, sampler=sampler, grid=grid,
        nfe=nfe, eta=eta, variance=variance, clip_x0=clip, corrector=corrector, projection=projection,
        samples=samples, seed=seed,
    )
    resolved = resolve_run(request)
    if quiet:
        hide_bars()
    if dry_run:
        typer.echo(json.dumps({"run_id": resolved.run_id, **resolved.config()}, indent=2))
        return
    run_dir, summary = execute(resolved, out, force=force)
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"results in {run_dir}")


@command
def sample(
    run: RunOption,
    nfe: Annotated[str, typer.Option(help="network calls, comma-separated (full: the process's full grid)")],
    sampler: SamplerOption = None,
    grid: GridOption = None,
    eta: EtaOption = None,
    variance: VarianceOption = None,
    clip: ClipOption = None,
    corrector: CorrectorOption = None,
    projection: ProjectionOption = None,
    device: Annotated[str, typer.Option(help="device of the network: cpu, cuda")] = "cpu",
) -> None:
    """Sample a finished run again from its final weights with another sampler, grid or NFE, and
    score it like the run (resampled/<sampler>.json in the run directory)."""
    from spdbench.runs import sample_again

    try:
        counts = [None if count.strip() == "full" else int(count) for count in nfe.split(",")]
    except ValueError:
        raise UserError(f"--nfe takes integers (or full), comma-separated, got {nfe!r}") from None
    if len(set(counts)) < len(counts):
        raise UserError(f"--nfe names a count twice: {nfe!r}")
    changes = {"sampler": sampler, "grid": grid, "eta": eta, "variance": variance, "clip_x0": clip}
    records = sample_again(run, counts, {**changes, "corrector": corrector, "projection": projection}, device)
    table = Table(title=f"{run.name} sampled again", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("sampler", "NFE", "FID [95 % interval]", "seconds"):
        table.add_column(column, justify="left" if column == "sampler" else "right", no_wrap=True)
    for record in records:
        scores = record["scores"]
        interval = f"{scores['fid']:.2f} [{scores['fid_low']:.2f}, {scores['fid_high']:.2f}]"
        described = ", ".join(f"{key} {value}" for key, value in record["sampler"].items() if key != "nfe")
        table.add_row(described, str(record["sampler"]["nfe"]), interval, f"{record['sampling_seconds']:.0f}")
    Console().print(table)


@command
def geometry(
    run: RunOption,
    samples: Annotated[
        int | None, typer.Option(help="how many of the run's samples to follow (default: 200, or all it has)")
    ] = None,
    nfe: Annotated[int | None, typer.Option(help="network calls of the sampler (default: the run's)")] = None,
    sampler: SamplerOption = None,
    grid: GridOption = None,
    eta: EtaOption = None,
    corrector: CorrectorOption = None,
    projection: ProjectionOption = None,
    device: Annotated[str, typer.Option(help="device of the network and the optimal denoiser: cpu, cuda")] = "cpu",
) -> None:
    """The geometry of a finished run's sampling paths: chord deviation of the sampling and
    denoising trajectories, off-plane share, the gap from the empirical optimal denoiser, and FID
    when stopping early and returning x̂0 (geometry/ in the run directory). Its own sampler by
    default; a deterministic one (--sampler ddim, or --eta 0 for heat) measures the
    probability-flow path, as Chen et al. do."""
    from spdbench.geometryreport import geometry_report

    if samples is not None and samples < 2:
        raise UserError(f"--samples must be at least 2, got {samples}")
    changes = {"nfe": nfe, "sampler": sampler, "grid": grid, "eta": eta}
    changes |= {"corrector": corrector, "projection": projection}
    given = {"--run": run, "--samples": samples, **{f"--{key}": value for key, value in changes.items()}}
    given["--device"] = device if device != "cpu" else None
    files = geometry_report(run, samples, changes, device, invocation("spdbench geometry", given))
    typer.echo(files[1].read_text())
    for path in files:
        typer.echo(f"wrote {path}")


@command
def report(
    suite: Annotated[str | None, typer.Argument(help="suite name under --results; default: every suite there")] = None,
    results: Annotated[
        Path,
        path_option(
            "directory of suites (each with a suite.json): results (the committed reference suites) "
            "or runs (the suites run here: make bench and the others)"
        ),
    ] = Path("results"),
) -> None:
    """Tables (Markdown, CSV) and plots of a suite's runs, written into the suite's directory."""
    for suite_dir in suite_dirs(results, suite):
        files = write_report(suite_dir)
        typer.echo((suite_dir / MARKDOWN_FILE).read_text())
        for path in files:
            typer.echo(f"wrote {path}")


@command
def score(
    run: Annotated[Path, path_option("a finished run directory (holds samples.npz)")],
    features: Annotated[
        str, typer.Option(help="features: default (the dataset's), classifier (fmnist) or inception")
    ] = "default",
    device: Annotated[str, typer.Option(help="torch device for the features and the bootstrap")] = "cpu",
) -> None:
    """Score a run's samples again, e.g. with Inception features on a machine that has the weights
    (SPDBENCH_INCEPTION_WEIGHTS)."""
    from spdbench.runs import score_run

    typer.echo(json.dumps(score_run(run, features, device), indent=2))
