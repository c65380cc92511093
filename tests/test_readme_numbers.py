"""The numbers the README's prose and the suite READMEs (``results/*/README.md``) quote are
those of the committed records they cite.

Each sentence below is made from the records it quotes (a suite's run records, read as the report
reads them, and ``spdbench samplers``' CSV), each number rounded once from its record, and must
appear in its README as it stands, whitespace aside. The README's tables are checked where they
are made (``test_report``, ``test_solvers``, ``test_perf``), the suite READMEs' tables here. What
a README calls "exactly" the same across suites is compared exactly. When a suite is run again, a
failure here names the sentence to update."""

from __future__ import annotations

import csv
import functools
import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from models import UNet, network_config
from spdbench.classifier import ClassifierConfig, shipped_paths
from spdbench.records import RunRecord, SuiteRecord, read_suite
from spdbench.report import Training, duration, fid_text, nfe_points, sampler_cell, training
from spdbench.verdicts import (
    Estimate,
    claims,
    difference_verdict,
    paired_difference,
    seed_mean,
    seed_slope,
    slope_verdict,
)

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "results"

POSTERIOR = "ancestral, native, eta 1.0, variance small, clip_x0 True"  #: the posterior sampler as a table names it
POSTERIOR_LOGSNR = "ancestral, logsnr, eta 1.0, variance small, clip_x0 True"  #: the same on the log-SNR grid
SDE_2M = "sdedpmpp2m, logsnr, clip_x0 True"  #: SDE-DPM-Solver++(2M) on the log-SNR grid
DPM_2M = "dpmpp2m, logsnr, clip_x0 True"
DDIM = "ddim, native, clip_x0 True"
UNIPC_3 = "unipc3, logsnr, clip_x0 True"
REVERSE = "reverse, native, clip_x0 True"  #: Song et al.'s reverse-diffusion predictor
CORRECTED = POSTERIOR + ", corrector 0.6"
PROJECTED = SDE_2M + ", projection 1.0"


@functools.cache
def readme() -> str:
    return " ".join((ROOT / "README.md").read_text().split())


@functools.cache
def suite(name: str) -> SuiteRecord:
    return read_suite(RESULTS / name)


def own_fid(name: str, label: str, seed: int) -> float:
    """The FID of a suite's run with its own sampler."""
    (run,) = [run for run in suite(name).scored() if (run.label, run.seed) == (label, seed)]
    return float(run.scores["fid"])


def resampled_fid(name: str, label: str, seed: int, sampler: str, nfe: int) -> float:
    """A run's final weights sampled again, or its own sample set (the report's table "FID against
    the sampler and NFE", whose sampler column ``sampler`` is)."""
    (fid,) = {
        scores["fid"]
        for run, drawn, scores, _ in nfe_points(suite(name))
        if (run.label, run.seed, sampler_cell(drawn), drawn.get("nfe")) == (label, seed, sampler, nfe)
    }
    return float(fid)


def mean_over_seeds(name: str, label: str) -> float:
    """The mean FID over a configuration's scored seeds, as the table "Over seeds" takes it."""
    return seed_mean([float(run.scores["fid"]) for run in suite(name).scored() if run.label == label]).value


def geometry(label: str, key: str) -> list[float]:
    """One number of the quick suite's geometry summaries, per seed (of a pair, the first)."""
    values = [run.geometry[key] for run in suite("quick").scored() if run.label == label and run.geometry]
    return [float(value[0] if isinstance(value, list) else value) for value in values]


@functools.cache
def sampler_rows() -> list[dict[str, str]]:
    with (RESULTS / "samplers" / "fmnist-28" / "samplers.csv").open() as file:
        return list(csv.DictReader(file))


def measured(process: str, solver: str, grid: str, nfe: int, column: str, projection: float = 0.0) -> float:
    """A column of ``spdbench samplers``' record, for a process at its defaults without a corrector."""
    (row,) = [
        row
        for row in sampler_rows()
        if (row["label"], row["solver"], row["grid"], row["nfe"]) == (process, solver, grid, str(nfe))
        and row["full_grid"] == "False"
        and float(row["corrector"]) == 0.0
        and float(row["projection"]) == projection
    ]
    return float(row[column])


def parameters(size: str, channels: int, image_size: int) -> int:
    with torch.device("meta"):  # counted, not allocated
        return sum(p.numel() for p in UNet(network_config(size, channels, image_size)).parameters())


def short(value: float, digits: int = 2) -> str:
    """``value`` to ``digits`` significant digits, as the README writes it: ``0.94``, ``32``, ``7.2e4``."""
    text = f"{value:.{digits}g}"
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", text)


def quoted() -> list[str]:
    """Every sentence, made from its records."""
    again = resampled_fid  # a run's weights sampled again, or its own sample set
    auto, old = "quick-auto-sampler", "quick-2026-11-22"
    dpm_2m = [again(auto, "ddpm", 0, DPM_2M, n) for n in (10, 20, 50, 100, 200)]
    blurring = geometry("blurring", "denoising_deviation_max")
    gaussian = geometry("ddpm", "denoising_deviation_max") + geometry("spd", "denoising_deviation_max")
    heat = geometry("heat", "sampling_deviation_max")
    off_plane = sorted(100 * share for share in geometry("heat", "sampling_off_plane"))
    amplification = {
        (process, solver): short(measured(process, solver, grid, 20, "amplification"))
        for process in ("ddpm", "spd", "blurring")
        for solver, grid in (("sdedpmpp2m", "logsnr"), ("ancestral", "native"))
    }
    with (RESULTS / "perturb" / "fid.csv").open() as file:
        perturbed = [float(row["path_efficiency"]) for row in csv.DictReader(file) if row["label"] != "spd"]
    classifier = json.loads(shipped_paths(ClassifierConfig())[1].read_text())
    return [
        # the quick and perturbation results
        f"gave DDPM {mean_over_seeds('quick-posterior-sampler', 'ddpm'):.1f} and "
        f"SPD {mean_over_seeds('quick-posterior-sampler', 'spd'):.1f} (the same verdicts)",
        f"that sampler gave the seed-0 DDPM network {own_fid('quick-posterior-sampler', 'ddpm', 0):.1f}, "
        f"where SDE-DPM-Solver++(2M) gives {own_fid('quick', 'ddpm', 0):.1f}",
        f"(path efficiency {min(perturbed):.3f}–{max(perturbed):.3f})",
        "it gave mean FIDs of DDPM {:.1f}, heat {:.1f}, blurring {:.1f} and SPD {:.1f}".format(
            *[mean_over_seeds("quick-2026-11-30", label) for label in ("ddpm", "heat", "blurring", "spd")]
        ) + f", with the same verdicts (SPD − DDPM: {signed(lower('quick-2026-11-30', 'ddpm'))})",
        f"FID(spd) − FID(spd-desync+0.5) = {signed(lower('perturb-2026-11-30', 'spd-desync+0.5'))} and "
        f"FID(spd) − FID(spd-spectrum-0.5) = {signed(lower('perturb-2026-11-30', 'spd-spectrum-0.5'))}",
        # geometry
        f"(x̂₀'s largest deviation {min(blurring):.2f} and {max(blurring):.2f}, against "
        f"{min(gaussian):.2f} to {max(gaussian):.2f} for DDPM and SPD)",
        f"heat's path the most curved ({min(heat):.2f} and {max(heat):.2f}) and the least planar "
        f"({off_plane[0]:.0f}–{off_plane[-1]:.0f} % off the plane)",
        # samplers with a perfect network
        f"(W2² {short(measured('heat', 'ihdm', 'native', 20, 'w2'))} at 20 calls, a white network error amplified "
        f"{short(measured('heat', 'ihdm', 'native', 20, 'amplification'))} times",
        f"amplifies a white network error {amplification['ddpm', 'sdedpmpp2m']} times for DDPM and "
        f"{amplification['spd', 'sdedpmpp2m']} times for SPD, against {amplification['ddpm', 'ancestral']} and "
        f"{amplification['spd', 'ancestral']} for the posterior sampler",
        f"amplifies its network errors {amplification['blurring', 'sdedpmpp2m']} times against "
        f"{amplification['blurring', 'ancestral']} (its W2² with an error of std 0.1: "
        f"{short(measured('blurring', 'sdedpmpp2m', 'logsnr', 20, 'w2_at_error'), 3)} against "
        f"{short(measured('blurring', 'ancestral', 'native', 20, 'w2_at_error'))})",
        f"SDE-DPM-Solver++(2M) on DDPM's native grid at 10 calls goes "
        f"{short(measured('ddpm', 'sdedpmpp2m', 'native', 10, 'w2'))} → "
        f"{short(measured('ddpm', 'sdedpmpp2m', 'native', 10, 'w2', projection=1.0))}",
        # the auto-sampler suite against the reference run
        f"SPD's rose at both seeds ({own_fid(old, 'spd', 0):.1f} → {own_fid(auto, 'spd', 0):.1f} and "
        f"{own_fid(old, 'spd', 1):.1f} → {own_fid(auto, 'spd', 1):.1f}) and in all eight perturbed runs, "
        f"DDPM's went {own_fid(old, 'ddpm', 0):.1f} → {own_fid(auto, 'ddpm', 0):.1f} and "
        f"{own_fid(old, 'ddpm', 1):.1f} → {own_fid(auto, 'ddpm', 1):.1f}",
        f"DDPM's seed 0 gives {again(auto, 'ddpm', 0, POSTERIOR, 20):.1f} with the posterior sampler and "
        f"{own_fid(auto, 'ddpm', 0):.1f} with DPM-Solver++(3M), SPD's {again(auto, 'spd', 0, POSTERIOR, 20):.1f} "
        f"and {own_fid(auto, 'spd', 0):.1f}",
        # resampled: the deterministic solvers, SDE-DPM-Solver++(2M)
        f"(DPM-Solver++(2M) stays at {min(dpm_2m):.0f}–{max(dpm_2m):.0f} from 10 to 200 calls, "
        f"DDIM falls to {again(auto, 'ddpm', 0, DDIM, 200):.0f} at 200)",
        f"({again(auto, 'ddpm', 0, POSTERIOR, 1000):.1f} over DDPM's 1000 levels)",
        "gives DDPM {:.1f}, {:.1f} and {:.1f} at 10, 20 and 50 calls and SPD {:.1f}, {:.1f} and {:.1f}".format(
            *[again(auto, process, 0, SDE_2M, n) for process in ("ddpm", "spd") for n in (10, 20, 50)]
        ),
        f"the posterior sampler gives {again(auto, 'spd', 0, POSTERIOR, 200):.1f} at 200 calls and "
        f"{again(auto, 'spd', 0, POSTERIOR, 1000):.1f} over 1000 of its 4000 levels, and SDE-DPM-Solver++(2M) "
        f"{again(auto, 'spd', 0, SDE_2M, 100):.1f} at 100 calls",
        f"at 50 calls gives {again(auto, 'ddpm', 0, SDE_2M, 50):.1f} there and "
        f"{again('quick', 'ddpm', 0, SDE_2M, 50):.1f} when drawn again",
        f"the same log-SNR grid does not ({again(auto, 'ddpm', 0, POSTERIOR_LOGSNR, 20):.1f} and "
        f"{again(auto, 'spd', 0, POSTERIOR_LOGSNR, 20):.1f} at 20 calls)",
        # the quick networks: UniPC-3, a corrector, a projection
        f"it gives DDPM {again('quick', 'ddpm', 0, UNIPC_3, 20):.1f} and "
        f"SPD {again('quick', 'spd', 0, UNIPC_3, 20):.1f}, "
        f"against SDE-DPM-Solver++(2M)'s {again('quick', 'ddpm', 0, SDE_2M, 20):.1f} and "
        f"{again('quick', 'spd', 0, SDE_2M, 20):.1f}",
        "ε = 0.6 at 100 calls: {:.1f} → {:.1f} at seed 0, {:.1f} → {:.1f} at seed 1)".format(
            *[again("quick", "spd", seed, sampler, 100) for seed in (0, 1) for sampler in (POSTERIOR, CORRECTED)]
        ),
        "(SPD seed 0: {:.1f}/{:.1f}/{:.1f} → {:.1f}/{:.1f}/{:.1f})".format(
            *[again("quick", "spd", 0, sampler, n) for sampler in (SDE_2M, PROJECTED) for n in (10, 20, 50)]
        ),
        # what is compared
        f"{100 * classifier['test_accuracy']:.1f} % test accuracy",
        f"(ddpm-cifar {parameters('ddpm-cifar', 3, 32):,} and spd-cifar {parameters('spd-cifar', 3, 32):,} parameters, "
        f"as the official networks; quick {parameters('quick', 1, 28):,}; smoke {parameters('smoke', 1, 28):,})",
    ]


def test_the_readme_quotes_the_records() -> None:
    missing = [sentence for sentence in quoted() if sentence not in readme()]
    assert not missing, "the README should read: " + "; ".join(map(repr, missing))


def test_the_auto_sampler_raised_every_perturbed_spd_fid() -> None:
    """"SPD's rose ... in all eight perturbed runs": each perturbed SPD run of the auto-sampler
    suite has a higher FID than the same run of the reference suite."""
    with (RESULTS / "quick-auto-sampler" / "fid.csv").open() as file:
        perturbed = [row["label"] for row in csv.DictReader(file) if row["label"].startswith("spd-")]
    assert len(perturbed) == 8
    assert all(own_fid("quick-auto-sampler", label, 0) > own_fid("quick-2026-11-22", label, 0) for label in perturbed)


def test_the_auto_sampler_suite_s_table_pairs_its_runs_with_the_reference_runs() -> None:
    """The table of ``results/quick-auto-sampler/README.md``: each run of that suite beside the run
    of the same process and seed in ``results/quick-2026-11-22``, with their samplers, FIDs and
    final losses as their records give them, one row each."""
    text = (RESULTS / "quick-auto-sampler" / "README.md").read_text()
    reference = {(run.label, run.seed): run for run in suite("quick-2026-11-22").scored()}

    def sampler(run: RunRecord) -> str:
        return f"{run.config['sampler']['solver']}, {run.config['sampler']['grid']}"

    rows = []
    for run in suite("quick-auto-sampler").scored():
        before = reference[run.label, run.seed]
        losses = f"{before.summary['final_loss']:.6f} / {run.summary['final_loss']:.6f}"
        rows.append(
            f"| {run.label} | {run.seed} | {sampler(before)} | {fid_text(before.scores)} | {sampler(run)} | "
            f"{fid_text(run.scores)} | {losses} |"
        )
    table = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| process")]
    assert table == rows


def test_the_projection_table_of_the_quick_suite_is_its_records() -> None:
    """The table of ``results/quick/README.md`` "A projection step on these networks": each
    network and sampler's FID at 10, 20 and 50 calls without the projection and with δμ = 1 and
    0.3 (empty where it was not sampled), what the projection costs the budgets' solvers, and the
    sentence on 100 calls, as the records give them."""
    samplers = {
        "SDE-DPM-Solver++(2M), log-SNR": SDE_2M,
        "posterior sampler, native": POSTERIOR,
        "reverse-diffusion predictor, native": REVERSE,
    }
    drawn = {(run.label, run.seed, sampler_cell(sampler)) for run, sampler, _, _ in nfe_points(suite("quick"))}

    def fids(label: str, seed: int, sampler: str) -> str:
        if (label, seed, sampler) not in drawn:
            return ""
        return " / ".join(f"{resampled_fid('quick', label, seed, sampler, nfe):.1f}" for nfe in (10, 20, 50))

    text = (RESULTS / "quick" / "README.md").read_text()
    table = [line for line in text.splitlines() if line.startswith(("| DDPM, ", "| SPD, "))]
    assert len(table) == 10
    costs: dict[str, list[float]] = {"1.0": [], "0.3": []}  # FID with the projection − without, the budgets' solvers
    for line in table:
        network, named = line.strip("| ").split(" | ")[:2]
        process, seed = network.split(", ")
        cells = [
            fids(process.lower(), int(seed), samplers[named] + projection)
            for projection in ("", ", projection 1.0", ", projection 0.3")
        ]
        assert line == f"| {network} | {named} | {' | '.join(cells)} |"
        for step, cell in zip(costs, cells[1:]):
            if cell and samplers[named] != REVERSE:
                costs[step] += [float(b) - float(a) for a, b in zip(cells[0].split(" / "), cell.split(" / "))]
    prose = " ".join(text.split())
    for step, name in (("1.0", "1"), ("0.3", "0.3")):
        assert f"With δμ = {name} it costs {min(costs[step]):.0f}–{max(costs[step]):.0f} points" in prose
    at_100 = ", ".join(
        f"{name} seed {seed} {resampled_fid('quick', name.lower(), seed, REVERSE, 100):.1f} → "
        f"{resampled_fid('quick', name.lower(), seed, REVERSE + ', projection 1.0', 100):.1f}"
        for name, seed in (("DDPM", 0), ("SPD", 0), ("SPD", 1))
    )
    assert f"With the reverse-diffusion predictor at 100 calls: {at_100}." in prose


def suite_readme(name: str) -> str:
    return " ".join((RESULTS / name / "README.md").read_text().split())


def verdicts(name: str) -> dict[str, Estimate]:
    """The estimate of each claim the suite's report tests, by claim."""
    found = suite(name)
    return {claim.claim: claim.estimate for claim in claims(found.runs, found.info.get("claims_about"))}


def lower(name: str, other: str) -> Estimate:
    """The suite's estimate of FID(spd) − FID(other), paired by seed."""
    return verdicts(name)[f"spd's FID is lower than {other}'s"]


def signed(estimate: Estimate) -> str:
    """An estimate as the suite READMEs write it, with the minus sign ``−``."""
    return estimate.text().replace("-", "−")


def advantage(estimate: Estimate) -> str:
    """A difference FID(a) − FID(b) written as a's advantage, FID(b) − FID(a)."""
    return Estimate(-estimate.value, -estimate.high, -estimate.low, estimate.count).text()


def protocol(name: str) -> str:
    """The protocol's sentence of a quick suite's README, from its seed-0 DDPM run's configuration."""
    (config,) = [run.config for run in suite(name).scored() if (run.label, run.seed) == ("ddpm", 0)]
    network = config["network"]
    count = parameters(network["size"], network["in_channels"], network["image_size"])
    return (
        f"`{network['size']}` U-Net ({count:,} parameters, initial weights from the run's seed) for "
        f"{config['train']['train_steps']} steps at batch {config['train']['batch']}"
    )


def quick_training(name: str) -> Training:
    """The mean FIDs over training of a suite of the quick budget."""
    found = training(suite(name), "quick")
    if found is None:
        raise AssertionError(f"results/{name} has no periodic evaluations")
    return found


def evaluations(name: str) -> str:
    """The periodic evaluations' sentence, from the suite's record of training."""
    found = quick_training(name)
    samples = " and ".join(map(str, found.samples))
    return f"Periodic evaluations: {samples} samples at steps {' and '.join(map(str, found.steps))}"


def floor(name: str) -> str:
    return f"FID {suite(name).floor['fid']:.2f}"  # type: ignore[index]


def order_over_training(name: str) -> str:
    """The order of the processes' mean FIDs at the end, said to be the same at every evaluation
    when it is (else where it changes), and the processes whose mean rises between the first two
    evaluations."""
    found = quick_training(name)
    orders = [found.order(i) for i in range(len(found.points))]
    steps = " and ".join(map(str, found.steps))
    changes = [found.points[i] for i in range(1, len(orders)) if orders[i] != orders[i - 1]]
    stable = f"is the same at steps {steps} and at the end" if not changes else f"changes at {', '.join(changes)}"
    rising = " and ".join(label for label, means in found.means.items() if means[1] > means[0])
    return (
        f"The order of the mean FIDs ({' < '.join(orders[-1])}) {stable}; "
        f"{rising}'s mean FID rises between the evaluations"
    )


def noise_streams() -> dict[str, dict[str, Any]]:
    """The scores of ``results/quick/noise-streams/``, by the commit each was drawn at."""
    return {
        path.stem.rsplit("-at-", 1)[1]: json.loads(path.read_text())["scores"]
        for path in (RESULTS / "quick" / "noise-streams").glob("*.json")
    }


def quick_suite_sentences() -> list[str]:
    """``results/quick/README.md``: its protocol, its means against the same networks' with the
    posterior sampler, its verdict against DDPM, and the sections that sample its networks again."""
    again = functools.partial(resampled_fid, "quick")
    auto = functools.partial(resampled_fid, "quick-auto-sampler")
    posterior = "quick-posterior-sampler"
    reverse_costs = [
        again(process, seed, REVERSE + ", projection 1.0", nfe) - again(process, seed, REVERSE, nfe)
        for process, seed in (("ddpm", 0), ("ddpm", 1), ("spd", 0), ("spd", 1))
        for nfe in (10, 20)
    ]
    spd_gains = [
        again("spd", seed, REVERSE, nfe) - again("spd", seed, REVERSE + ", projection 1.0", nfe)
        for seed, nfe in ((0, 50), (1, 50), (1, 100), (0, 100))
    ]
    streams = noise_streams()
    earlier, later = streams["86fb5ad"], streams["1e9b66e"]
    noise = [abs(again("ddpm", 0, POSTERIOR, nfe) - auto("ddpm", 0, POSTERIOR, nfe)) for nfe in (20, 100)]
    unprojected, projected = (again("ddpm", 0, SDE_2M + projection, 50) for projection in ("", ", projection 0.3"))
    corrected = [
        again(process, seed, sampler, nfe)
        for process, seed, sampler, nfe in (
            ("ddpm", 0, SDE_2M, 20), ("ddpm", 0, SDE_2M + ", corrector 0.1", 20),
            ("spd", 0, SDE_2M, 20), ("spd", 0, SDE_2M + ", corrector 0.1", 20),
            ("ddpm", 0, SDE_2M + ", corrector 1.0", 20), ("spd", 0, SDE_2M + ", corrector 1.0", 20),
            *[
                (process, seed, sampler, nfe)
                for process, seed in (("spd", 0), ("spd", 1), ("ddpm", 0))
                for nfe in (20, 100)
                for sampler in (POSTERIOR, CORRECTED)
            ],
            ("ddpm", 0, POSTERIOR, 100), ("ddpm", 0, POSTERIOR + ", corrector 0.1", 100),
        )
    ]
    return [
        protocol("quick"),
        f"the floor (500 held-out test images) is {floor('quick')}",
        evaluations("quick"),
        f"DDPM's mean FID went from {mean_over_seeds(posterior, 'ddpm'):.1f} to {mean_over_seeds('quick', 'ddpm'):.1f} "
        f"and SPD's from {mean_over_seeds(posterior, 'spd'):.1f} to {mean_over_seeds('quick', 'spd'):.1f}",
        f"the seed-0 DDPM and SPD runs score {own_fid('quick', 'ddpm', 0):.2f} and {own_fid('quick', 'spd', 0):.2f}",
        f"its difference from DDPM, {signed(lower('quick', 'ddpm'))}, is not resolved by four seeds",
        order_over_training("quick") + " while the others fall",
        # samplers and a corrector
        "UniPC-3 gives DDPM {:.1f} and {:.1f} at 10 and 20 calls and SPD {:.1f} and {:.1f} (log-SNR grid), "
        "against {:.1f} and {:.1f} for the run's own SDE-DPM-Solver++(2M) at 20".format(
            *[again(process, 0, UNIPC_3, nfe) for process in ("ddpm", "spd") for nfe in (10, 20)],
            own_fid("quick", "ddpm", 0), own_fid("quick", "spd", 0),
        ),
        "with SDE-DPM-Solver++(2M) and ε = 0.1 DDPM goes {:.1f} → {:.1f} and SPD {:.1f} → {:.1f}, with ε = 1 to "
        "{:.1f} and {:.1f}; with the posterior sampler and ε = 0.6 SPD goes {:.1f} → {:.1f} (20 calls) and "
        "{:.1f} → {:.1f} (100 calls) at seed 0, {:.1f} → {:.1f} and {:.1f} → {:.1f} at seed 1, and DDPM "
        "{:.1f} → {:.1f} and {:.1f} → {:.1f}; with ε = 0.1 DDPM at 100 calls {:.1f} → {:.1f}.".format(*corrected),
        f"(the posterior sampler on DDPM's seed 0 here: {again('ddpm', 0, POSTERIOR, 20):.1f} and "
        f"{again('ddpm', 0, POSTERIOR, 100):.1f} at 20 and 100 calls; {auto('ddpm', 0, POSTERIOR, 20):.1f} and "
        f"{auto('ddpm', 0, POSTERIOR, 100):.1f} in `results/quick-auto-sampler`, drawn before the counter-based "
        f"noise) moves FID by {min(noise):.0f} to {max(noise):.0f} points, and SDE-DPM-Solver++(2M)'s at 50 calls by "
        f"{earlier['fid'] - later['fid']:.1f}",
        # a projection step
        f"(one network and sampler drawn twice moved FID by {min(noise):.0f} to {earlier['fid'] - later['fid']:.1f} "
        "points",
        f"the projection still costs {min(reverse_costs):.0f}–{max(reverse_costs):.0f} points at 10 and 20 calls",
        "It helps SPD at 50 and 100 calls in three of four cases: {:.0f}, {:.0f} and {:.0f} points (seed 0 at 100 "
        "calls: {:.0f} points worse)".format(*spd_gains[:3], -spd_gains[3]),
        f"at 10 calls: W2² {short(measured('ddpm', 'sdedpmpp2m', 'native', 10, 'w2'))} → "
        f"{short(measured('ddpm', 'sdedpmpp2m', 'native', 10, 'w2', projection=1.0))})",
        f"Even then SPD stays behind SDE-DPM-Solver++(2M) without it ({again('spd', 0, SDE_2M, 50):.1f} and "
        f"{again('spd', 1, SDE_2M, 50):.1f} at 50 calls)",
        f"({short(measured('blurring', 'reverse', 'native', 20, 'amplification'))} against "
        f"{short(measured('blurring', 'ancestral', 'native', 20, 'amplification'))} at 20 calls)",
        "{:.1f} and {:.1f} at 20 and 50 calls (seed 0; {:.1f} and {:.1f} at seed 1), no better than the posterior "
        "sampler's {:.1f} at 20".format(
            *[again("blurring", seed, REVERSE, nfe) for seed in (0, 1) for nfe in (20, 50)],
            own_fid("quick", "blurring", 0),
        ),
        # one network, two noise streams
        f"at `86fb5ad`, FID {fid_text(earlier)}: what results/quick-auto-sampler records",
        f"at `1e9b66e` and at `f83e669`, FID {fid_text(later)}: what `resampled/` here records",
        f"That is {earlier['fid'] - later['fid']:.1f} points from the sample set's noise alone",
        f"The 20-call FIDs of SDE-DPM-Solver++(2M) without a corrector above ({own_fid('quick', 'ddpm', 0):.1f}, "
        f"{own_fid('quick', 'spd', 0):.1f}) are the runs' own sample sets",
        f"where DDPM's {projected - unprojected:.0f} points ({unprojected:.1f} → {projected:.1f}) are within "
        "that noise",
    ]


def posterior_quick_suite_sentences() -> list[str]:
    """``results/quick-posterior-sampler/README.md``: its protocol and seed-0 FIDs, and its order
    over training."""
    name = "quick-posterior-sampler"
    return [
        protocol(name),
        f"the floor (500 held-out test images) is {floor(name)}",
        evaluations(name),
        f"the seed-0 DDPM and SPD runs here score {own_fid(name, 'ddpm', 0):.2f} and {own_fid(name, 'spd', 0):.2f}",
        order_over_training(name) + " at steps 150 and 300 (both of 200 samples) while the others fall",
    ]


def slopes(name: str) -> str:
    """A perturbation suite's slopes of FID on |p|, per kind, as its README writes them."""
    found = verdicts(name)
    return "(desync {}, spectrum {})".format(
        *[signed(found[f"spd's FID rises as perturb leaves 0.0 (perturb_kind={kind})"]) for kind in KINDS]
    )


def perturbation_suite_sentences(name: str) -> list[str]:
    """A perturbation suite's README: the slopes on |p|, the two differences from SPD that are
    resolved (as SPD's advantage), the means of the other two, SPD's seeds and the path
    efficiencies of the perturbed runs."""
    with (RESULTS / name / "fid.csv").open() as file:
        efficiency = [float(row["path_efficiency"]) for row in csv.DictReader(file) if row["label"] != "spd"]
    return [
        "SPD's seeds 0, 1, 2 here score {:.2f}, {:.2f}, {:.2f}, exactly".format(
            *[own_fid(name, "spd", seed) for seed in (0, 1, 2)]
        ),
        slopes(name),
        f"desync at p = −0.5 (by {advantage(lower(name, 'spd-desync-0.5'))}) and spectrum at "
        f"p = +0.5 (by {advantage(lower(name, 'spd-spectrum+0.5'))})",
        f"(their means are lower: {mean_over_seeds(name, 'spd-desync+0.5'):.1f} and "
        f"{mean_over_seeds(name, 'spd-spectrum-0.5'):.1f} against {mean_over_seeds(name, 'spd'):.1f})",
        f"(path efficiency {min(efficiency):.3f}–{max(efficiency):.3f})",
    ]


def resampled_perturbations() -> dict[str, dict[int, float]]:
    """The FIDs of the posterior-sampler perturbation suite's networks sampled again with the quick
    budget's sampler (SDE-DPM-Solver++(2M) on the log-SNR grid, 20 calls), by label and seed."""
    fids: dict[str, dict[int, float]] = {}
    name = "perturb-posterior-sampler"
    for run in suite(name).scored():
        assert run.seed is not None
        fids.setdefault(run.label, {})[run.seed] = resampled_fid(name, run.label, run.seed, SDE_2M, 20)
    return fids


PERTURBED = ("spd-desync-0.5", "spd-desync+0.5", "spd-spectrum-0.5", "spd-spectrum+0.5")
KINDS = ("desync", "spectrum")


def perturbation_name(label: str) -> str:
    """``desync −0.5`` for ``spd-desync-0.5``."""
    kind, p = re.fullmatch(r"spd-(\w+)([+-][\d.]+)", label).groups()  # type: ignore[union-attr]
    return f"{kind} {p.replace('-', '−')}"


def posterior_perturbation_suite_sentences() -> list[str]:
    """``results/perturb-posterior-sampler/README.md``: what ``perturbation_suite_sentences`` checks,
    and its last section: the paired differences and means over seeds of its networks sampled
    again with the quick budget's sampler (``paired_difference``, ``seed_mean``)."""
    fids = resampled_perturbations()
    differences = ", ".join(
        f"{perturbation_name(label)}: {signed(paired_difference(fids['spd'], fids[label]))}" for label in PERTURBED
    )
    means = ", ".join(
        f"{'spd' if label == 'spd' else perturbation_name(label)} {seed_mean(list(fids[label].values())).value:.1f}"
        for label in ("spd", *PERTURBED)
    )
    with (RESULTS / "perturb-posterior-sampler" / "power.md").open() as file:  # test_verdicts checks it is made so
        design = next(line for line in file if line.startswith("| 0, 1, 2  ")).strip("| \n").split(" | ")
    slope, rise, share = (cell.strip() for cell in design[3:])
    return [
        *perturbation_suite_sentences("perturb-posterior-sampler"),
        f"{differences}; means over seeds: {means}.",
        f"the slope test on |p| detects a slope of {slope} FID per unit |p| (a rise of {rise} at |p| = 0.5, "
        f"{share.replace('%', ' %')} of SPD's FID) with 80 % power",
    ]


def reference_run_sentences() -> list[str]:
    """``results/quick-2026-11-22/README.md``: its protocol, floor and classifier, and its reading
    of the processes and of the perturbed SPD runs."""
    name = "quick-2026-11-22"
    fids = {(run.label, run.seed): float(run.scores["fid"]) for run in suite(name).scored()}  # type: ignore[index]
    runs = {(run.label, run.seed): run for run in suite(name).scored()}

    def spread(label: str) -> str:
        values = [fids[label, seed] for seed in (0, 1)]
        return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"

    perturbed = [label for label, seed in fids if label.startswith("spd-")]
    spd = runs["spd", 0].scores or {}
    with (RESULTS / name / "fid.csv").open() as file:
        efficiency = [float(row["path_efficiency"]) for row in csv.DictReader(file) if row["label"] in perturbed]
    classifier = json.loads((RESULTS / name / "classifier-fmnist-cnn-7d2e4cf9.json").read_text())
    desync, spectrum = ([fids[f"spd-{kind}{p}", 0] for p in ("-0.2", "-0.1", "+0.1", "+0.2")] for kind in KINDS)
    return [
        protocol(name),
        f"is {floor(name)}",
        evaluations(name),
        f"trained in {classifier['train_seconds']:.0f} s, test accuracy {classifier['test_accuracy']}",
        f"(FID {spread('spd')} and {spread('ddpm')}, mean ± standard deviation over two seeds; two seeds do not "
        f"resolve their difference: {signed(lower(name, 'ddpm'))} paired by seed)",
        "heat dissipation (about {:.0f}) and blurring diffusion (about {:.0f})".format(
            *[statistics.fmean(fids[label, seed] for seed in (0, 1)) for label in ("heat", "blurring")]
        ),
        f"their FIDs ({min(spectrum + desync):.0f} to {max(spectrum + desync):.0f})",
        f"SPD's at seed 0 ({spd['fid']:.1f} [{spd['fid_low']:.1f}, {spd['fid_high']:.1f}]), "
        f"against a seed-to-seed gap of {fids['spd', 0] - fids['spd', 1]:.0f}",
        f"their path efficiencies differ from 1 by at most {100 * (1 - min(efficiency)):.1f} %",
        "({:.0f} and {:.0f} at p = −0.2 and −0.1, SPD's {:.1f} at the same seed, "
        "{:.0f} and {:.0f} at 0.1 and 0.2)".format(*spectrum[:2], fids["spd", 0], *spectrum[2:]),
    ]


def rerun_sentences() -> list[str]:
    """``results/quick-2026-11-30/README.md``: the harness's record of its time, how far the
    networks' final losses moved from results/quick's, the mean FIDs of both, how far each run's
    FID moved, and the verdict against DDPM."""
    name = "quick-2026-11-30"
    (invocation,) = suite(name).info["invocations"]
    before = {(run.label, run.seed): run for run in suite("quick").scored()}
    moved: dict[str, list[float]] = {}
    for run in suite(name).scored():
        earlier = before[run.label, run.seed].summary or {}
        moved.setdefault(run.label, []).append(abs((run.summary or {})["final_loss"] / earlier["final_loss"] - 1))
    smooth = moved["ddpm"] + moved["blurring"] + moved["spd"]
    fids = [own_fid(name, label, seed) - own_fid("quick", label, seed) for label, seed in before]
    means = ", ".join(
        f"{label} {mean_over_seeds('quick', label):.1f} → {mean_over_seeds(name, label):.1f}"
        for label in ("ddpm", "heat", "blurring", "spd")
    )
    (reproduced,) = json.loads((RESULTS / name / "reproduced" / "suite.json").read_text())["invocations"]
    return [
        f"16 runs in {duration(invocation['seconds'])} against its estimate of "
        f"{duration(invocation['estimated_seconds'])}",
        f"16 runs in {duration(reproduced['seconds'])} against its estimate of "
        f"{duration(reproduced['estimated_seconds'])}",
        f"{short(min(smooth), 1)} to {short(max(smooth), 1)} (relative) for DDPM, blurring and SPD, and by "
        f"{short(min(moved['heat']), 1)} to {short(max(moved['heat']), 1)} for heat",
        f"Mean FIDs over seeds, results/quick → here: {means}",
        f"Run for run the FIDs moved by {min(fids):.1f} to {max(fids):.1f}".replace("-", "−"),
        f"its difference from DDPM, {signed(lower(name, 'ddpm'))}, is not resolved by four seeds",
    ]


def perturbation_rerun_sentences() -> list[str]:
    """``results/perturb-2026-11-30/README.md``: the harness's record of its time, the mean FIDs
    of results/perturb and of the rerun, the slopes, and the four differences from SPD, each as
    the side it resolved."""
    name = "perturb-2026-11-30"
    (invocation,) = suite(name).info["invocations"]
    means = ", ".join(
        f"{label} {mean_over_seeds('perturb', label):.1f} → {mean_over_seeds(name, label):.1f}"
        for label in ("spd", *PERTURBED)
    )
    return [
        f"{invocation['runs']} runs in {duration(invocation['seconds'])} against its estimate of "
        f"{duration(invocation['estimated_seconds'])}",
        f"Mean FIDs over seeds, results/perturb → here: {means}.",
        slopes(name),
        f"SPD's FID is lower than desync at p = −0.5 (by {advantage(lower(name, 'spd-desync-0.5'))}) and "
        f"spectrum at p = +0.5 (by {advantage(lower(name, 'spd-spectrum+0.5'))}), as before, and now higher "
        f"than desync at p = +0.5 (by {signed(lower(name, 'spd-desync+0.5'))}) and spectrum at p = −0.5 "
        f"(by {signed(lower(name, 'spd-spectrum-0.5'))})",
    ]


SUITE_SENTENCES = {
    "quick": quick_suite_sentences,
    "quick-posterior-sampler": posterior_quick_suite_sentences,
    "perturb": lambda: perturbation_suite_sentences("perturb"),
    "perturb-posterior-sampler": posterior_perturbation_suite_sentences,
    "quick-2026-11-22": reference_run_sentences,
    "quick-2026-11-30": rerun_sentences,
    "perturb-2026-11-30": perturbation_rerun_sentences,
}


@pytest.mark.parametrize("name", SUITE_SENTENCES)
def test_a_suite_s_readme_quotes_its_records(name: str) -> None:
    """Built in the test, so that a record that no longer makes a sentence fails only its README."""
    missing = [sentence for sentence in SUITE_SENTENCES[name]() if sentence not in suite_readme(name)]
    assert not missing, f"results/{name}/README.md should read: " + "; ".join(map(repr, missing))


def test_the_reference_run_s_perturbed_intervals_overlap_spd_s() -> None:
    """``results/quick-2026-11-22/README.md``: the perturbed SPD runs' FIDs "all have 95 % intervals
    that overlap SPD's at seed 0"."""
    runs = {run.label: run.scores for run in suite("quick-2026-11-22").scored() if run.seed == 0}
    spd = runs.pop("spd")
    assert spd is not None
    perturbed = {label: scores for label, scores in runs.items() if label.startswith("spd-")}
    assert len(perturbed) == 8
    for label, scores in perturbed.items():
        assert scores is not None and scores["fid_low"] < spd["fid_high"] and spd["fid_low"] < scores["fid_high"], label


def test_what_the_suite_readmes_call_exactly_the_same_is_the_same() -> None:
    """The READMEs' "exactly": the same networks give the same numbers across suites and clones.

    - ``results/quick``'s networks are those of ``results/quick-posterior-sampler`` (the same
      final losses), and heat's and blurring's runs, whose samplers did not change, score the same;
    - each quick suite's seed-0 DDPM and SPD runs score what ``results/quick-auto-sampler``'s
      networks scored sampled again with the same sampler in another clone;
    - each perturbation suite's SPD runs score what the quick suite of its sampler scores;
    - ``results/perturb``'s FIDs are, to seven significant digits, and its verdicts (the four
      differences from SPD and the two slopes) are those of the posterior-sampler perturbation
      suite's networks sampled again with the same sampler;
    - the noise streams' records are those of the suites they name, and the two later commits'
      are one;
    - ``results/quick-2026-11-30`` has the run ids and the verdicts of ``results/quick``, and
      ``make bench`` at ``8a2e61f`` (its ``reproduced/``) made every run's scores and final loss again."""
    quick, posterior = suite("quick").scored(), suite("quick-posterior-sampler").scored()
    assert [run.run_id for run in suite("quick-2026-11-30").runs] == [run.run_id for run in suite("quick").runs]
    reproduced = RESULTS / "quick-2026-11-30" / "reproduced"
    assert json.loads((reproduced / "suite.json").read_text())["runs"] == suite("quick").info["runs"]
    for run in suite("quick-2026-11-30").runs:
        again = json.loads((reproduced / "runs" / run.run_id / "summary.json").read_text())
        assert (again["scores"], again["final_loss"]) == (run.summary["scores"], run.summary["final_loss"])  # type: ignore[index]
    assert {claim.claim: claim.verdict for claim in claims(suite("quick").runs, "spd")} == {
        claim.claim: claim.verdict for claim in claims(suite("quick-2026-11-30").runs, "spd")
    }  # "the same verdicts"
    assert [(run.label, run.seed, run.summary["final_loss"]) for run in quick] == [  # type: ignore[index]
        (run.label, run.seed, run.summary["final_loss"]) for run in posterior  # type: ignore[index]
    ]
    for label in ("heat", "blurring"):
        assert [own_fid("quick", label, seed) for seed in range(4)] == [
            own_fid("quick-posterior-sampler", label, seed) for seed in range(4)
        ]
    for name, sampler in (("quick", SDE_2M), ("quick-posterior-sampler", POSTERIOR)):
        for label in ("ddpm", "spd"):
            assert own_fid(name, label, 0) == resampled_fid("quick-auto-sampler", label, 0, sampler, 20)
    for name, quick_name in (("perturb", "quick"), ("perturb-posterior-sampler", "quick-posterior-sampler")):
        assert [own_fid(name, "spd", seed) for seed in (0, 1, 2)] == [
            own_fid(quick_name, "spd", seed) for seed in (0, 1, 2)
        ]
    fids = resampled_perturbations()
    for label, by_seed in fids.items():  # to seven significant digits: resampled with one thread, run with two
        assert by_seed == {seed: pytest.approx(own_fid("perturb", label, seed), rel=1e-7) for seed in by_seed}
    found = verdicts("perturb")
    for label in PERTURBED:
        assert difference_verdict(lower("perturb", label)) == difference_verdict(
            paired_difference(fids["spd"], fids[label])
        )
    for kind in KINDS:  # the slope on |p|, within seeds, as the suite's claim fits it
        points = [(0.5 * (label != "spd"), seed, fid) for label in ("spd", f"spd-{kind}-0.5", f"spd-{kind}+0.5")
                  for seed, fid in fids[label].items()]
        claim = found[f"spd's FID rises as perturb leaves 0.0 (perturb_kind={kind})"]
        assert slope_verdict(claim) == slope_verdict(seed_slope(points))
    streams = noise_streams()
    assert streams["86fb5ad"]["fid"] == resampled_fid("quick-auto-sampler", "ddpm", 0, SDE_2M, 50)
    assert streams["1e9b66e"] == streams["f83e669"]
    assert streams["1e9b66e"]["fid"] == resampled_fid("quick", "ddpm", 0, SDE_2M, 50)
