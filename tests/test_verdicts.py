"""What a suite can conclude: intervals over seeds, paired differences, slopes within seeds, and
the claims they decide."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from spdbench.records import RunRecord
from spdbench.verdicts import claims, paired_difference, seed_mean, seed_slope


def test_the_mean_over_seeds_has_the_student_t_interval() -> None:
    values = [158.1, 204.6, 171.3]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    estimate = seed_mean(values)
    assert estimate.value == pytest.approx(np.mean(values))
    assert (estimate.low, estimate.high) == pytest.approx((low, high))
    assert not seed_mean([158.1]).has_interval


def test_differences_are_paired_by_seed() -> None:
    a = {0: 150.0, 1: 126.0, 2: 140.0, 5: 999.0}  # seed 5 has no partner
    b = {0: 158.0, 1: 205.0, 2: 171.0, 7: 0.0}
    estimate = paired_difference(a, b)
    assert estimate.count == 3 and estimate.value == pytest.approx(np.mean([-8.0, -79.0, -31.0]))


def test_the_slope_is_fitted_within_seeds() -> None:
    """Each seed's own level drops out: with no noise the slope is exact and its interval empty."""
    levels = {0: 150.0, 1: 120.0, 2: 200.0}
    points = [(x, seed, level + 30.0 * x) for seed, level in levels.items() for x in (0.0, 0.5, 0.5)]
    estimate = seed_slope(points)
    assert estimate.value == pytest.approx(30.0)
    assert estimate.high - estimate.low == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(seed_slope([(0.0, 0, 1.0), (0.0, 1, 2.0)]).value)  # x never varies within a seed


def test_the_slope_interval_covers_the_true_slope_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    trials, covered = 2000, 0
    for _ in range(trials):
        points = [
            (x, seed, level + 10.0 * x + rng.normal(0.0, 12.0))
            for seed, level in enumerate(rng.normal(150.0, 25.0, 3))
            for x in (0.0, 0.5, 0.5)
        ]
        estimate = seed_slope(points)
        covered += estimate.low <= 10.0 <= estimate.high
    assert abs(covered / trials - 0.95) < 0.015  # the binomial standard error is 0.005


def run(process: str, seed: int, fid: float, solver: str = "ancestral", **options: float) -> RunRecord:
    """A scored run record; an option of 0 is at its default (as SPD's ``perturb``)."""
    label = process + "".join(f"-{key}={value}" for key, value in options.items() if value)
    config = {
        "process": {"process": process, "label": label, **options}, "seed": seed, "budget": "quick",
        "sampler": {"solver": solver, "nfe": 20},
    }
    return RunRecord(f"{label}-{solver}-s{seed}", Path("nowhere"), config, {"scores": {"fid": fid}}, None, [], [])


def test_claims_are_decided_by_their_intervals() -> None:
    runs = [run("spd", seed, 100.0 + seed, perturb=0.0) for seed in range(4)]
    runs += [run("ddpm", seed, 150.0 + seed + (-1) ** seed) for seed in range(4)]  # clearly higher
    runs += [run("heat", seed, 100.0 + 40.0 * (-1) ** seed) for seed in range(4)]  # too noisy to tell
    runs += [run("spd", seed, 100.0 + seed + 20.0 * abs(p) + (seed % 2), perturb=p) for seed in range(4)
             for p in (-0.5, 0.5)]
    decided = {claim.claim: claim for claim in claims(runs, "spd")}
    assert decided["spd's FID is lower than ddpm's"].holds == "supported"
    assert decided["spd's FID is lower than ddpm's"].verdict == "lower"
    assert decided["spd's FID is lower than heat's"].verdict == "no difference detected"
    assert decided["spd's FID is lower than heat's"].holds == "undecided at this budget"
    (slope,) = [claim for name, claim in decided.items() if "rises as perturb" in name]
    assert slope.verdict == "FID rises" and slope.holds == "supported" and slope.evidence == "12 runs, seeds 0, 1, 2, 3"
    flipped = [run(r.process, r.seed or 0, 300.0 - (r.scores or {})["fid"], **r.options) for r in runs]
    assert {claim.holds for claim in claims(flipped, "spd") if "ddpm" in claim.claim or "rises" in claim.claim} == {
        "contradicted"
    }


def test_each_configuration_of_a_sweep_is_paired_with_the_default() -> None:
    """A perturbation that hurts in one direction and helps in the other has no slope on ``|p|``;
    the paired claims of the default against each configuration show both directions."""
    runs = [run("spd", seed, 100.0 + 10.0 * seed, perturb=0.0) for seed in range(3)]
    runs += [run("spd", seed, 100.0 + 10.0 * seed + 30.0 * p / 0.5 + seed % 2, perturb=p) for seed in range(3)
             for p in (-0.5, 0.5)]
    decided = {claim.claim: claim for claim in claims(runs, "spd")}
    (slope,) = [claim for name, claim in decided.items() if "rises as perturb" in name]
    assert slope.verdict == "no trend detected"
    assert decided["spd's FID is lower than spd-perturb=0.5's"].holds == "supported"
    assert decided["spd's FID is lower than spd-perturb=-0.5's"].holds == "contradicted"
    assert decided["spd's FID is lower than spd-perturb=-0.5's"].evidence == "seeds 0, 1, 2"


def test_configurations_that_share_a_label_are_told_apart_and_each_tested() -> None:
    """SPD at its defaults with two samplers is two configurations: each is compared with DDPM and
    has its own perturbation series, and none of their runs stands in for the other's."""
    runs = [run("ddpm", seed, 150.0 + seed) for seed in range(3)]
    for solver, level in (("ancestral", 100.0), ("ddim", 200.0)):
        runs += [run("spd", seed, level + seed, solver, perturb=0.0) for seed in range(3)]
        runs += [run("spd", seed, level + seed + 20.0 * abs(p) + seed % 2, solver, perturb=p) for seed in range(3)
                 for p in (-0.5, 0.5)]
    decided = {claim.claim: claim for claim in claims(runs, "spd")}
    ancestral = decided["spd (sampler.solver=ancestral)'s FID is lower than ddpm's"]
    ddim = decided["spd (sampler.solver=ddim)'s FID is lower than ddpm's"]
    assert ancestral.estimate.value == pytest.approx(-50.0) and ancestral.holds == "supported"
    assert ddim.estimate.value == pytest.approx(50.0) and ddim.holds == "contradicted"
    for solver in ("ancestral", "ddim"):
        slope = decided[f"spd's FID rises as perturb leaves 0.0 (sampler.solver={solver})"]
        assert slope.evidence == "9 runs, seeds 0, 1, 2" and slope.holds == "supported"
        pair = decided[f"spd (sampler.solver={solver})'s FID is lower than spd-perturb=0.5 (sampler.solver={solver})'s"]
        assert pair.estimate.value == pytest.approx(-10.0 - 1.0 / 3.0)
    crossed = "spd (sampler.solver=ancestral)'s FID is lower than spd-perturb=0.5 (sampler.solver=ddim)'s"
    assert crossed not in decided


def test_the_perturbation_design_detects_its_stated_slope_80_percent_of_the_time() -> None:
    """``benchmarks.power``'s detectable slope, simulated: seeds with their own levels, noise σ,
    SPD and each strength once per seed; the slope test rejects zero about 80 % of the time."""
    from benchmarks.power import detectable_slope

    strengths, seeds, sigma = (-0.5, 0.5), 3, 12.0
    slope = detectable_slope(strengths, seeds, sigma)
    rng = np.random.default_rng(1)
    trials, detected = 2000, 0
    for _ in range(trials):
        points = [
            (abs(p), seed, level + slope * abs(p) + rng.normal(0.0, sigma))
            for seed, level in enumerate(rng.normal(140.0, 20.0, seeds))
            for p in (0.0, *strengths)
        ]
        detected += seed_slope(points).low > 0
    assert abs(detected / trials - 0.8) < 0.05  # the approximation with t quantiles, and sampling error
