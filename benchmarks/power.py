"""The power calculation behind the perturbation suite's design (``make bench-perturb``):

    python -m benchmarks.power [--pilot results/quick-2026-11-22] [--out results/perturb/power.md]

The noise a slope test must see through is the spread of FID between runs of one seed whose
processes differ a little: the pilot's SPD and its eight perturbations at |p| ≤ 0.2, all of seed 0
and of SPD's protocol (sampler, training, sample count; their spread also holds any true effect,
so the estimate errs on the side of more noise). For a
design (seeds, and the values of |p| each seed runs), the slope fitted within seeds has standard
error ``σ / √Sxx`` (``Sxx``: the sum over seeds of the squared deviations of |p| from the seed's
mean) and ``N − k − 1`` degrees of freedom; a two-sided 5 % test detects a slope ``β`` with 80 %
power when ``β ≥ (t_{0.975} + t_{0.80}) · σ / √Sxx`` (the usual normal-theory approximation with
t quantiles). It writes the calculation, for the suite's design and for alternatives of about the
same cost, to ``--out``.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import typer
from scipy.stats import t as student_t

from benchmarks.suites import PERTURB_SEEDS, PERTURBATIONS, SUITES
from spdbench.errors import OneLineCommand, UserError, command_errors
from spdbench.files import write_text_atomically
from spdbench.groups import is_default
from spdbench.records import read_suite
from spdbench.tables import frame, markdown_text
from spdbench.verdicts import fid_of, t_quantile

PILOT_STRENGTH = 0.2  #: the pilot's runs whose spread is the noise: SPD and its perturbations up to this |p|


def detectable_slope(strengths: tuple[float, ...], seeds: int, sigma: float, power: float = 0.8) -> float:
    """The slope of FID on |p| that a design detects with ``power``: each of ``seeds`` seeds runs
    SPD (|p| = 0) and one run per value in ``strengths`` (per perturbation kind)."""
    xs = [0.0, *map(abs, strengths)]
    centred = sum((x - statistics.fmean(xs)) ** 2 for x in xs)
    dof = seeds * len(xs) - seeds - 1
    return (t_quantile(dof) + float(student_t.ppf(power, dof))) * sigma / math.sqrt(seeds * centred)


def main(
    pilot: Path = typer.Option(Path("results/quick-2026-11-22"), help="a suite with SPD perturbed at seed 0"),
    out: Path = typer.Option(Path("results/perturb/power.md"), help="where to write the calculation"),
) -> None:
    """Write the perturbation suite's power calculation."""
    with command_errors("benchmarks.power"):
        write_power(pilot, out)


def write_power(pilot: Path, out: Path) -> None:
    """The calculation of the module docstring, from the runs of ``pilot``, into ``out``."""
    suite = read_suite(pilot)
    scored = [run for run in suite.scored() if run.process == "spd"]
    origins = [run for run in scored if is_default(run) and run.seed == 0]
    protocols = {json.dumps(run.protocol, sort_keys=True) for run in origins}
    if len(protocols) != 1:
        raise UserError(
            f"{pilot} needs scored SPD runs of seed 0 at its defaults under one protocol; it has "
            f"{len(origins)} under {len(protocols)}"
        )
    spd = [run for run in scored if run.protocol == origins[0].protocol]  # one sampler and training: no other noise
    family = [run for run in spd if run.seed == 0 and abs(float(run.options.get("perturb", 0.0))) <= PILOT_STRENGTH]
    if len(family) < 3:
        raise UserError(f"{pilot} has {len(family)} scored SPD runs of seed 0 with |p| ≤ {PILOT_STRENGTH}; need 3")
    sigma = statistics.stdev(fid_of(run) for run in family)
    defaults = [fid_of(run) for run in spd if is_default(run)]
    designs = [
        (PERTURB_SEEDS, PERTURBATIONS),
        ((0, 1, 2, 3, 4), (-0.5, 0.5)),
        ((0, 1, 2), (-0.2, -0.1, 0.1, 0.2)),
        ((0, 1, 2), (-0.8, 0.8)),
    ]
    rows = []
    for seeds, strengths in designs:
        runs = len(seeds) * (1 + 2 * len(strengths))
        slope = detectable_slope(strengths, len(seeds), sigma)
        largest = max(map(abs, strengths))
        share = slope * largest / statistics.fmean(defaults)
        rows.append([", ".join(map(str, seeds)), ", ".join(f"{p:+g}" for p in strengths), runs,
                     f"{slope:.0f}", f"{slope * largest:.0f}", f"{share:.0%}"])
    header = ("seeds", "p (each kind)", "runs (2 kinds)", "detectable slope, FID per unit of abs(p)",
              "detectable rise at the largest abs(p)", "of SPD's mean FID")
    text = "\n".join([
        "# The perturbation suite's power",
        "",
        f"Made by `python -m benchmarks.power --pilot {pilot} --out {out}`.",
        "",
        f"Noise: the standard deviation of FID over SPD and its {len(family) - 1} perturbations of seed 0 in "
        f"`{pilot}` (|p| ≤ 0.2): σ = {sigma:.1f}. SPD's mean FID there: {statistics.fmean(defaults):.1f}.",
        "",
        "The smallest slope of FID on |p| that a two-sided 5 % test detects with 80 % power, per perturbation "
        "kind, fitted within seeds (`spdbench.verdicts.seed_slope`):",
        "",
        markdown_text(frame(rows, header), left=("seeds", "p (each kind)")),
        "",
        f"The suite (`benchmarks/suites.py`) runs the first design: {len(SUITES['perturb'].runs)} runs, about "
        "what the quick suite's 16 runs took (48.5 minutes with the install and the classifier) on this machine.",
        "",
    ])
    write_text_atomically(out, text)
    print(text)


app = typer.Typer(add_completion=False)
app.command(cls=OneLineCommand)(main)

if __name__ == "__main__":
    app()
