"""The numbers the README's prose quotes are those of the committed records it cites (and a
suite README's table).

Each sentence below is made from the records it quotes (a suite's run records, read as the report
reads them, and ``spdbench samplers``' CSV), each number rounded once from its record, and must
appear in the README as it stands, whitespace aside. The README's tables are checked where they
are made (``test_report``, ``test_solvers``, ``test_perf``). When a suite is run again, a failure
here names the sentence to update."""

from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path

import pytest
import torch

from models import UNet, network_config
from spdbench.classifier import ClassifierConfig, shipped_paths
from spdbench.records import RunRecord, SuiteRecord, read_suite
from spdbench.report import fid_text, nfe_points, sampler_cell
from spdbench.verdicts import Estimate, claims, seed_mean

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


@pytest.mark.parametrize("sentence", quoted(), ids=lambda sentence: " ".join(sentence.split()[:6]))
def test_the_readme_quotes_the_records(sentence: str) -> None:
    assert sentence in readme(), f"the README should read: {sentence!r}"


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


def test_the_perturbation_suite_s_readme_quotes_its_verdicts() -> None:
    """``results/perturb/README.md``: the slopes on |p|, the two differences from SPD that are
    resolved (as SPD's advantage, the verdicts' difference negated), the means of the other two,
    and SPD's seeds scoring exactly what the quick suite's SPD runs score."""
    perturb = suite("perturb")
    found = {claim.claim: claim.estimate for claim in claims(perturb.runs, perturb.info.get("claims_about"))}

    def slope(kind: str) -> str:
        return found[f"spd's FID rises as perturb leaves 0.0 (perturb_kind={kind})"].text().replace("-", "−")

    def advantage(label: str) -> str:
        difference = found[f"spd's FID is lower than {label}'s"]
        return Estimate(-difference.value, -difference.high, -difference.low, difference.count).text()

    spd = [own_fid("perturb", "spd", seed) for seed in (0, 1, 2)]
    assert spd == [own_fid("quick", "spd", seed) for seed in (0, 1, 2)]
    prose = " ".join((RESULTS / "perturb" / "README.md").read_text().split())
    for sentence in (
        "SPD's seeds 0, 1, 2 here score {:.2f}, {:.2f}, {:.2f}, exactly".format(*spd),
        f"(desync {slope('desync')}, spectrum {slope('spectrum')})",
        f"desync at p = −0.5 (by {advantage('spd-desync-0.5')}) and spectrum at p = +0.5 "
        f"(by {advantage('spd-spectrum+0.5')})",
        f"(their means are lower: {mean_over_seeds('perturb', 'spd-desync+0.5'):.1f} and "
        f"{mean_over_seeds('perturb', 'spd-spectrum-0.5'):.1f} against {mean_over_seeds('perturb', 'spd'):.1f})",
    ):
        assert sentence in prose, sentence
