"""What a suite can and cannot conclude: FID over training seeds, paired differences and option
slopes, each with a 95 % interval and a plain verdict.

Every run's FID carries two kinds of noise: the training seed's (initial weights, data order,
training noise) and the sample set's (which images were drawn). A run scored once holds one draw
of both, so the spread of FIDs over seeds holds both as well, and intervals computed over seeds
include every source of noise; the per-run bootstrap interval holds only the second.

- **Mean over seeds**: ``m ± t_{0.975, n−1} · s / √n`` over the ``n`` seeds' FIDs (Student's t;
  it assumes the seed-to-seed spread is roughly normal, and needs ``n ≥ 2``).
- **Paired difference** of process A and B: the same t-interval over ``d_s = FID_A(s) − FID_B(s)``
  for the seeds both have. Runs of one seed share their initial weights' seed, data order and
  sample-set noise, so pairing removes what they share.
- **Slope** of FID against the distance ``|v − v₀|`` of an option from its default ``v₀`` (SPD's
  perturbation strength ``|p|``, or any numeric option a suite sweeps): least squares with one
  intercept per seed (the seed's own level), so that the slope is estimated within seeds; its
  interval is ``b ± t_{0.975, N−k−1} · SE(b)`` with ``N`` runs over ``k`` seeds.

The claims tested (``claims``) are those of the papers behind this benchmark: the process a suite's
claims are about (SPD) has a lower FID than every other process at its defaults (paired by seed),
and FID rises as an option leaves its default (for SPD's perturbations: any deviation from the
shortest path worsens FID), for every sweep of one numeric option in the suite: as a slope over
the sweep, and as the paired difference of the process at its defaults and each configuration
of the sweep (a slope on ``|v − v₀|`` assumes both directions cost alike; the pairs do not). Each claim is
tested at 95 % on its own, with no correction for testing several. A claim is about configurations,
named as the report names them: where a process at its defaults was run in several (two samplers,
say), each is compared, with the other process's configuration of the same sampler when it has
several too.

A verdict reads the interval: ``lower`` or ``higher`` when it excludes zero, else ``no difference
detected`` (for a slope: ``rises``, ``falls``, ``no trend detected``). No difference detected is
not evidence of no difference: the interval says how large a difference the suite could miss.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from scipy.stats import t as student_t

from corruptions import PROCESSES
from spdbench.groups import is_default, option_sweeps
from spdbench.records import RunRecord, configuration_names, varying_keys

LEVEL = 0.95  #: the confidence level of every interval


@dataclass(frozen=True)
class Estimate:
    """A value with its 95 % interval, from ``count`` observations (``low``/``high`` are NaN when
    there are too few for an interval)."""

    value: float
    low: float
    high: float
    count: int

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def text(self, spec: str = ".1f") -> str:
        """``12.3 [4.5, 20.1]``, or the value alone without an interval."""
        if not self.has_interval:
            return format(self.value, spec)
        return f"{format(self.value, spec)} [{format(self.low, spec)}, {format(self.high, spec)}]"


def t_quantile(dof: int) -> float:
    """``t_{(1+LEVEL)/2, dof}``: the half-width of a 95 % interval in standard errors."""
    return float(student_t.ppf((1 + LEVEL) / 2, dof))


def seed_mean(values: list[float]) -> Estimate:
    """The mean of ``values`` (one per seed) with its t-interval; no interval for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, math.nan, math.nan, len(values))
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Estimate(mean, mean - half, mean + half, len(values))


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Estimate:
    """``mean_s (a[s] − b[s])`` over the seeds ``a`` and ``b`` share, with its t-interval."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        return Estimate(math.nan, math.nan, math.nan, 0)
    return seed_mean([a[seed] - b[seed] for seed in seeds])


def seed_slope(points: list[tuple[float, int, float]]) -> Estimate:
    """The slope ``b`` of ``y ≈ c_seed + b·x`` over ``points`` ``(x, seed, y)`` (least squares,
    one intercept per seed), with its t-interval; no interval when the residuals have no degree
    of freedom, no estimate when ``x`` does not vary within any seed."""
    by_seed: dict[int, list[tuple[float, float]]] = {}
    for x, seed, y in points:
        by_seed.setdefault(seed, []).append((x, y))
    centred: list[tuple[float, float]] = []
    for members in by_seed.values():
        x_mean = statistics.fmean(x for x, _ in members)
        y_mean = statistics.fmean(y for _, y in members)
        centred += [(x - x_mean, y - y_mean) for x, y in members]
    sxx = sum(x * x for x, _ in centred)
    sxy = sum(x * y for x, y in centred)
    if sxx == 0:
        return Estimate(math.nan, math.nan, math.nan, len(points))
    slope = sxy / sxx
    dof = len(points) - len(by_seed) - 1
    if dof < 1:
        return Estimate(slope, math.nan, math.nan, len(points))
    residual = sum((y - slope * x) ** 2 for x, y in centred) / dof
    half = t_quantile(dof) * math.sqrt(residual / sxx)
    return Estimate(slope, slope - half, slope + half, len(points))


def difference_verdict(estimate: Estimate) -> str:
    """``lower`` / ``higher`` when the interval excludes zero, else ``no difference detected``."""
    if not estimate.has_interval:
        return "too few seeds to tell"
    if estimate.high < 0:
        return "lower"
    if estimate.low > 0:
        return "higher"
    return "no difference detected"


def slope_verdict(estimate: Estimate) -> str:
    """``FID rises`` / ``FID falls`` when the slope's interval excludes zero, else ``no trend detected``."""
    if not estimate.has_interval:
        return "too few runs to tell"
    if estimate.low > 0:
        return "FID rises"
    if estimate.high < 0:
        return "FID falls"
    return "no trend detected"


@dataclass(frozen=True)
class Claim:
    """One claim tested on a suite's runs: what it says, what was measured, and the verdict."""

    claim: str  #: e.g. ``spd's FID is lower than ddpm's``
    measure: str  #: e.g. ``FID(spd) − FID(ddpm), paired by seed``
    estimate: Estimate
    evidence: str  #: which runs: ``seeds 0, 1, 2`` or ``9 runs, seeds 0, 1, 2``
    verdict: str  #: ``lower``, ``FID rises``, ``no difference detected``, …
    holds: str  #: ``supported``, ``contradicted`` or ``undecided at this budget``


def claims(runs: list[RunRecord], reference: str | None) -> list[Claim]:
    """Every claim the scored ``runs`` can test, per budget: the ``reference`` process (the one the
    suite's claims are about, ``suite.json``'s ``claims_about``) against each other process at its
    defaults, then the slope of every sweep. Runs are told apart and named by configuration
    (``configuration_names``, as the report's tables name them): a process at its defaults drawn
    with two samplers is two configurations, each compared (``matched``)."""
    names = configuration_names(runs)
    scored = [run for run in runs if run.scores is not None and run.seed is not None]
    budgets = list(dict.fromkeys(run.budget for run in scored))
    tested = []
    for budget in budgets:
        members = [run for run in scored if run.budget == budget]
        where = f", {budget}" if len(budgets) > 1 else ""
        defaults: dict[str, dict[str, list[RunRecord]]] = {}
        for run in members:
            if is_default(run):
                defaults.setdefault(run.process, {}).setdefault(names[run.run_id], []).append(run)
        ours = defaults.get(reference or "", {})
        for process in (name for name in PROCESSES if name in defaults and name != reference):
            tested += [
                lower_claim(mine, fids_by_seed(ours[mine]), theirs, fids_by_seed(defaults[process][theirs]), where)
                for mine, theirs in matched(ours, defaults[process])
            ]
        for sweep in option_sweeps(members):
            for series, sweep_runs in sweep.series.items():
                origins = {run.options[sweep.option] for run in sweep_runs if is_default(run)}
                if len(origins) != 1:
                    continue
                (origin,) = origins
                points = [
                    (abs(float(run.options[sweep.option]) - float(origin)), seed_of(run), fid_of(run))
                    for run in sweep_runs
                ]
                estimate = seed_slope(points)
                verdict = slope_verdict(estimate)
                named = "" if series == sweep.process else f" ({series})"
                tested.append(Claim(
                    claim=f"{sweep.process}'s FID rises as {sweep.option} leaves {origin}{named}{where}",
                    measure=f"slope of FID on the distance of {sweep.option} from {origin}, within seeds",
                    estimate=estimate,
                    evidence=f"{len(points)} runs, {seed_list(sorted({seed for _, seed, _ in points}))}",
                    verdict=verdict,
                    holds={"FID rises": "supported", "FID falls": "contradicted"}.get(
                        verdict, "undecided at this budget"
                    ),
                ))
                by_name: dict[str, list[RunRecord]] = {}
                for run in sweep_runs:
                    by_name.setdefault(names[run.run_id], []).append(run)
                starts = dict.fromkeys(names[run.run_id] for run in sweep_runs if is_default(run))
                tested += [
                    lower_claim(start, fids_by_seed(by_name[start]), name, fids_by_seed(swept), where)
                    for start in starts
                    for name, swept in by_name.items()
                    if name not in starts
                ]
    return tested


def matched(ours: dict[str, list[RunRecord]], theirs: dict[str, list[RunRecord]]) -> list[tuple[str, str]]:
    """The pairs of configurations (by name, to their runs) of two processes at their defaults
    that a claim compares: those that agree on every setting that tells apart both the
    configurations of one and those of the other (the same sampler, when each was drawn with
    several); every pair when no setting does (one process has one configuration)."""
    shared = set(told_apart(ours)) & set(told_apart(theirs))
    return [
        (mine, other)
        for mine, my_runs in ours.items()
        for other, other_runs in theirs.items()
        if all(my_runs[0].settings.get(key) == other_runs[0].settings.get(key) for key in shared)
    ]


def told_apart(configurations: dict[str, list[RunRecord]]) -> list[str]:
    """The settings that differ between the configurations (by name, to their runs)."""
    return varying_keys([runs[0].settings for runs in configurations.values()])


def fids_by_seed(runs: list[RunRecord]) -> dict[int, float]:
    """The FIDs of scored runs of one configuration, by seed."""
    return {seed_of(run): fid_of(run) for run in runs}


def lower_claim(ours: str, our_fids: dict[int, float], other: str, other_fids: dict[int, float], where: str) -> Claim:
    """The claim that ``ours`` has a lower FID than ``other`` (FIDs by seed), paired by seed."""
    estimate = paired_difference(our_fids, other_fids)
    verdict = difference_verdict(estimate)
    return Claim(
        claim=f"{ours}'s FID is lower than {other}'s{where}",
        measure=f"FID({ours}) − FID({other}), paired by seed",
        estimate=estimate,
        evidence=seed_list(sorted(our_fids.keys() & other_fids.keys())),
        verdict=verdict,
        holds={"lower": "supported", "higher": "contradicted"}.get(verdict, "undecided at this budget"),
    )


def seed_list(seeds: list[int]) -> str:
    """``seeds 0, 1, 2`` (``seed 0`` for one)."""
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def fid_of(run: RunRecord) -> float:
    """The FID of a scored run."""
    return float((run.scores or {})["fid"])


def seed_of(run: RunRecord) -> int:
    """The seed of a run that records one."""
    return int(run.seed or 0)
