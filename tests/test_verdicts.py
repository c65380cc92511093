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


def run(
    process: str, seed: int, fid: float | None, solver: str = "ancestral", train: dict | None = None, **options: object
) -> RunRecord:
    """A run record, scored unless ``fid`` is ``None`` (failed); a number option of 0, or a text
    option, is at its default as far as the label goes (as SPD's ``perturb`` and ``perturb_kind``)."""
    label = process + "".join(f"-{key}={value}" for key, value in options.items() if isinstance(value, float) and value)
    config = {
        "process": {"process": process, "label": label, **options}, "seed": seed, "budget": "quick",
        "sampler": {"solver": solver, "nfe": 20}, "train": train or {},
    }
    run_id = f"{label}-{solver}-{sorted(options.items())}-{train}-s{seed}"
    summary = None if fid is None else {"scores": {"fid": fid}}
    return RunRecord(run_id, Path("nowhere"), config, summary, None if summary else "failed", [], [])


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
    runs.append(run("ddpm", 0, None, "ddim"))  # failed: names come from every run, as the report's tables'
    decided = {claim.claim: claim for claim in claims(runs, "spd")}
    assert "spd (sampler.solver=ancestral)'s FID is lower than ddpm (sampler.solver=ancestral)'s" in decided
    runs.pop()
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


def test_processes_drawn_with_the_same_samplers_are_compared_sampler_by_sampler() -> None:
    runs = [
        run(process, seed, level + seed, solver)
        for process, solver, level in (("spd", "ancestral", 100.0), ("spd", "ddim", 120.0),
                                       ("ddpm", "ancestral", 150.0), ("ddpm", "ddim", 110.0))
        for seed in range(3)
    ]
    decided = {claim.claim: claim.estimate.value for claim in claims(runs, "spd")}
    assert decided == {
        "spd (sampler.solver=ancestral)'s FID is lower than ddpm (sampler.solver=ancestral)'s": pytest.approx(-50.0),
        "spd (sampler.solver=ddim)'s FID is lower than ddpm (sampler.solver=ddim)'s": pytest.approx(10.0),
    }


def test_a_setting_one_configuration_lacks_tells_it_apart() -> None:
    """``None`` in one configuration and no such key in the other are two configurations."""
    runs = [run("ddpm", seed, 150.0) for seed in range(2)]
    runs += [run("spd", seed, 100.0, train={"bf16": None}) for seed in range(2)]
    runs += [run("spd", seed, 300.0) for seed in range(2)]
    decided = {claim.claim: claim.estimate.value for claim in claims(runs, "spd")}
    assert decided == {
        "spd (train.bf16=null)'s FID is lower than ddpm's": pytest.approx(-50.0),
        "spd (train.bf16 absent)'s FID is lower than ddpm's": pytest.approx(150.0),
    }


@pytest.mark.parametrize("first", ["ancestral", "ddim"])
def test_a_sweep_starts_from_the_defaults_that_share_its_settings(first: str) -> None:
    """SPD at its defaults with two samplers, perturbed with one: the sweep starts from the
    defaults drawn with that sampler and says so, whichever defaults come first."""
    solvers = [first, *({"ancestral", "ddim"} - {first})]
    runs = [run("spd", seed, 100.0 + seed, solver, perturb=0.0) for solver in solvers for seed in range(3)]
    runs += [run("spd", seed, 110.0 + seed + seed % 2, "ddim", perturb=p) for seed in range(3) for p in (-0.5, 0.5)]
    (slope,) = [claim for claim in claims(runs, "spd") if "rises" in claim.claim]
    assert slope.claim == "spd's FID rises as perturb leaves 0.0 (sampler.solver=ddim)"
    assert slope.evidence == "9 runs, seeds 0, 1, 2"


def test_a_variant_family_starts_from_the_defaults_of_its_own_kind_when_there_are_some() -> None:
    """SPD without a perturbation is SPD whatever its ``perturb_kind``; a suite that ran both
    kinds at p = 0 starts each family from its own kind, not from both at once."""
    runs = [
        run("spd", seed, 100.0 + seed + (20.0 * abs(p) + seed % 2 if p else 0.0), perturb=p, perturb_kind=kind)
        for kind in ("desync", "spectrum")
        for seed in range(3)
        for p in (0.0, -0.5, 0.5)
    ]
    slopes = [claim for claim in claims(runs, "spd") if "rises" in claim.claim]
    assert len(slopes) == 2 and {claim.evidence for claim in slopes} == {"9 runs, seeds 0, 1, 2"}


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


def test_the_committed_power_calculation_is_what_its_pilot_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``results/perturb/power.md`` is what ``benchmarks.power`` makes from the committed pilot
    (``results/quick-2026-11-22``), but for the output path its command line names."""
    from benchmarks.power import write_power

    monkeypatch.chdir(Path(__file__).parents[1])
    made = tmp_path / "power.md"
    write_power(Path("results/quick-2026-11-22"), made)
    committed = Path("results/perturb/power.md").read_text()
    assert made.read_text() == committed.replace("--out results/perturb/power.md", f"--out {made}")
