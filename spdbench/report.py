"""Tables and plots of a suite's runs: what ``spdbench report`` writes into ``results/<suite>/``.

A suite directory holds ``suite.json`` (what the suite is: its name, title, budget, dataset, how
its FID is computed, the command and machine that made it, the floor score, whether it is a
smoke test, and the ids of its runs) and ``runs/<run id>/``, each with ``config.json`` and either ``summary.json`` (with
``scores``, ``samples.png`` or ``samples.npz`` and, optionally, ``eval.jsonl`` from periodic
evaluation during training) or ``failed.json`` (``{"run_id", "error"}``); a run with neither is
unfinished. Every run the suite lists appears in the tables, whatever its status (``not started``
when it has no directory); run directories it does not list are named below the table and left
out. The plots show finished runs.

The report writes:

- ``fid.csv`` and ``fid.md``: one row per run (``COLUMNS``), sorted ddpm, heat, blurring, spd,
  then SPD's perturbations by kind and strength; the Markdown adds the suite's heading and, where
  a configuration was run with several seeds, its mean and standard deviation over them;
- ``fid.png`` (FID of each unperturbed process, with its 95 % bootstrap interval and the floor),
  ``fid_vs_perturb.png`` (FID against SPD's perturbation strength p, with the Fisher path's
  length on a second axis and the geodesic marked: the ``time`` kind keeps SPD's length, since
  it walks SPD's curve unevenly; the CSV's ``path_speed_cv`` tells that apart), ``fid_vs_step.png`` (the periodic evaluation during
  training) and ``samples.png`` (16 samples of each run). A plot with nothing to show says why.

The Fisher path efficiency (``geodesic / length``, 1 for SPD; ``spdbench.pathreport``) of every
row is measured under one data spectrum, the same for the whole table: the one the suite's
spectral runs were built with when they agree, else the dataset's empirical spectrum.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import statistics
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from corruptions import PERTURB_KINDS, PROCESSES, ConfigurationError, make_process, process_options
from corruptions.spectrum import Spectrum
from spdbench.budgets import BUDGETS
from spdbench.errors import UserError
from spdbench.files import write_text_atomically
from spdbench.pathreport import PathRow, measure_path, save_figure
from spdbench.runs import CONFIG, EVALUATIONS, FAILED, SAMPLE_GRID, SAMPLES, SUMMARY
from spdbench.show import PADDING, tile
from spdbench.spectra import resolve_spectrum

SUITE_FILE = "suite.json"
RUNS_DIR = "runs"

CSV_FILE = "fid.csv"
MARKDOWN_FILE = "fid.md"
SUITE_KEYS = ("suite", "title", "budget", "dataset", "features", "samples", "reference", "command", "machine")
SAMPLES_SHOWN = 16  #: images of each run in ``samples.png``, as a 4 × 4 grid
COLUMNS: tuple[str, ...] = (
    "process",
    "perturb_kind",
    "perturb",
    "budget",
    "seed",
    "status",
    "fid",
    "fid_low",
    "fid_high",
    "kid",
    "kid_std",
    "floor_fid",
    "nfe",
    "train_steps",
    "train_seconds",
    "images_per_second",
    "path_length",
    "path_efficiency",
    "path_speed_cv",
    "run_id",
    "error",
)
MARKDOWN_COLUMNS: tuple[str, ...] = (
    "process",
    "budget",
    "seed",
    "status",
    "FID [95 % interval]",
    "KID ± std",
    "floor FID",
    "NFE",
    "train steps",
    "train time",
    "images/s",
    "path efficiency",
    "run",
)
LEFT_ALIGNED = ("process", "budget", "status", "FID [95 % interval]", "run")


@dataclass(frozen=True)
class RunRecord:
    """One run directory as the report reads it."""

    run_id: str
    directory: Path
    config: dict[str, Any]  #: ``config.json``; empty when the run never wrote one
    summary: dict[str, Any] | None
    error: str | None
    evaluations: list[dict[str, Any]]  #: the lines of ``eval.jsonl``

    @property
    def status(self) -> str:
        """``done`` (a summary), ``failed`` (an error), ``not started`` (no directory) or
        ``unfinished`` (none of these)."""
        if self.summary is not None:
            return "done"
        if self.error is not None:
            return "failed"
        return "unfinished" if self.directory.is_dir() else "not started"

    @property
    def process_config(self) -> dict[str, Any]:
        return dict(self.config.get("process", {}))

    @property
    def process(self) -> str:
        return str(self.process_config.get("process", ""))

    @property
    def perturb(self) -> float:
        return float(self.process_config.get("perturb", 0.0))

    @property
    def perturb_kind(self) -> str:
        """SPD's perturbation family, or ``""`` for an unperturbed process."""
        return str(self.process_config["perturb_kind"]) if self.perturb else ""

    @property
    def label(self) -> str:
        """``spd``, or ``spd desync +0.1`` for a perturbed SPD (as ``spdbench paths`` names it)."""
        return f"{self.process} {self.perturb_kind} {self.perturb:+g}" if self.perturb else self.process

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def budget(self) -> str:
        return str(self.config.get("budget", ""))

    @property
    def scores(self) -> dict[str, Any] | None:
        """The run's score dict, or ``None`` when it has none (not finished, or not scored)."""
        return None if self.summary is None else self.summary.get("scores")

    @property
    def configuration(self) -> str:
        """The configuration without its seeds, as a string: runs that differ only by seed share it."""
        unseeded = {key: value for key, value in self.config.items() if key != "seed"}
        unseeded["train"] = {key: value for key, value in self.config.get("train", {}).items() if key != "seed"}
        return json.dumps(unseeded, sort_keys=True)


@dataclass(frozen=True)
class Suite:
    """A suite directory: ``suite.json`` and its runs, in table order."""

    directory: Path
    info: dict[str, Any]
    runs: list[RunRecord]  #: the runs ``suite.json`` lists (every run directory when it lists none)
    left_out: list[str]  #: run directories that ``suite.json`` does not list (another protocol)

    @property
    def smoke(self) -> bool:
        return bool(self.info.get("smoke"))

    @property
    def floor(self) -> dict[str, Any] | None:
        return self.info.get("floor")

    def scored(self) -> list[RunRecord]:
        """The finished runs that have scores: what the plots show."""
        return [run for run in self.runs if run.scores is not None]

    @property
    def mixes_budgets(self) -> bool:
        """Whether the runs have several budgets (``cifar``: paper recipes and a matched budget)."""
        return len({run.budget for run in self.runs}) > 1

    def run_label(self, run: RunRecord) -> str:
        """``spd desync +0.1``, with ``, matched`` when the suite mixes budgets: a run's
        configuration as the plots and the seed table name it."""
        return f"{run.label}, {run.budget}" if self.mixes_budgets else run.label


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a one-line error when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None


def read_run(directory: Path) -> RunRecord:
    """The record of the run in ``directory``."""
    config = directory / CONFIG
    summary = directory / SUMMARY
    failed = directory / FAILED
    evaluations = directory / EVALUATIONS
    return RunRecord(
        run_id=directory.name,
        directory=directory,
        config=read_json(config) if config.is_file() else {},
        summary=read_json(summary) if summary.is_file() else None,
        error=str(read_json(failed)["error"]) if failed.is_file() else None,
        evaluations=[json.loads(line) for line in evaluations.read_text().splitlines() if line.strip()]
        if evaluations.is_file()
        else [],
    )


def table_order(run: RunRecord) -> tuple[int, int, int, float, int, str]:
    """Sort key: the budgets in ``BUDGETS`` order, then the processes in registry order (ddpm,
    heat, blurring, spd), then SPD's perturbations by kind (``PERTURB_KINDS`` order) and
    strength, then seed; unknown ones last."""
    names, kinds = list(PROCESSES), ["", *PERTURB_KINDS]
    budget = BUDGETS.index(run.budget) if run.budget in BUDGETS else len(BUDGETS)
    process = names.index(run.process) if run.process in names else len(names)
    kind = kinds.index(run.perturb_kind) if run.perturb_kind in kinds else len(kinds)
    return budget, process, kind, run.perturb, -1 if run.seed is None else run.seed, run.run_id


def read_suite(directory: Path) -> Suite:
    """The suite in ``directory``; one-line errors when ``suite.json`` is missing or lacks a key."""
    path = directory / SUITE_FILE
    if not path.is_file():
        raise UserError(f"{directory} is not a suite: it has no {SUITE_FILE}")
    info = read_json(path)
    missing = [key for key in SUITE_KEYS if key not in info]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}")
    runs_dir = directory / RUNS_DIR
    found = sorted(run.name for run in runs_dir.iterdir() if run.is_dir()) if runs_dir.is_dir() else []
    listed = [str(run_id) for run_id in info.get("runs", found)]
    left_out = [run_id for run_id in found if run_id not in listed]
    runs = [read_run(runs_dir / run_id) for run_id in listed]
    return Suite(directory, info, sorted(runs, key=table_order), left_out)


def suite_dirs(results: Path, name: str | None) -> list[Path]:
    """The suite ``name`` under ``results``, or every directory there with a ``suite.json``."""
    suites = sorted(path.parent for path in results.glob(f"*/{SUITE_FILE}"))
    if name is None:
        if not suites:
            raise UserError(f"no suites in {results} (directories with a {SUITE_FILE})")
        return suites
    if not (results / name / SUITE_FILE).is_file():
        known = ", ".join(path.name for path in suites) or "none"
        raise UserError(f"unknown suite {name!r} in {results}; suites there: {known}")
    return [results / name]


# --- Fisher path efficiency ------------------------------------------------------------------


def path_spectrum_name(suite: Suite) -> str:
    """The data spectrum every path is measured under: the one the suite's spectral runs name,
    when they agree, else ``empirical``."""
    names = {run.process_config["spectrum"] for run in suite.runs if "spectrum" in run.process_config}
    return names.pop() if len(names) == 1 else "empirical"


def measure_paths(suite: Suite) -> dict[str, PathRow | str]:
    """Each run's path (by run id) under ``path_spectrum_name(suite)``, or why it has none (no
    configuration, the dataset's spectrum unavailable, the process not rebuilt as recorded).
    Processes are rebuilt from ``config.json`` with the spectrum they were built with, once per
    process configuration."""
    dataset = str(suite.info["dataset"])

    @functools.cache
    def spectrum(name: str) -> Spectrum:
        return resolve_spectrum(name, dataset)

    data_spectrum = path_spectrum_name(suite)
    measured: dict[str, PathRow | str] = {}
    paths: dict[str, PathRow | str] = {}
    for run in suite.runs:
        key = json.dumps([run.process_config, run.config.get("image_shape")], sort_keys=True)
        if key not in measured:
            measured[key] = measure_run_path(run, spectrum, data_spectrum)
        paths[run.run_id] = measured[key]
    return paths


def measure_run_path(run: RunRecord, spectrum: Callable[[str], Spectrum], data_spectrum: str) -> PathRow | str:
    """The path of ``run``'s process under data with ``spectrum(data_spectrum)``, or why not."""
    recorded = run.process_config
    if run.process not in PROCESSES or "image_shape" not in run.config:
        return "no process configuration"
    options = {key: value for key, value in recorded.items() if key in process_options(run.process)}
    try:
        built = spectrum(recorded.get("spectrum", data_spectrum))
        process = make_process(run.process, tuple(run.config["image_shape"]), spectrum=built, **options)
        if json.loads(json.dumps(process.config())) != recorded:
            return f"rebuilt as {process.config()}, not as recorded"
        return measure_path(process, spectrum(data_spectrum))
    except (UserError, ConfigurationError) as error:
        return " ".join(str(error).split())


# --- tables ----------------------------------------------------------------------------------


def suite_heading(suite: Suite) -> str:
    """What the numbers are: suite, budget, dataset, how FID was computed; smoke tests say so first."""
    info = suite.info
    smoke = "SMOKE TEST, NOT A RESULT: " if suite.smoke else ""
    return (
        f"{smoke}suite {info['suite']} ({info['title']}), budget {info['budget']}, dataset {info['dataset']}; "
        f"FID on {info['samples']} samples against {info['reference']}, features {info['features']}"
    )


def scoring_differences(suite: Suite) -> list[str]:
    """The scored runs whose FID was not computed as ``suite.json`` says (other features, sample
    count or reference), each as ``run id: key value``."""
    keys = ("features", "samples", "reference")
    return [
        f"{run.run_id}: " + ", ".join(f"{key} {scores.get(key)}" for key in keys)
        for run in suite.scored()
        if any((scores := run.scores or {}).get(key) != suite.info[key] for key in keys)
    ]


def record(run: RunRecord, path: PathRow | str, floor: dict[str, Any] | None) -> dict[str, Any]:
    """The CSV row of ``run`` (``COLUMNS`` to values; ``None`` for what it does not have)."""
    scores = run.scores or {}
    summary = run.summary or {}
    measured = path if isinstance(path, PathRow) else None
    return {
        "process": run.process,
        "perturb_kind": run.perturb_kind,
        "perturb": run.perturb,
        "budget": run.budget,
        "seed": run.seed,
        "status": run.status,
        "fid": scores.get("fid"),
        "fid_low": scores.get("fid_low"),
        "fid_high": scores.get("fid_high"),
        "kid": scores.get("kid"),
        "kid_std": scores.get("kid_std"),
        "floor_fid": None if floor is None else floor["fid"],
        "nfe": run.config.get("sampler", {}).get("nfe"),
        "train_steps": summary.get("train_steps"),
        "train_seconds": summary.get("train_seconds"),
        "images_per_second": summary.get("images_per_second"),
        "path_length": None if measured is None else measured.path.length,
        "path_efficiency": None if measured is None else measured.path.efficiency,
        "path_speed_cv": None if measured is None else measured.speed_cv,
        "run_id": run.run_id,
        "error": run.error,
    }


def duration(seconds: float) -> str:
    """``45 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def number(value: object, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``""`` for ``None``."""
    return "" if value is None else format(value, spec)


def markdown_cell(text: str) -> str:
    """``text`` on one line with its pipes escaped, fit for a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def fid_cell(run: RunRecord) -> str:
    """``12.34 [11.9, 12.8]``, or what the run is instead: ``failed: <error>``, ``unfinished``,
    ``not started``."""
    scores = run.scores
    if scores is not None:
        return f"{scores['fid']:.2f} [{scores['fid_low']:.2f}, {scores['fid_high']:.2f}]"
    if run.status == "done":
        return "not scored"
    return f"failed: {markdown_cell(run.error or '')}" if run.status == "failed" else run.status


def markdown_cells(row: dict[str, Any], run: RunRecord) -> list[str]:
    """The Markdown cells of ``run``, from its CSV ``row``, in ``MARKDOWN_COLUMNS`` order."""
    kid = "" if row["kid"] is None else f"{float(row['kid']):.4g} ± {float(row['kid_std']):.2g}"
    seconds = row["train_seconds"]
    return [
        run.label or "?",
        run.budget,
        number(row["seed"], "d"),
        run.status,
        fid_cell(run),
        kid,
        number(row["floor_fid"], ".2f"),
        number(row["nfe"], "d"),
        number(row["train_steps"], "d"),
        "" if seconds is None else duration(seconds),
        number(row["images_per_second"], ".1f"),
        number(row["path_efficiency"], ".4f"),
        f"`{run.run_id}`",
    ]


def markdown_table(header: tuple[str, ...], rows: list[list[str]], left: tuple[str, ...]) -> list[str]:
    """The lines of a Markdown table; the columns in ``left`` left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if column in left else "--:" for column in header) + "|")
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def mean_and_spread(values: list[float], spec: str) -> str:
    """``mean ± sample standard deviation`` of ``values`` (just the value for one)."""
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), spec)}"


def seed_lines(suite: Suite) -> list[str]:
    """A table of each configuration run with several seeds: FID and KID averaged over the seeds
    that finished; no lines when every configuration has one run."""
    groups: dict[str, list[RunRecord]] = {}
    for run in suite.runs:
        groups.setdefault(run.configuration, []).append(run)
    rows = []
    for runs in groups.values():
        if len(runs) < 2:
            continue
        scored = [run.scores for run in runs if run.scores is not None]
        seeds = ", ".join(number(run.seed, "d") for run in runs)
        fid = mean_and_spread([s["fid"] for s in scored], ".2f") if scored else ""
        kid = mean_and_spread([s["kid"] for s in scored], ".4g") if scored else ""
        rows.append([suite.run_label(runs[0]) or "?", seeds, f"{len(scored)} of {len(runs)}", fid, kid])
    if not rows:
        return []
    header = ("process", "seeds", "scored", "FID mean ± std", "KID mean ± std")
    intro = "Configurations run with several seeds: mean ± sample standard deviation over the scored seeds."
    return ["", "## Over seeds", "", intro, "", *markdown_table(header, rows, ("process", "seeds", "scored"))]


def markdown_text(suite: Suite, rows: list[dict[str, Any]], paths: dict[str, PathRow | str]) -> str:
    """``fid.md``: the heading, where the numbers come from, the table of runs and the seed table."""
    info, floor = suite.info, suite.floor
    lines = [f"# {suite_heading(suite)}", ""]
    if suite.smoke:
        lines += ["**smoke: these numbers say nothing about the processes.**", ""]
    floor_text = (
        "No floor score recorded."
        if floor is None
        else f"Floor ({floor['samples']:,} held-out real images scored the same way): FID {floor['fid']:.2f} "
        f"[{floor['fid_low']:.2f}, {floor['fid_high']:.2f}], KID {floor['kid']:.4g}."
    )
    lines += [
        f"Made by `{info['command']}` on {info['machine']}.",
        "",
        "FID with its 95 % bootstrap interval (the sampling noise at this sample count; compare FIDs "
        f"only at equal sample counts, next to the floor). {floor_text}",
        "",
        f"Path efficiency: geodesic / length of the process's Fisher path (1 = the shortest path), "
        f"under the {path_spectrum_name(suite)} spectrum of {info['dataset']}.",
        "",
    ]
    differences = scoring_differences(suite)
    if differences:
        lines += ["**Warning: these runs were scored otherwise than the heading says:**", ""]
        lines += [f"- {markdown_cell(difference)}" for difference in differences] + [""]
    cells = [markdown_cells(row, run) for row, run in zip(rows, suite.runs, strict=True)]
    lines += markdown_table(MARKDOWN_COLUMNS, cells, LEFT_ALIGNED)
    unmeasured = {run.label or run.run_id: why for run in suite.runs if isinstance(why := paths[run.run_id], str)}
    if unmeasured:
        lines += ["", "No path efficiency for:", ""]
        lines += [f"- {label}: {markdown_cell(why)}" for label, why in unmeasured.items()]
    if suite.left_out:
        lines += ["", f"Left out: run directories in `{RUNS_DIR}/` that `{SUITE_FILE}` does not list "
                  "(runs of an earlier protocol):", ""]
        lines += [f"- `{run_id}`" for run_id in suite.left_out]
    lines += seed_lines(suite)
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV with a header of ``COLUMNS``, numbers at full precision."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --- plots -----------------------------------------------------------------------------------


def titled_figure(suite: Suite, what: str, size: tuple[float, float]) -> Figure:
    """A figure titled ``what`` over the suite's heading (which says so first for a smoke test)."""
    figure = Figure(figsize=size, layout="constrained")
    heading = textwrap.fill(suite_heading(suite), width=int(size[0] * 11), break_on_hyphens=False)
    figure.suptitle(f"{what}\n{heading}", fontsize=10, color="firebrick" if suite.smoke else "black")
    return figure


def say_empty(axes: Axes, why: str) -> None:
    """Write ``why`` across empty ``axes``."""
    axes.text(0.5, 0.5, why, ha="center", va="center", transform=axes.transAxes, wrap=True)
    axes.set_xticks([])
    axes.set_yticks([])


def fid_axis_label(suite: Suite) -> str:
    return f"FID (features {suite.info['features']}; lower is better)"


def error_bar(axes: Axes, x: float, scores: dict[str, Any], **style: Any) -> None:
    """One FID with its 95 % interval as an error bar at ``x``."""
    low, high = scores["fid"] - scores["fid_low"], scores["fid_high"] - scores["fid"]
    axes.errorbar([x], [scores["fid"]], yerr=[[max(low, 0.0)], [max(high, 0.0)]], capsize=4, **style)


def draw_floor(axes: Axes, floor: dict[str, Any] | None) -> None:
    """The floor's FID as a dashed line with its interval shaded."""
    if floor is not None:
        axes.axhspan(floor["fid_low"], floor["fid_high"], color="grey", alpha=0.15)
        axes.axhline(floor["fid"], color="grey", ls="--", label=f"floor: held-out real images ({floor['fid']:.2f})")


def fid_figure(suite: Suite) -> Figure:
    """FID of each unperturbed process, one point per run (seeds side by side), with the floor."""
    figure = titled_figure(suite, "FID of each process (95 % bootstrap intervals)", (8, 5.5))
    axes = figure.subplots()
    runs = [run for run in suite.scored() if not run.perturb]  # in table order
    names = list(dict.fromkeys(suite.run_label(run) for run in runs))
    if not names:
        say_empty(axes, "no finished unperturbed run: nothing to plot")
        return figure
    label: str | None = "a run (seeds side by side) with its 95 % interval"
    for i, name in enumerate(names):
        group = [run for run in runs if suite.run_label(run) == name]
        offsets = np.linspace(-0.15, 0.15, len(group)) if len(group) > 1 else np.zeros(1)
        for offset, run in zip(offsets, group, strict=True):
            scores = run.scores or {}
            error_bar(axes, i + offset, scores, fmt="o", color="C0", label=label)
            axes.annotate(f"  {scores['fid']:.1f}", (i + offset, scores["fid"]), fontsize=8, va="center")
            label = None
    draw_floor(axes, suite.floor)
    axes.set_xticks(range(len(names)), [name.replace(", ", "\n") for name in names])
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("process")
    axes.set_ylabel(fid_axis_label(suite))
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8)
    return figure


def perturbation_series(spd: list[RunRecord], kind: str) -> list[RunRecord]:
    """The SPD runs perturbed by ``kind`` and, at p = 0, the unperturbed SPD runs of the same
    budgets (not, say, SPD's paper recipe beside perturbations run at the matched budget)."""
    budgets = {run.budget for run in spd if run.perturb_kind == kind}
    return [run for run in spd if run.perturb_kind in ("", kind) and run.budget in budgets]


def perturb_figure(suite: Suite, paths: dict[str, PathRow | str]) -> Figure:
    """FID against SPD's perturbation strength p, one line per kind through the mean over seeds
    (p = 0 is plain SPD), and the Fisher length of each path on a second axis, with the
    geodesic (the shortest path between the same endpoints) marked."""
    figure = titled_figure(suite, "FID against SPD's perturbation strength p (95 % bootstrap intervals)", (9, 5.5))
    axes = figure.subplots()
    spd = [run for run in suite.scored() if run.process == "spd"]
    kinds = [kind for kind in PERTURB_KINDS if any(run.perturb_kind == kind for run in spd)]
    if not kinds:
        say_empty(axes, "no finished perturbed SPD run: nothing to plot")
        return figure
    detour = axes.twinx()
    for i, kind in enumerate(kinds):
        runs = perturbation_series(spd, kind)
        strengths = sorted({run.perturb for run in runs})
        colour, shift = f"C{i}", 0.004 * (i - (len(kinds) - 1) / 2)  # kinds side by side at equal p
        for run in runs:
            error_bar(axes, run.perturb + shift, run.scores or {}, fmt="o", color=colour, alpha=0.8)
        means = [statistics.mean((run.scores or {})["fid"] for run in runs if run.perturb == p) for p in strengths]
        axes.plot([p + shift for p in strengths], means, color=colour, label=f"{kind}: FID (mean over seeds)")
        measured = {run.perturb: path for run in runs if isinstance(path := paths[run.run_id], PathRow)}
        ps = sorted(measured)
        lengths = [measured[p].path.length for p in ps]
        detour.plot(ps, lengths, color=colour, ls=":", marker="x", label=f"{kind}: path length")
        if 0.0 in measured:
            detour.axhline(measured[0.0].path.geodesic, color="black", ls=":", lw=0.8)
    draw_floor(axes, suite.floor)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("perturbation strength p (0 = SPD)")
    axes.set_ylabel(fid_axis_label(suite))
    detour.set_ylabel(f"Fisher path length (dotted; black: geodesic; {path_spectrum_name(suite)} spectrum)")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = detour.get_legend_handles_labels()
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.12), "ncol": 2}
    axes.legend(handles + more_handles, labels + more_labels, fontsize=8, **below)
    return figure


def run_style(i: int) -> dict[str, Any]:
    """A distinct line style for the ``i``-th run: 20 colours, then again dashed, then dotted."""
    return {"color": matplotlib.colormaps["tab20"](i % 20), "ls": ("-", "--", ":")[i // 20 % 3]}


def step_figure(suite: Suite) -> Figure:
    """The periodic evaluation's FID against the training step, one line per run."""
    what = "FID during training (periodic evaluation, on fewer samples than the final FID)"
    figure = titled_figure(suite, what, (10, 5.5))
    axes = figure.subplots()
    runs = [run for run in suite.scored() if run.evaluations]
    if not runs:
        say_empty(axes, f"no finished run has an evaluation during training ({EVALUATIONS}): nothing to plot")
        return figure
    for i, run in enumerate(runs):
        steps = [line["step"] for line in run.evaluations]
        fids = [line["fid"] for line in run.evaluations]
        axes.plot(steps, fids, marker=".", label=run_name(suite, run), **run_style(i))
    counts = sorted({line["samples"] for run in runs for line in run.evaluations})
    axes.set_xlabel("training step")
    axes.set_ylabel(f"FID on {', '.join(map(str, counts))} samples (features {suite.info['features']})")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return figure


def run_name(suite: Suite, run: RunRecord) -> str:
    """``spd desync +0.1, seed 0``: a run as the plots name it."""
    return f"{suite.run_label(run)}, seed {run.seed}"


def sample_image(run: RunRecord) -> np.ndarray | None:
    """``SAMPLES_SHOWN`` samples of ``run`` as an RGB grid of 4 × 4 images: the top left corner
    of its ``samples.png`` (a grid of at least 4 × 4 images, as ``spdbench.show.tile`` lays them
    out), else the first images of its ``samples.npz`` (a large file for a large run), else
    ``None``."""
    png, npz = run.directory / SAMPLE_GRID, run.directory / SAMPLES
    _, height, width = run.config["image_shape"]
    side = int(SAMPLES_SHOWN**0.5)
    if png.is_file():
        with Image.open(png) as image:
            right, bottom = side * (width + PADDING) + PADDING, side * (height + PADDING) + PADDING
            box = (0, 0, min(right, image.width), min(bottom, image.height))
            return np.asarray(image.convert("RGB").crop(box))
    if npz.is_file():
        with np.load(npz) as archive:
            images = torch.from_numpy(archive["images"][:SAMPLES_SHOWN]).float() / 255
        return tile([images[i : i + side] for i in range(0, len(images), side)]).numpy()
    return None


def samples_figure(suite: Suite) -> Figure:
    """Each finished run's samples, one panel per run, named by run, seed and FID."""
    runs = suite.scored()
    columns = max(1, min(4, len(runs)))
    rows = max(1, -(-len(runs) // columns))
    figure = titled_figure(suite, f"{SAMPLES_SHOWN} samples of each run", (3 * columns + 1, 3.2 * rows + 1))
    panels = figure.subplots(rows, columns, squeeze=False).flatten()
    if not runs:
        say_empty(panels[0], "no finished run: no samples to show")
    for axes, run in zip(panels, runs, strict=False):
        image = sample_image(run)
        if image is None:
            say_empty(axes, f"no {SAMPLES} or {SAMPLE_GRID}")
        else:
            axes.imshow(image, interpolation="nearest")
            axes.set_axis_off()
        axes.set_title(f"{run_name(suite, run)}\nFID {(run.scores or {})['fid']:.2f}", fontsize=9)
    for axes in panels[len(runs) :] if runs else []:
        axes.set_axis_off()
    return figure


# --- the report ------------------------------------------------------------------------------


def write_report(suite_dir: Path) -> list[Path]:
    """Write ``fid.csv``, ``fid.md`` and the plots of the suite in ``suite_dir`` into it; returns
    the files written."""
    suite = read_suite(suite_dir)
    paths = measure_paths(suite)
    rows = [record(run, paths[run.run_id], suite.floor) for run in suite.runs]
    written = [suite_dir / CSV_FILE, suite_dir / MARKDOWN_FILE]
    write_text_atomically(written[0], csv_text(rows))
    write_text_atomically(written[1], markdown_text(suite, rows, paths))
    figures = {
        "fid.png": fid_figure(suite),
        "fid_vs_perturb.png": perturb_figure(suite, paths),
        "fid_vs_step.png": step_figure(suite),
        "samples.png": samples_figure(suite),
    }
    for name, figure in figures.items():
        save_figure(figure, suite_dir / name)
        written.append(suite_dir / name)
    return written
