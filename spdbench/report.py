"""Tables and plots of a suite's runs: what ``spdbench report`` writes into the suite's directory
(``runs/<suite>/`` for a suite run here, ``results/<suite>/`` for a committed one).

It reads the suite and run records (``spdbench.records``) and nothing of the machinery that made
them. Every run the suite lists appears in the tables, whatever its status (``not started``
when it has no directory); run directories it does not list are named below the table and left
out. The plots show finished runs.

The report writes:

- ``fid.csv`` and ``fid.md``: one row per run (``COLUMNS``), sorted by budget, by process in
  registry order, each process at its defaults first, then its other options, then the rest of
  its configuration and its seed (``table_order``); the Markdown adds
  the suite's heading and, where a configuration was run with several seeds, its mean and
  standard deviation over them;
- ``fid.png`` (FID of each process at its defaults, with its 95 % bootstrap interval and the
  floor), ``fid_vs_nfe.png`` and a table in ``fid.md`` (FID against the sampler and NFE, for
  the runs sampled again with ``spdbench sample``), ``fid_vs_option.png`` (for each sweep, runs
  of one process that differ in one numeric option: FID against that option, with the Fisher
  path's length on a second axis and the geodesic marked; SPD's ablations are such sweeps, and
  the CSV's ``path_speed_cv`` tells apart a path walked unevenly), ``fid_vs_step.png`` (the periodic evaluation during
  training) and ``samples.png`` (16 samples of each run). A plot with nothing to show says why.

Runs are named by their process's label (``spd-desync+0.1``); configurations that share a label
and a budget but differ in more (a sampler, a training setting) are named apart by what differs,
``spd (sampler.solver=ddim)``, and the tables, plots and verdicts never pool their runs.

The Fisher path efficiency (``geodesic / length``, 1 for SPD; ``spdbench.pathreport``) of every
row is measured under one data spectrum, the same for the whole table: the one the suite's
spectral runs were built with when they agree, else the dataset's empirical spectrum.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from corruptions import PROCESSES, ConfigurationError, make_process, process_options
from corruptions.spectrum import Spectrum
from spdbench.budgets import BUDGETS
from spdbench.errors import UserError
from spdbench.figures import panel_grid, save_figure
from spdbench.files import write_text_atomically
from spdbench.groups import Sweep, is_default, is_number, option_sweeps, seed_groups
from spdbench.pathreport import PathRow, measure_path
from spdbench.records import (
    EVALUATIONS,
    RUNS_DIR,
    SAMPLE_GRID,
    SAMPLES,
    SUITE_FILE,
    RunRecord,
    SuiteRecord,
    as_json,
    read_samples,
    read_suite,
)
from spdbench.show import PADDING, tile
from spdbench.spectra import resolve_spectrum
from spdbench.tables import csv_text, frame, markdown_text
from spdbench.verdicts import claims, fid_of, seed_mean

CSV_FILE = "fid.csv"
MARKDOWN_FILE = "fid.md"
SAMPLES_SHOWN = 16  #: images of each run in ``samples.png``, as a 4 × 4 grid
COLUMNS: tuple[str, ...] = (
    "process",
    "label",
    "name",
    "options",
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


def mixes_budgets(suite: SuiteRecord) -> bool:
    """Whether the runs have several budgets (``cifar``: paper recipes and a matched budget),
    among those that started (one that never did has no budget to tell)."""
    return len({run.budget for run in suite.runs if run.config}) > 1


def run_label(suite: SuiteRecord, run: RunRecord) -> str:
    """``spd-desync+0.1``: a run's configuration as the tables and plots name it (``SuiteRecord.names``),
    with ``, matched`` when the suite mixes budgets."""
    name = suite.names[run.run_id]
    return f"{name}, {run.budget}" if mixes_budgets(suite) else name


def table_order(run: RunRecord) -> tuple[int, int, bool, tuple[str, ...], tuple[float, ...], str, int, str]:
    """Sort key: the budgets in ``BUDGETS`` order, then the processes in registry order, each at
    its defaults first, then by its text options and its numeric options (in name order), then
    by the rest of its configuration (configurations that share a label stay together), then
    seed; unknown ones last."""
    names = list(PROCESSES)
    budget = BUDGETS.index(run.budget) if run.budget in BUDGETS else len(BUDGETS)
    process = names.index(run.process) if run.process in names else len(names)
    options = sorted(run.options.items())
    texts = tuple(str(value) for _, value in options if not is_number(value))
    numbers = tuple(float(value) for _, value in options if is_number(value))
    seed = -1 if run.seed is None else run.seed
    return budget, process, not is_default(run), texts, numbers, run.configuration, seed, run.run_id


def ordered(suite: SuiteRecord) -> SuiteRecord:
    """``suite`` with its runs in table order (``table_order``)."""
    return dataclasses.replace(suite, runs=sorted(suite.runs, key=table_order))


# --- Fisher path efficiency ------------------------------------------------------------------


def path_spectrum_name(suite: SuiteRecord) -> str:
    """The data spectrum every path is measured under: the one the suite's spectral runs name,
    when they agree, else ``empirical``."""
    names = {run.process_config["spectrum"] for run in suite.runs if "spectrum" in run.process_config}
    return names.pop() if len(names) == 1 else "empirical"


def measure_paths(suite: SuiteRecord) -> dict[str, PathRow | str]:
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
        if as_json(process.config()) != recorded:
            return f"rebuilt as {process.config()}, not as recorded"
        return measure_path(process, spectrum(data_spectrum))
    except (UserError, ConfigurationError) as error:
        return " ".join(str(error).split())


# --- tables ----------------------------------------------------------------------------------


def suite_heading(suite: SuiteRecord) -> str:
    """What the numbers are: suite, budget, dataset, how FID was computed; smoke tests say so first."""
    info = suite.info
    smoke = "SMOKE TEST, NOT A RESULT: " if suite.smoke else ""
    return (
        f"{smoke}suite {info['suite']} ({info['title']}), budget {info['budget']}, dataset {info['dataset']}; "
        f"FID on {info['samples']} samples against {info['reference']}, features {info['features']}"
    )


def scoring_differences(suite: SuiteRecord) -> list[str]:
    """The FIDs of the scored runs, and of their sample sets drawn again, that were not computed as
    ``suite.json`` says (other features, sample count or reference), each as ``run id: key value``
    (``run id, <sampler> at N NFE: …`` for one drawn again)."""
    keys = ("features", "samples", "reference")
    found = []
    for run, sampler, scores, own in nfe_points(suite):
        if any(scores.get(key) != suite.info[key] for key in keys):
            where = run.run_id if own else f"{run.run_id}, {sampler_cell(sampler)} at {sampler.get('nfe')} NFE"
            found.append(f"{where}: " + ", ".join(f"{key} {scores.get(key)}" for key in keys))
    return found


def record(run: RunRecord, name: str, path: PathRow | str, floor: dict[str, Any] | None) -> dict[str, Any]:
    """The CSV row of ``run``, named ``name`` (``SuiteRecord.names``), ``COLUMNS`` to values
    (``None`` for what it does not have)."""
    scores = run.scores or {}
    summary = run.summary or {}
    measured = path if isinstance(path, PathRow) else None
    return {
        "process": run.process,
        "label": run.label,
        "name": name,
        "options": json.dumps(run.options, sort_keys=True) if run.options else None,
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


def invocations_text(invocations: list[dict[str, Any]]) -> str:
    """What the harness's invocations (``records.INVOCATION``) took in all, from the start of each
    to the end of its last run (installing spdbench and writing the report not counted), and what
    the first estimated; ``""`` for none (records from before the harness kept them)."""
    if not invocations:
        return ""
    runs = sum(entry["runs"] for entry in invocations)
    first = invocations[0]
    times = (
        f"one invocation, from its start to its last run; it started {first['started']} and estimated"
        if len(invocations) == 1
        else f"{len(invocations)} invocations, each from its start to its last run; the first started "
        f"{first['started']} and estimated"
    )
    return (
        f" The harness ran {runs} run{'s' * (runs != 1)} in {duration(sum(entry['seconds'] for entry in invocations))} "
        f"({times} {duration(first['estimated_seconds'])} for the runs left then)."
    )


def number(value: object, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``""`` for ``None``."""
    return "" if value is None else format(value, spec)


def markdown_cell(text: str) -> str:
    """``text`` on one line with its pipes escaped, fit for a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def fid_text(scores: dict[str, Any]) -> str:
    """``12.34 [11.90, 12.80]``: a FID with its 95 % bootstrap interval."""
    return f"{scores['fid']:.2f} [{scores['fid_low']:.2f}, {scores['fid_high']:.2f}]"


def fid_cell(run: RunRecord) -> str:
    """``12.34 [11.9, 12.8]``, or what the run is instead: ``failed: <error>``, ``unfinished``,
    ``not started``."""
    if run.scores is not None:
        return fid_text(run.scores)
    if run.status == "done":
        return "not scored"
    return f"failed: {markdown_cell(run.error or '')}" if run.status == "failed" else run.status


def markdown_cells(row: dict[str, Any], run: RunRecord, name: str) -> list[str]:
    """The Markdown cells of ``run``, named ``name``, from its CSV ``row``, in ``MARKDOWN_COLUMNS`` order."""
    kid = "" if row["kid"] is None else f"{float(row['kid']):.4g} ± {float(row['kid_std']):.2g}"
    seconds = row["train_seconds"]
    return [
        name or "?",
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


def seed_lines(suite: SuiteRecord) -> list[str]:
    """The table of each configuration run with several seeds (``seed_table``) with what it
    shows; none when every configuration has one run."""
    table = seed_table(suite)
    if not table:
        return []
    intro = (
        "Configurations run with several seeds: the mean FID over the scored seeds with its Student-t "
        "interval over seeds, which holds both the training seed's noise and the sample set's (each "
        "seed's FID is one draw of both); the per-run intervals in the table above hold only the "
        "sample set's."
    )
    return ["", "## Over seeds", "", intro, "", table]


def seed_table(suite: SuiteRecord) -> str:
    """FID averaged over the seeds that finished, with its t-interval over seeds
    (``spdbench.verdicts.seed_mean``), for each configuration run with several seeds; empty
    when there is none."""
    rows = []
    for runs in seed_groups(suite.runs):
        if len(runs) < 2:
            continue
        scored = [run for run in runs if run.scores is not None]
        fids = [fid_of(run) for run in scored]
        estimate = seed_mean(fids) if fids else None
        rows.append([
            run_label(suite, runs[0]) or "?",
            ", ".join(number(run.seed, "d") for run in runs),
            f"{len(scored)} of {len(runs)}",
            estimate.text(".2f") if estimate is not None else "",
            format(statistics.stdev(fids), ".2f") if len(fids) > 1 else "",
        ])
    if not rows:
        return ""
    header = ("process", "seeds", "scored", "FID mean over seeds [95 % interval]", "std over seeds")
    return markdown_text(frame(rows, header), left=("process", "seeds", "scored"))


def verdict_lines(suite: SuiteRecord) -> list[str]:
    """The table of the papers' claims this suite tests (``spdbench.verdicts.claims``), or a line
    saying it tests none."""
    table = verdict_table(suite)
    if not table:
        return ["## Verdicts", "", "This suite's finished runs test none of the papers' claims.", ""]
    intro = (
        "Each claim of the papers behind this benchmark that the runs can test. Differences are paired "
        "by training seed and their Student-t intervals are over seeds; slopes are fitted within "
        "seeds (one intercept per seed), with their t-intervals. A claim is supported or contradicted "
        "only when the interval excludes zero; \"no difference detected\" means this suite could not "
        "tell, not that there is no difference: the interval says how large a difference it could miss."
    )
    return ["## Verdicts", "", intro, "", table, ""]


def verdict_table(suite: SuiteRecord) -> str:
    """The claims the suite's runs test (``spdbench.verdicts.claims``), one row each; empty
    when they test none."""
    tested = claims(suite.runs, suite.info.get("claims_about"))
    if not tested:
        return ""
    header = ("claim", "measured", "estimate [95 % interval]", "runs", "verdict", "the claim is")
    rows = [[c.claim, c.measure, c.estimate.text(".1f"), c.evidence, c.verdict, c.holds] for c in tested]
    return markdown_text(frame(rows, header), left=header[:2] + header[3:])


@dataclasses.dataclass(frozen=True)
class Training:
    """The mean FID over seeds of each process at its defaults (each configuration of it, by its
    table name) at every periodic evaluation of a budget's runs, and at the end."""

    steps: list[int]  #: the evaluations' steps, those of every run
    samples: list[int]  #: the evaluations' sample counts
    means: dict[str, list[float]]  #: per process, at each of ``steps`` and then at the end

    @property
    def points(self) -> list[str]:
        """The columns of the table: ``step 150``, …, ``end``."""
        return [f"step {step}" for step in self.steps] + ["end"]

    def order(self, i: int) -> tuple[str, ...]:
        """The processes from the lowest mean FID to the highest at ``points[i]``."""
        return tuple(sorted(self.means, key=lambda label: self.means[label][i]))


def training(suite: SuiteRecord, budget: str) -> Training | None:
    """The ``Training`` of ``budget``'s runs; none with fewer than two processes or two evaluations."""
    runs = [run for run in suite.scored() if run.budget == budget and is_default(run) and run.evaluations]
    by_process: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_process.setdefault(run_label(suite, run), []).append(run)
    if len(by_process) < 2:
        return None
    steps = sorted(set.intersection(*({entry["step"] for entry in run.evaluations} for run in runs)))
    if len(steps) < 2:
        return None
    means = {
        label: [statistics.fmean(entry["fid"] for run in members for entry in run.evaluations
                                 if entry["step"] == step) for step in steps]
        + [statistics.fmean(fid_of(run) for run in members)]
        for label, members in by_process.items()
    }
    samples = sorted({entry["samples"] for run in runs for entry in run.evaluations})
    return Training(steps, samples, means)


def training_lines(suite: SuiteRecord) -> list[str]:
    """The ``Training`` of each budget as a table, and whether the order of the processes at the
    last evaluations and at the end is stable; none without evaluations."""
    lines = []
    for budget in dict.fromkeys(run.budget for run in suite.scored()):
        found = training(suite, budget)
        if found is None:
            continue
        points = found.points
        orders = [found.order(i) for i in range(len(points))]
        rows = [[label, *(format(value, ".1f") for value in values)] for label, values in found.means.items()]
        last = " < ".join(orders[-1])
        if orders[-1] == orders[-2] == orders[-3]:
            said = (f"The order of the mean FIDs ({last}) is the same at the last two evaluations and at the end "
                    "(an order of means, without intervals).")
        else:
            changes = [f"{points[i - 1]} → {points[i]}" for i in range(1, len(points)) if orders[i] != orders[i - 1]]
            said = f"The order of the mean FIDs is still changing ({', '.join(changes)}); at the end: {last}."
        intro = (
            f"Mean FID over seeds during training (periodic evaluations of {', '.join(map(str, found.samples))} "
            f"samples; the end: the runs' own {suite.info.get('samples', '?')} samples, whose FID is lower for "
            "the larger count alone, so compare orders across the columns, not values)."
        )
        table = markdown_text(frame(rows, ("process", *points)), left=("process",))
        heading = "## Over training" + (f", {budget}" if mixes_budgets(suite) else "")
        lines += ["", heading, "", intro, "", table, "", said]
    return lines


def report_markdown(suite: SuiteRecord, rows: list[dict[str, Any]], paths: dict[str, PathRow | str]) -> str:
    """``fid.md``: the heading, the verdicts, where the numbers come from, the table of runs, then
    the sections over seeds, over training, against the sampler and NFE, and of the geometry."""
    info, floor = suite.info, suite.floor
    lines = [f"# {suite_heading(suite)}", ""]
    if suite.smoke:
        lines += ["**smoke: these numbers say nothing about the processes.**", ""]
    lines += verdict_lines(suite)
    floor_text = (
        "No floor score recorded."
        if floor is None
        else f"Floor ({floor['samples']:,} held-out real images scored the same way): FID {floor['fid']:.2f} "
        f"[{floor['fid_low']:.2f}, {floor['fid_high']:.2f}], KID {floor['kid']:.4g}."
    )
    lines += [
        f"Made by `{info['command']}` on {info['machine']}.{invocations_text(info.get('invocations', []))}",
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
    cells = [markdown_cells(row, run, suite.names[run.run_id]) for row, run in zip(rows, suite.runs, strict=True)]
    lines.append(markdown_text(frame(cells, MARKDOWN_COLUMNS), left=LEFT_ALIGNED))
    unmeasured = {
        suite.names[run.run_id] or run.run_id: why
        for run in suite.runs if isinstance(why := paths[run.run_id], str)
    }
    if unmeasured:
        lines += ["", "No path efficiency for:", ""]
        lines += [f"- {label}: {markdown_cell(why)}" for label, why in unmeasured.items()]
    if suite.left_out:
        lines += ["", f"Left out: run directories in `{RUNS_DIR}/` that `{SUITE_FILE}` does not list "
                  "(runs of an earlier protocol):", ""]
        lines += [f"- `{run_id}`" for run_id in suite.left_out]
    lines += seed_lines(suite)
    lines += training_lines(suite)
    lines += nfe_lines(suite)
    lines += geometry_lines(suite)
    return "\n".join(lines) + "\n"


def sampler_cell(sampler: dict[str, Any]) -> str:
    """``dpmpp3m, edm`` and the settings the solver uses (not the NFE, not the spectrum)."""
    shown = [f"{key} {value}" for key, value in sampler.items() if key not in ("solver", "grid", "nfe", "spectrum")]
    return ", ".join([str(sampler.get("solver", "?")), str(sampler.get("grid", "?")), *shown])


def nfe_points(suite: SuiteRecord) -> list[tuple[RunRecord, dict[str, Any], dict[str, Any], bool]]:
    """Every scored run's own sample set and each one drawn again (``spdbench sample``), as
    ``(run, sampler, scores, whether it is the run's own)``; one drawn again with the run's own
    sampler that reproduced its scores is that set again, not another point (one that did not,
    on another device, say, stays a row of its own)."""
    points = []
    for run in suite.scored():
        own = dict(run.config.get("sampler", {}))
        points.append((run, own, run.scores or {}, True))
        points += [(run, dict(again["sampler"]), again["scores"], False) for again in run.resampled
                   if (again["sampler"], again["scores"]) != (own, run.scores)]
    return points


def nfe_lines(suite: SuiteRecord) -> list[str]:
    """A table of FID against the sampler and NFE, for the runs sampled again; none without."""
    if not any(run.resampled for run in suite.scored()):
        return []
    ordered_points = sorted(
        nfe_points(suite), key=lambda point: (table_order(point[0]), sampler_cell(point[1]), point[1].get("nfe", 0))
    )
    rows = [
        [run_label(suite, run), number(run.seed, "d"), sampler_cell(sampler), number(sampler.get("nfe"), "d"),
         fid_text(scores)]
        for run, sampler, scores, _ in ordered_points
    ]
    header = ("process", "seed", "sampler", "NFE", "FID [95 % interval]")
    intro = (
        "Each run's final weights sampled again with other samplers and numbers of network calls "
        "(`spdbench sample`), scored like the run (same sample set seeds, count and features); the "
        "run's own sampler is among the rows."
    )
    table = markdown_text(frame(rows, header), left=("process", "seed", "sampler"))
    return ["", "## FID against the sampler and NFE", "", intro, "", table]


def geometry_lines(suite: SuiteRecord) -> list[str]:
    """A table of the sampling paths' geometry of the runs ``spdbench geometry`` measured; none
    without."""
    measured = sorted((run for run in suite.scored() if run.geometry is not None), key=table_order)
    if not measured:
        return []
    rows = []
    for run in measured:
        shape = run.geometry
        assert shape is not None
        gap = shape["optimal_gap_mean"]
        rows.append([
            run_label(suite, run),
            number(run.seed, "d"),
            f"{sampler_cell(shape.get('sampler', {}))}, {shape['steps']} NFE",
            number(shape["samples"], "d"),
            f"{shape['sampling_deviation_max']:.3f} / {shape['sampling_deviation_mean']:.3f}",
            f"{shape['denoising_deviation_max']:.3f} / {shape['denoising_deviation_mean']:.3f}",
            f"{shape['sampling_off_plane'][0]:.4f}",
            "" if gap is None else f"{gap:.3f}",
            f"{shape['final_fid']:.2f}",
            f"{shape['best_jump_fid']:.2f} after {shape['best_jump_calls']}",
        ])
    header = (
        "process", "seed", "sampler", "samples", "chord deviation, sampling (max / mean)",
        "chord deviation, denoising (max / mean)", "off-plane share", "gap from r*", "FID",
        "best jump: FID after calls",
    )
    intro = (
        "Measured by `spdbench geometry` on the first samples of each run's own sample set "
        "(`spdbench.geometry`). Chord deviation: the distance of each point of a path from the straight "
        "line through its ends, over that line's length (0 for a straight path), averaged over samples; "
        "max and mean over the path. Sampling trajectory: the states the network sees; denoising "
        "trajectory: the x̂₀ the solver uses. Off-plane share: the path's variance that its chord and one "
        "more principal direction leave out. Gap from r*: the RMS per pixel of the network's x̂₀ minus the "
        "empirical optimal denoiser's (the posterior mean over the training set under the process's own "
        "forward law), averaged over the path. FID: of these samples; jump: of the x̂₀ of one call taken as "
        "the sample (both scored on these samples only, so comparable within this table, not with the "
        "table above)."
    )
    table = markdown_text(frame(rows, header), left=("process", "seed", "sampler"))
    return ["", "## Geometry of the sampling paths", "", intro, "", table]


def nfe_figure(suite: SuiteRecord) -> Figure:
    """FID against NFE (log scale), one panel per process configuration, one line per sampler
    through the mean over the seeds it has at every one of its NFEs, named in its label (where
    no seed is common, each point's mean over its own seeds, labelled "mixed seeds"); a figure
    that says why when no run was sampled again."""
    points = nfe_points(suite) if any(run.resampled for run in suite.scored()) else []
    labels = list(dict.fromkeys(run_label(suite, run) for run, *_ in points))
    columns, rows = max(1, min(2, len(labels))), max(1, -(-len(labels) // 2))
    figure = titled_figure(suite, "FID against NFE (runs sampled again)", (6 * columns + 1, 6 * rows + 1))
    panels = panel_grid(figure, len(labels), columns)
    if not labels:
        say_empty(panels[0], "no run was sampled again (spdbench sample): nothing to plot")
    for axes, label in zip(panels, labels, strict=False):
        own = [(run.seed, sampler, scores) for run, sampler, scores, _ in points if run_label(suite, run) == label]
        for i, name in enumerate(dict.fromkeys(sampler_cell(sampler) for _, sampler, _ in own)):
            line: dict[int, dict[int, float]] = {}
            for seed, sampler, scores in own:
                if sampler_cell(sampler) == name:
                    line.setdefault(int(sampler["nfe"]), {})[seed] = float(scores["fid"])
            nfes = sorted(line)
            common = set.intersection(*(set(line[n]) for n in nfes))
            fids = [statistics.mean(fid for seed, fid in line[n].items() if seed in common or not common) for n in nfes]
            listed = ", ".join(str(seed) for seed in sorted(common))
            seeds = f"seed{'s' if len(common) > 1 else ''} {listed}" if common else "mixed seeds"
            axes.plot(nfes, fids, marker="o", label=f"{name} ({seeds})", **run_style(i))
        draw_floor(axes, suite.floor)
        axes.set_xscale("log")
        axes.set_ylim(bottom=0)
        axes.set_title(label, fontsize=10)
        axes.set_xlabel("NFE (network calls)")
        axes.set_ylabel(fid_axis_label(suite))
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below: the lines stay seen
    return figure


# --- plots -----------------------------------------------------------------------------------


def titled_figure(suite: SuiteRecord, what: str, size: tuple[float, float]) -> Figure:
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


def fid_axis_label(suite: SuiteRecord) -> str:
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


SEED_MEAN_LABEL = "mean over seeds, 95 % t-interval over seeds (training and sample-set noise)"


def fid_figure(suite: SuiteRecord) -> Figure:
    """FID of each process at its defaults (each configuration of it), one point per run (seeds side by side) with its
    bootstrap interval (the sample set's noise alone), then, for several seeds, their mean with
    its t-interval over seeds (``seed_mean``: both sources of noise); and the floor."""
    title = "FID of each process (runs: 95 % bootstrap intervals; means: 95 % t-intervals over seeds)"
    figure = titled_figure(suite, title, (8, 6.5))
    axes = figure.subplots()
    runs = [run for run in suite.scored() if is_default(run)]  # in table order
    names = list(dict.fromkeys(run_label(suite, run) for run in runs))
    if not names:
        say_empty(axes, "no finished run of a process at its defaults: nothing to plot")
        return figure
    label: str | None = "a run (seeds side by side) with its 95 % interval"
    mean_label: str | None = SEED_MEAN_LABEL
    for i, name in enumerate(names):
        group = [run for run in runs if run_label(suite, run) == name]
        offsets = np.linspace(-0.15, 0.15, len(group)) if len(group) > 1 else np.zeros(1)
        for offset, run in zip(offsets, group, strict=True):
            scores = run.scores or {}
            error_bar(axes, i + offset, scores, fmt="o", color="C0", label=label)
            axes.annotate(f"  {scores['fid']:.1f}", (i + offset, scores["fid"]), fontsize=8, va="center")
            label = None
        for seeds in seed_groups(group):  # a configuration's seeds, as the seed table takes them
            if len(seeds) > 1:
                mean = seed_mean([fid_of(run) for run in seeds])
                shown = {"fid": mean.value, "fid_low": mean.low, "fid_high": mean.high}
                error_bar(axes, i + 0.45, shown, fmt="D", color="black", label=mean_label)
                mean_label = None
    draw_floor(axes, suite.floor)
    axes.set_xticks(range(len(names)), [name.replace(", ", "\n") for name in names])
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("process")
    axes.set_ylabel(fid_axis_label(suite))
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))  # below: the points stay seen
    return figure


def option_figure(suite: SuiteRecord, paths: dict[str, PathRow | str]) -> Figure:
    """For each sweep (``option_sweeps``), FID against the option, one line per series through
    the mean over seeds, and the Fisher length of each path on a second axis, with the geodesic
    (the shortest path between the same endpoints) marked."""
    sweeps = option_sweeps(suite.scored())
    title = "FID against a process option (95 % bootstrap intervals)"
    figure = titled_figure(suite, title, (9, 1 + 5 * max(1, len(sweeps))))
    panels = figure.subplots(max(1, len(sweeps)), 1, squeeze=False).flatten()
    if not sweeps:
        say_empty(panels[0], "no finished runs of one process that differ in one numeric option: nothing to plot")
    for axes, sweep in zip(panels, sweeps, strict=False):
        draw_sweep(suite, axes, sweep, paths)
    return figure


def draw_sweep(suite: SuiteRecord, axes: Axes, sweep: Sweep, paths: dict[str, PathRow | str]) -> None:
    """One sweep's panel of ``option_figure``."""
    detour = axes.twinx()
    values = sorted({float(run.options[sweep.option]) for runs in sweep.series.values() for run in runs})
    spacing = min(np.diff(values)) if len(values) > 1 else 1.0
    for i, (name, runs) in enumerate(sweep.series.items()):
        colour, shift = f"C{i}", 0.04 * spacing * (i - (len(sweep.series) - 1) / 2)  # series side by side
        at = {run.run_id: float(run.options[sweep.option]) for run in runs}
        for run in runs:
            error_bar(axes, at[run.run_id] + shift, run.scores or {}, fmt="o", color=colour, alpha=0.8)
        xs = sorted(set(at.values()))
        means = [statistics.mean((run.scores or {})["fid"] for run in runs if at[run.run_id] == x) for x in xs]
        axes.plot([x + shift for x in xs], means, color=colour, label=f"{name}: FID (mean over seeds)")
        measured = {at[run.run_id]: path for run in runs if isinstance(path := paths[run.run_id], PathRow)}
        lengths = [measured[x].path.length for x in sorted(measured)]
        detour.plot(sorted(measured), lengths, color=colour, ls=":", marker="x", label=f"{name}: path length")
    origin = next((paths[run.run_id] for run in suite.scored() if is_default(run) and run.process == sweep.process
                   and run.budget == sweep.budget and isinstance(paths[run.run_id], PathRow)), None)
    if isinstance(origin, PathRow):
        detour.axhline(origin.path.geodesic, color="black", ls=":", lw=0.8)
    draw_floor(axes, suite.floor)
    axes.set_ylim(bottom=0)
    budget = f", budget {sweep.budget}" if mixes_budgets(suite) else ""
    axes.set_title(f"{sweep.process}: FID against its option {sweep.option}{budget}", fontsize=10)
    axes.set_xlabel(f"{sweep.option} (the defaults' value is where {sweep.process} itself lies)")
    axes.set_ylabel(fid_axis_label(suite))
    detour.set_ylabel(f"Fisher path length (dotted; black: geodesic; {path_spectrum_name(suite)} spectrum)")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = detour.get_legend_handles_labels()
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.12), "ncol": 2}
    axes.legend(handles + more_handles, labels + more_labels, fontsize=8, **below)


def run_style(i: int) -> dict[str, Any]:
    """A distinct line style for the ``i``-th run: 20 colours, then again dashed, then dotted."""
    return {"color": matplotlib.colormaps["tab20"](i % 20), "ls": ("-", "--", ":")[i // 20 % 3]}


def step_figure(suite: SuiteRecord) -> Figure:
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


def run_name(suite: SuiteRecord, run: RunRecord) -> str:
    """``spd desync +0.1, seed 0``: a run as the plots name it."""
    return f"{run_label(suite, run)}, seed {run.seed}"


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
        images = torch.from_numpy(read_samples(npz)[:SAMPLES_SHOWN]).float() / 255
        return tile([images[i : i + side] for i in range(0, len(images), side)]).numpy()
    return None


def samples_figure(suite: SuiteRecord) -> Figure:
    """Each finished run's samples, one panel per run, named by run, seed and FID."""
    runs = suite.scored()
    columns = max(1, min(4, len(runs)))
    rows = max(1, -(-len(runs) // columns))
    figure = titled_figure(suite, f"{SAMPLES_SHOWN} samples of each run", (3 * columns + 1, 3.2 * rows + 1))
    panels = panel_grid(figure, len(runs), columns)
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
    return figure


# --- the report ------------------------------------------------------------------------------


def report_texts(suite: SuiteRecord, paths: dict[str, PathRow | str]) -> dict[str, str]:
    """``fid.csv`` and ``fid.md`` of ``suite`` (in table order), by file name."""
    rows = [record(run, suite.names[run.run_id], paths[run.run_id], suite.floor) for run in suite.runs]
    return {CSV_FILE: csv_text(frame(rows, COLUMNS)), MARKDOWN_FILE: report_markdown(suite, rows, paths)}


def write_report(suite_dir: Path) -> list[Path]:
    """Write ``fid.csv``, ``fid.md`` and the plots of the suite in ``suite_dir`` into it; returns
    the files written."""
    suite = ordered(read_suite(suite_dir))
    paths = measure_paths(suite)
    texts = report_texts(suite, paths)
    figures = {  # everything is read and drawn before anything is written
        "fid.png": fid_figure(suite),
        "fid_vs_option.png": option_figure(suite, paths),
        "fid_vs_step.png": step_figure(suite),
        "fid_vs_nfe.png": nfe_figure(suite),
        "samples.png": samples_figure(suite),
    }
    for name, text in texts.items():
        write_text_atomically(suite_dir / name, text)
    for name, figure in figures.items():
        save_figure(figure, suite_dir / name)
    return [suite_dir / name for name in [*texts, *figures]]
