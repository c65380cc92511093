"""The solvers and time grids: the contract every solver keeps with every process it serves,
measured with the oracle denoiser (exactly, and against Monte-Carlo), and their refusals."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import Tensor

from corruptions import PROCESSES, Process
from corruptions.ddpm import DDPM
from corruptions.errors import ConfigurationError
from corruptions.gaussian import Transition
from corruptions.oracle import OracleDenoiser, gaussian_images
from spdbench.errors import UserError
from spdbench.grids import GRIDS, Grids, make_grid, solver_calls, with_correctors
from spdbench.samplerreport import (
    OracleGrid,
    floor_variance,
    gains,
    oracle_grid,
    output_variance,
    relative_w2,
    todays_solver,
)
from spdbench.sampling import PerImageNoise, generate, sample
from spdbench.solvers import (
    MAX_PROJECTION,
    SOLVERS,
    SamplerSettings,
    Solver,
    get_solver,
    langevin,
    level_schedule,
    plan,
    projection,
    reverse_diffusion,
    schedule,
    solvers_for,
)
from tests.conftest import GAUSSIAN_CASES, IMAGE_SPECTRUM, build, case_id, image_like, needs_fmnist

CPU = torch.device("cpu")


def unclipped(solver: Solver) -> SamplerSettings:
    """The solver's default settings without clipping (the oracle's law is Gaussian)."""
    return solver.settings_for(clip_x0=False) if "clip_x0" in solver.settings else solver.settings_for()


def spectrum_of(process: Process) -> Tensor:
    return IMAGE_SPECTRUM.values(process.basis, process.image_shape)


def exact_w2(process: Process, solver: Solver, grid: Tensor, spectrum: Tensor) -> float:
    """The relative W2² of ``solver``'s samples on ``grid`` with the oracle, exactly."""
    return w2_on(oracle_grid(process, grid, spectrum), solver)


def w2_on(on: OracleGrid, solver: Solver) -> float:
    """The relative W2² of ``solver``'s samples on the oracle grid ``on``, exactly."""
    return relative_w2(output_variance(on, solver)[0], on.spectrum)


def zero_denoiser(x: Tensor, t: Tensor) -> Tensor:
    return torch.zeros_like(x)


def test_every_solver_samples_reproducibly_per_image_on_every_grid(process_case) -> None:
    """Seeding each image on its own makes any subset of a sample set regenerable; every step
    keeps the shape and float64, finite; every grid the process can have starts at the prior's
    time (a grid it cannot have, such as a log-SNR grid where coefficients vanish, is refused)."""
    process = build(process_case)
    reference = image_like(4, process.image_shape, dtype=torch.float64)
    grids = Grids(process, spectrum_of(process))
    for name in solvers_for(process):
        solver = SOLVERS[name]
        for grid_name in GRIDS:
            try:
                grid = grids.make(grid_name, 8)
            except ConfigurationError as refusal:
                assert grid_name != "native" and "use the native grid" in str(refusal)
                continue
            assert grid[0] == process.time_grid()[0]
            assert len(grid) == 9 and grid[-1] == 0 and (torch.diff(grid.double()) < 0).all(), (name, grid_name)
            states: list[Tensor] = []
            run = lambda seeds, ref: sample(  # noqa: E731
                zero_denoiser,
                process,
                PerImageNoise(seeds, process.image_shape, CPU),
                ref,
                grid,
                solver,
                callback=lambda i, t, x, x0: states.append(x),
            )
            whole, again, subset = (
                run([10, 11, 12, 13], reference),
                run([10, 11, 12, 13], reference),
                run([12, 13], reference[2:]),
            )
            assert torch.equal(whole, again)
            torch.testing.assert_close(whole[2:], subset, rtol=0, atol=1e-10)
            assert all(x.dtype == torch.float64 and x.shape[1:] == process.image_shape for x in states)
            assert all(torch.isfinite(x).all() for x in states), (name, grid_name)


#: The relative W2² to the data within which every solver comes on its full grid (consistency).
REACH = 0.05
#: A relative W2² above which a solver has diverged: farther from the data than the data's own spread.
DIVERGED = 1.0


def test_the_oracle_error_falls_as_the_solver_takes_more_steps(process_case) -> None:
    """With a perfect network the exact W2² to the data at 2N network calls is at most 0.9 times
    that at N, for N = 10 and 20, on the native and the log-SNR grid where the process has them,
    unless both are within 3× of the limit the solver reaches on the grid: the larger of the
    floor the process's last level leaves (``floor_variance``) and the solver's own W2² on the
    full grid (a deterministic solver cannot forget a prior that misses the marginal, a
    stochastic one can: their limits differ; that a solver converges to the right law is for the
    Monte-Carlo, reference and order tests here). A solver near that limit may rise towards it
    from below: on the toy variance-exploding process of 200 levels, whose prior leaves out the
    data's variance, every multistep solver settles at 5e-5 to 8e-5 from 20 calls on, and UniPC-2
    passes below it (4.8e-5 at 20 calls, 7.0e-5 at 40). Grids pick their times among the levels,
    so this holds while 2N is at most a quarter of them (more picks make uneven steps, which cost
    a multistep solver its order). A solver that diverges with few steps (W2² above ``DIVERGED``
    at 10 calls on the native grid, as IHDM's strided sampler does: ``spdbench samplers`` shows
    it) is held to this from a quarter of the levels to half of them. And
    every solver is consistent: on its full grid it comes within ``REACH`` of the data (the
    registered ones within 0.021, IHDM's δ-sampler; 2e-4 and less for the Gaussian solvers on the
    processes shipped here). On DDPM, DDIM keeping 0.1 % too little of ``u_t`` at each step falls
    at first (0.035, 0.011, 0.006 at 10, 20, 40 calls) and ends at 0.40 on the full grid; with its
    ``x̂_0`` weight 5 % too large it ends at 0.18. This holds a solver to consistency, not to its
    accuracy (the toy Euler of ``test_new_solver`` reaches 0.027 on DDPM, and with a weight 5 %
    off still passes): the order and reference tests hold the shipped solvers to that."""
    process = build(process_case)
    spectrum = spectrum_of(process)
    grids = Grids(process, spectrum)
    levels = len(process.time_grid()) - 1
    floor = relative_w2(floor_variance(process, spectrum), spectrum)
    full = oracle_grid(process, grids.make("native", None), spectrum)
    compared = set()
    for name in solvers_for(process):
        reached = w2_on(full, SOLVERS[name])
        assert reached < REACH, (name, reached)
        counts = [n for n in (10, 20) if 2 * n <= levels // 4]
        if counts and exact_w2(process, SOLVERS[name], grids.make("native", counts[0]), spectrum) > DIVERGED:
            counts = [levels // 4]
        for grid_name in ("native", "logsnr") if counts else ():
            try:
                grids.make(grid_name, counts[0])
            except ConfigurationError:  # a grid the process cannot have
                continue
            nfes = [*counts, 2 * counts[-1]]
            errors = [exact_w2(process, SOLVERS[name], grids.make(grid_name, n), spectrum) for n in nfes]
            for earlier, later in zip(errors, errors[1:]):
                compared.add(name)
                if later > 0.9 * earlier:
                    limit = max(floor, reached)
                    assert max(earlier, later) < 3 * limit, (name, grid_name, errors, limit)
    assert compared == set(solvers_for(process)) or levels < 80  # fewer levels: too few for 2N ≤ levels/4


#: The frequency-diagonal Gaussian cases of the processes this project ships: those the order test holds to.
SHIPPED_GAUSSIAN_CASES = [case for case in GAUSSIAN_CASES if case[0] in ("ddpm", "blurring", "spd")]


@pytest.mark.parametrize("case", SHIPPED_GAUSSIAN_CASES, ids=case_id)  # not a contract: it needs an asymptotic range
def test_the_second_order_solver_converges_at_second_order(case) -> None:
    """On the log-SNR grid, as NFE doubles, DDIM's distance to the data's law halves (first
    order: W2² falls by about 4), DPM-Solver++(2M)'s falls by about 4 (second order: W2² by
    about 16) and UniPC-2's by about 8 (third order: W2² by about 64) in their asymptotic
    range, before the floor the grid's last level leaves: per frequency, for every Gaussian
    process shipped here. A process without that range (the toy variance-exploding process of
    ``test_new_process``, 200 levels and a prior that misses the marginal, reaches its limit by 20
    calls) does not show the order, so this test holds the solvers to their order on the shipped
    processes and is not in the contract a new process must pass, registered or not."""
    process = build(case)
    spectrum = spectrum_of(process)
    grids = Grids(process, spectrum)

    def falls(solver: str) -> list[float]:
        w2 = [exact_w2(process, SOLVERS[solver], grids.make("logsnr", n), spectrum) for n in (10, 20, 40, 80, 160)]
        return [earlier / later for earlier, later in zip(w2, w2[1:])]

    assert 3 < falls("ddim")[-1] < 5 and max(falls("ddim")) < 5
    assert 12 < max(falls("dpmpp2m")) < 100
    assert max(falls("unipc2")) > 30  # third order (UniC raises UniP-2 by one): W2² by up to about 64


def test_exact_variance_equals_monte_carlo(process_case) -> None:
    """The propagated variance is what sampling with the oracle gives, within sampling error:
    2000 samples estimate each coefficient's variance to ±3.2 % (one σ), their mean over the
    frequencies to about ±0.3 %; for every solver, and with a Langevin corrector or a projection
    for those that take one (4 of the 9 calls correcting)."""
    process = build(process_case)
    spectrum = spectrum_of(process)
    n = 2000
    noise = torch.randn(n, *process.image_shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    reference = gaussian_images(spectrum, process, noise)
    grid = make_grid("native", process, 10)
    corrected = with_correctors(make_grid("native", process, solver_calls(9)), 9)
    for name in solvers_for(process):
        solver = SOLVERS[name]
        cases = [(grid, unclipped(solver))]
        if "corrector" in solver.settings:
            cases.append((corrected, dataclasses.replace(unclipped(solver), corrector=0.3)))
            cases.append((corrected, dataclasses.replace(unclipped(solver), projection=3.0)))
        for chosen, settings in cases:
            exact = output_variance(oracle_grid(process, chosen, spectrum), solver, settings=settings)[0]
            images = sample(
                OracleDenoiser(process, spectrum),
                process,
                PerImageNoise(range(n), process.image_shape, CPU),
                reference,
                chosen,
                solver,
                settings,
            )
            ratio = process.basis.forward(images).abs().square().mean(0) / exact
            assert abs(float(ratio.mean()) - 1) < 0.015 and float((ratio - 1).abs().max()) < 0.25, (name, settings)


def test_a_corrector_step_keeps_the_oracle_marginal_to_first_order(gaussian_case) -> None:
    """At the exact marginal (``v = a² D + s²`` per frequency) with the oracle's ``x̂_0``, a Langevin
    corrector step of size ε maps the variance to exactly ``v + ε² s⁴ / v``: unchanged to first
    order in ε (unadjusted Langevin's bias is of second order), at every level of the grid."""
    process = build(gaussian_case)
    spectrum = spectrum_of(process)
    grid = make_grid("native", process, 6)[:-1]
    times = schedule(process, grid)
    gain = gains(process, OracleDenoiser(process, spectrum), grid).x0
    for eps in (0.05, 0.5):
        settings = SamplerSettings(corrector=eps)
        for i in range(len(grid)):
            a, s = times.at(i)
            v = (a.square() * spectrum + s.square())[0]
            step = langevin(process, times, i, settings)
            assert step.x is not None and step.x0 is not None and step.noise is not None
            m = step.x[0] + step.x0[0] * gain[i]
            torch.testing.assert_close(m.square() * v + step.noise[0].square(), v + eps**2 * s[0] ** 4 / v)


def test_a_projection_is_the_step_its_objective_s_minimiser_takes(gaussian_case) -> None:
    """Ghimire et al.'s ``T`` minimises ``E‖x_pred + T − a_r x_0‖² + (√β/2)‖T‖²``: fitted per
    frequency by least squares on Gaussian data at the marginal (``T = k x_pred``; linear is
    optimal here), the step ``x_pred + √β δμ δτ T`` is the projection's, within sampling error.
    Exactly, with the oracle at the marginal ``v = a_r² D + s_r²`` it scales each frequency by
    ``1 − c s_r²/v`` (``c = min(1, δμ √β δτ/(1 + √β/2))``); at the largest step allowed, where
    ``c`` reaches 1 a step goes all the way (``u' = a_r x̂_0``)."""
    process = build(gaussian_case)
    spectrum = spectrum_of(process)
    grid = make_grid("native", process, 6)[:-1]
    times = schedule(process, grid)
    gain = gains(process, OracleDenoiser(process, spectrum), grid).x0
    finest = process.time_grid()[:2]
    t_max, finest_step = float(finest[0]), float(finest[0] - finest[1])
    generator = torch.Generator().manual_seed(3)
    for i in range(1, len(grid)):
        a, s = times.at(i)
        a_up, s_up = process.marginal_coefficients((grid[i] + finest[0] - finest[1]).reshape(1))
        beta = Transition(a_up, s_up, a, s).s2_tr[0] * t_max / finest_step  # the diffusion rate at r
        dtau = float(grid[i - 1] - grid[i]) / t_max
        clean = spectrum.sqrt() * torch.randn(20_000, *process.image_shape, generator=generator, dtype=torch.float64)
        state = a[0] * clean + s[0] * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
        mean_path = a[0] * clean
        k = ((mean_path * state).mean(0) - state.square().mean(0)) / ((1 + beta.sqrt() / 2) * state.square().mean(0))
        step = projection(process, times, i, SamplerSettings(projection=0.5))
        assert step.x is not None and step.x0 is not None and step.noise is None
        scale = step.x[0] + step.x0[0] * gain[i]
        torch.testing.assert_close(scale, 1 + beta.sqrt() * 0.5 * dtau * k, rtol=0, atol=0.02)
        v = (a.square() * spectrum + s.square())[0]
        c = (0.5 * beta.sqrt() * dtau / (1 + beta.sqrt() / 2)).clamp(max=1.0)
        torch.testing.assert_close(scale, 1 - c * s[0].square() / v)
        full = projection(process, times, i, SamplerSettings(projection=MAX_PROJECTION))
        c_max = (MAX_PROJECTION * beta.sqrt() * dtau / (1 + beta.sqrt() / 2)).clamp(max=1.0)
        assert full.x is not None and full.x0 is not None
        torch.testing.assert_close(full.x[0], 1 - c_max, rtol=0, atol=1e-12)
        torch.testing.assert_close(full.x0[0], c_max * a[0], rtol=0, atol=1e-12)


def same(one: Tensor | None, other: Tensor | None) -> bool:
    """Both absent, or equal element for element."""
    return one is other is None or (one is not None and other is not None and torch.equal(one, other))


CORRECTOR = 0.1  #: a Langevin corrector's step ε


def test_a_projection_comes_between_the_solvers_drift_and_its_noise() -> None:
    """Predict, project, diffuse (Ghimire et al., Algorithm 1): on a grid with repeated times,
    for every solver, the solver's step before a projection has no noise and the projection adds
    the noise that step would have added (none for a deterministic solver); a Langevin corrector
    steps at the repeated time and leaves the solver's steps as they are. A projection needs a
    solver step before it, one each: a grid whose first time repeats, or a time three times, is
    refused."""
    process = build(("spd", {}))
    grid = with_correctors(make_grid("native", process, solver_calls(7)), 7)
    times = level_schedule(process, grid)
    for name in solvers_for(process):
        solver = SOLVERS[name]
        plain = list(plan(process, solver, grid, times, solver.settings_for(corrector=CORRECTOR)))
        projected = list(plan(process, solver, grid, times, solver.settings_for(projection=1.0)))
        assert [own for _, own in plain] == [own for _, own in projected] == [True, False] * 3 + [True]
        for i, ((step, own), (with_projection, _)) in enumerate(zip(plain, projected, strict=True)):
            if not own:  # Langevin's step at the repeated time: û_0 weighted ε a_t there
                a = process.marginal_coefficients(grid[i].reshape(1))[0]
                torch.testing.assert_close(step.x0, CORRECTOR * a, rtol=1e-12, atol=0.0)
                continue
            handed = i + 1 < len(plain)
            assert with_projection.noise is None if handed else same(with_projection.noise, step.noise), name
            if handed:
                assert same(projected[i + 1][0].noise, step.noise), name
            mine = (with_projection.x, with_projection.x0, *with_projection.history)
            theirs = (step.x, step.x0, *step.history)
            assert all(same(one, other) for one, other in zip(mine, theirs, strict=True)), name
    solver = SOLVERS["ancestral"]
    for bad in (torch.cat([grid[:1], grid]), torch.cat([grid[:3], grid[2:]])):
        with pytest.raises(ConfigurationError, match="a grid time repeats at most once"):
            list(plan(process, solver, bad, level_schedule(process, bad), solver.settings_for(projection=1.0)))


def test_ihdm_s_strided_step_skips_levels_in_one_euler_step() -> None:
    """Over ``d`` levels IHDM's step keeps ``1 − d`` of ``u_k``, takes ``d`` of the one-level
    sharpening ``x̂`` and adds noise of std ``η δ √d``; at ``d = 1``, ``η = 1`` the official
    sampler's ``u_{k−1} = x̂ + δ z``; the last step returns the mean."""
    process = build(("heat", {}))
    grid = torch.tensor([9, 8, 4, 0])
    times = schedule(process, grid)
    settings = SamplerSettings(eta=0.5)
    for i, stride in enumerate((1, 4, 4)):
        step = SOLVERS["ihdm"].step(process, times, i, settings)
        assert (float(step.x), float(step.x0)) == (1 - stride, stride)
        last = i == len(grid) - 2
        assert step.noise is None if last else float(step.noise) == pytest.approx(0.5 * process.delta * stride**0.5)


def test_the_reverse_diffusion_predictor_is_song_et_al_s_for_ddpm() -> None:
    """For DDPM, level ``t`` to ``t − 1``: Song et al.'s reverse-diffusion predictor for the VP
    SDE, ``x_{t−1} = (2 − √(1 − β_t)) x_t + β_t s(x_t) + √β_t z`` with the score
    ``s = (√ᾱ_t x̂_0 − x_t)/(1 − ᾱ_t)``, from DDPM's own β; and the projection's β at a level is
    the VP SDE's ``β(t)``."""
    process = build(("ddpm", {}))
    assert isinstance(process, DDPM)
    grid = process.time_grid()
    times = schedule(process, grid[:12])
    alpha_bar = process.alpha_bar
    for i in range(11):
        t = int(grid[i])
        beta = 1 - alpha_bar[t] / alpha_bar[t - 1]
        score_x, score_x0 = -1 / (1 - alpha_bar[t]), alpha_bar[t].sqrt() / (1 - alpha_bar[t])
        step = reverse_diffusion(process, times, i, SamplerSettings())
        assert step.x is not None and step.x0 is not None and step.noise is not None
        torch.testing.assert_close(step.x.flatten()[0], 2 - (1 - beta).sqrt() + beta * score_x)
        torch.testing.assert_close(step.x0.flatten()[0], beta * score_x0)
        torch.testing.assert_close(step.noise.flatten()[0], beta.sqrt())
    for i in range(1, 11):  # the projection's β at level r: the VP SDE's β(t) = 1000 β_{r+1}
        r = int(grid[i])
        beta_t = process.levels * (1 - alpha_bar[r + 1] / alpha_bar[r])
        c = 0.7 * beta_t.sqrt() * (1 / process.levels) / (1 + beta_t.sqrt() / 2)
        step = projection(process, times, i, SamplerSettings(projection=0.7))
        assert step.x is not None
        torch.testing.assert_close(1 - step.x.flatten()[0], c)


def old_reverse_step(
    process: Process, net_out: Tensor, x_t: Tensor, t: Tensor, t_next: Tensor, noise: Tensor, settings: SamplerSettings
) -> Tensor:
    """The posterior sampler as it was, a method of the Gaussian processes (commit f322df8),
    copied here verbatim but for names: the reference ``ancestral`` must reproduce bit for bit."""
    a_t, s_t = process.marginal_coefficients(t.reshape(1))
    x0_hat = process.mix([(1.0 / a_t, x_t), (-s_t / a_t, net_out.to(x_t.dtype))])
    if settings.clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
    if int(t_next == 0):
        return x0_hat
    a_r, s_r = process.marginal_coefficients(t_next.reshape(1))
    transition = Transition(a_t, s_t, a_r, s_r)
    c_t, c_0, var = transition.posterior()
    if settings.variance == "small":
        std = settings.eta * var.sqrt()
        c_t = (s_r.square() - std.square()).clamp_min(0.0).sqrt() / s_t
        c_0 = a_r - c_t * a_t
    else:
        std = settings.eta * transition.s2_tr.sqrt()
    return process.mix([(c_t, x_t), (c_0, x0_hat), (std, noise)])


def test_ancestral_reproduces_the_sampler_it_replaces(gaussian_case) -> None:
    """The ``ancestral`` solver draws, bit for bit, what the posterior sampler it replaced drew
    (``old_reverse_step``), with its own settings and with η = 0.5, the large variance and no
    clipping, on a coarse grid and on the full one."""
    process = build(gaussian_case)
    spectrum = spectrum_of(process)
    denoiser = OracleDenoiser(process, spectrum)
    reference = image_like(3, process.image_shape, dtype=torch.float64)
    for settings in (SamplerSettings(), SamplerSettings(eta=0.5, variance="large", clip_x0=False)):
        for nfe in (7, None):
            grid = make_grid("native", process, nfe)
            noise = PerImageNoise([1, 2, 3], process.image_shape, CPU)
            x = process.prior(noise.draw(), reference)
            for t, t_next in zip(grid[:-1], grid[1:]):
                x = old_reverse_step(process, denoiser(x, t), x, t, t_next, noise.draw(), settings)
            new = sample(
                denoiser,
                process,
                PerImageNoise([1, 2, 3], process.image_shape, CPU),
                reference,
                grid,
                SOLVERS["ancestral"],
                settings,
            )
            assert torch.equal(new, x), (settings, nfe)


def test_the_stochastic_multistep_solver_is_ancestral_at_first_order(gaussian_case) -> None:
    """SDE-DPM-Solver++(2M)'s first step (no earlier x̂_0) is the posterior ``q(u_r | u_t, û_0)``:
    the ancestral step, coefficient for coefficient; later steps add a history term."""
    process = build(gaussian_case)
    times = schedule(process, make_grid("logsnr", process, 10, spectrum_of(process)))
    first, ancestral = (
        SOLVERS[name].step(process, times, 0, SamplerSettings())
        for name in ("sdedpmpp2m", "ancestral")
    )
    for mine, theirs in ((first.x, ancestral.x), (first.x0, ancestral.x0), (first.noise, ancestral.noise)):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)
    assert len(SOLVERS["sdedpmpp2m"].step(process, times, 3, SamplerSettings()).history) == 1


#: The multistep solvers, diffusers' scheduler of each (data prediction, the order kept to the end)
#: and the precision it steps at: UniPC's in float64, DPM-Solver's in float32 (its ``step`` casts
#: the state to float32).
REFERENCE_SCHEDULERS = {
    "unipc2": ("UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh2"}, 1e-10),
    "unipc3": ("UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh2"}, 1e-10),
    "dpmpp2m": ("DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++"}, 1e-6),
    "dpmpp3m": ("DPMSolverMultistepScheduler", {"solver_order": 3, "algorithm_type": "dpmsolver++"}, 1e-6),
    "sdedpmpp2m": ("DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "sde-dpmsolver++"}, 1e-6),
}


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers' set_timesteps, NumPy 2
@pytest.mark.parametrize("name", REFERENCE_SCHEDULERS)
def test_the_multistep_solvers_take_the_reference_schedulers_steps(name: str) -> None:
    """On DDPM (one log-SNR for every frequency) the multistep solvers' states are those of
    diffusers' schedulers (UniPC with B(h) = expm1(−h), predictor and corrector; DPM-Solver++ of
    orders 2 and 3, and its SDE form given the same noise) driven on the same σ = s/a grid with
    the same x̂_0, the same first lower-order steps and the order kept to the end: step for step,
    each from our state, to the reference's precision (UniPC's corrector folded into the next step
    too). (The reference's last step, to σ = 0 at full order, is undefined; ours returns x̂_0 there.)"""
    diffusers = pytest.importorskip("diffusers")
    process = build(("ddpm", {}))
    spectrum = spectrum_of(process)
    oracle = OracleDenoiser(process, spectrum)
    grid = make_grid("logsnr", process, 8)
    reference = image_like(3, process.image_shape, dtype=torch.float64)
    states: list[Tensor] = []
    sample(
        oracle,
        process,
        PerImageNoise([1, 2, 3], process.image_shape, CPU),
        reference,
        grid,
        SOLVERS[name],
        SamplerSettings(clip_x0=False),
        callback=lambda i, t, x, x0: states.append(x),
    )
    kind, options, precision = REFERENCE_SCHEDULERS[name]
    scheduler = getattr(diffusers, kind)(prediction_type="sample", lower_order_final=False, **options)
    scheduler.set_timesteps(len(grid) - 1)
    a, s = process.marginal_coefficients(grid[:-1])
    scheduler.sigmas = torch.cat([(s / a).flatten(), torch.zeros(1, dtype=torch.float64)])
    noise = PerImageNoise([1, 2, 3], process.image_shape, CPU)
    x = process.prior(noise.draw(), reference)
    for i, t in enumerate(grid[:-2]):
        x0_hat = process.predict_x0(oracle(x, t), x, t)
        z = noise.draw()  # DPM-Solver's step takes the noise (only its SDE form adds it); UniPC's takes none
        given = {"variance_noise": z} if kind == "DPMSolverMultistepScheduler" else {}
        theirs = scheduler.step(x0_hat, scheduler.timesteps[i], x, **given).prev_sample
        torch.testing.assert_close(theirs, states[i], rtol=precision, atol=precision)
        x = states[i]  # the next step from our state: the reference's rounding does not add up


#: Each grid's coordinate as ``spdbench.grids``' docstring defines it, from the log-SNR of every
#: frequency ``λ`` (times × image) and the data's spectrum ``D``: computed here, not by the module.
COORDINATES = {
    "logsnr": lambda log_snr, spectrum: log_snr.mean((1, 2, 3)),
    "edm": lambda log_snr, spectrum: torch.exp(-log_snr.mean((1, 2, 3)) / 7),
    "signal": lambda log_snr, spectrum: (log_snr * spectrum).sum((1, 2, 3)) / spectrum.expand_as(log_snr[0]).sum(),
}


def test_every_grid_s_coordinate_is_defined_here() -> None:
    """Every registered grid but ``native`` (the process's own) is held to its definition below."""
    assert set(COORDINATES) == set(GRIDS) - {"native"}


@pytest.mark.parametrize("nfe", [10, 20])
@pytest.mark.parametrize("grid_name", COORDINATES)
def test_a_grid_is_the_levels_nearest_to_even_steps_in_its_coordinate(gaussian_case, grid_name: str, nfe: int) -> None:
    """A grid of ``nfe`` calls, before its last time (the data), is the levels nearest to ``nfe``
    values evenly spaced in its coordinate, from the prior's time to the last level whose mean
    log-SNR is at most ``3 + log(nfe/10)``. (With more calls than here two values may share a
    nearest level, and the grid moves one of them: ``spdbench.grids.pick``.)"""
    process = build(gaussian_case)
    spectrum = spectrum_of(process)
    a, s = process.marginal_coefficients(process.time_grid()[:-1])
    log_snr = (a / s).log().expand(len(a), *process.image_shape)
    kept = log_snr.mean((1, 2, 3)) <= 3.0 + math.log(nfe / 10)
    levels, coordinate = process.time_grid()[:-1][kept], COORDINATES[grid_name](log_snr[kept], spectrum)
    targets = torch.linspace(float(coordinate[0]), float(coordinate[-1]), nfe, dtype=torch.float64)
    nearest = levels[(coordinate[None, :] - targets[:, None]).abs().argmin(1)]
    assert make_grid(grid_name, process, nfe, spectrum).tolist() == [*nearest.tolist(), 0]


def test_bad_solver_grid_and_settings_are_refused() -> None:
    ddpm, heat = build(("ddpm", {})), build(("heat", {}))
    with pytest.raises(ConfigurationError, match="unknown sampler 'no-such-solver'; valid: ancestral, ddim"):
        get_solver("no-such-solver")
    with pytest.raises(ConfigurationError, match="unknown grid 'no-such-grid'; valid: native, logsnr, edm, signal"):
        make_grid("no-such-grid", ddpm, 10)
    with pytest.raises(ConfigurationError, match=r"nfe \(sampler network calls\) must lie in \[1, 1000\]"):
        make_grid("logsnr", ddpm, 5000)
    with pytest.raises(ConfigurationError, match="the signal grid needs the data's power spectrum"):
        make_grid("signal", ddpm, 10)
    with pytest.raises(ConfigurationError, match="sampler 'ihdm' serves the HeatDissipation processes, not 'ddpm'"):
        sample(
            zero_denoiser,
            ddpm,
            PerImageNoise([0], ddpm.image_shape, CPU),
            image_like(1, ddpm.image_shape),
            make_grid("native", ddpm, 3),
            SOLVERS["ihdm"],
        )
    with pytest.raises(ConfigurationError, match="for 'heat': ihdm"):
        SOLVERS["ancestral"].check(heat)
    with pytest.raises(ConfigurationError, match="sampler 'ddim' has no setting eta, variance; its settings: clip_x0"):
        SOLVERS["ddim"].settings_for(eta=0.5, variance="large")
    with pytest.raises(ConfigurationError, match="eta must lie in"):
        SOLVERS["ancestral"].settings_for(eta=1.5)
    assert SOLVERS["ihdm"].settings_for() == SamplerSettings(eta=1.0, clip_x0=False)
    assert SOLVERS["ddim"].settings_for() == SamplerSettings(eta=0.0, clip_x0=True)
    assert math.isclose(SOLVERS["ancestral"].settings_for(eta=0.25).eta, 0.25)


def test_images_that_are_not_finite_are_refused_not_scored() -> None:
    """A network (or sampler) that gives NaN stops the sample set with one line that says so,
    instead of images quantised from NaN (to 0) that would still get a FID."""
    process = build(("ddpm", {}))
    train = image_like(4, process.image_shape)
    nan_denoiser = lambda x, t: torch.full_like(x, float("nan"))  # noqa: E731
    grid, solver = make_grid("native", process, 3), SOLVERS["ddim"]
    with pytest.raises(UserError, match=r"images 0–1 of the sample set are not finite: .* \(ddim, 3 calls\) diverged"):
        generate(nan_denoiser, process, train, 4, 0, grid, solver, solver.settings_for(), 2, CPU)
    assert generate(zero_denoiser, process, train, 4, 0, grid, solver, solver.settings_for(), 2, CPU).shape[0] == 4


def test_a_process_of_a_new_family_needs_its_paper_s_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered process that none of ``TODAYS_SAMPLERS`` serves is refused by name, not with
    an internal error: its family's paper sampler goes there."""

    class NewFamily(Process):
        name = "new-family"

    monkeypatch.setitem(PROCESSES, NewFamily.name, NewFamily)
    with pytest.raises(ConfigurationError, match=r"TODAYS_SAMPLERS \(ancestral, ihdm\) serves 'new-family'"):
        todays_solver(NewFamily.name)
    assert todays_solver("heat") == "ihdm" and todays_solver("spd") == "ancestral"


def test_samplers_command_writes_the_tables_and_the_plot(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``spdbench samplers`` (on a DDPM of 60 levels and a heat of 20, to stay fast): every solver
    that serves each × every grid × every NFE below the levels, and the full grid."""
    import csv

    from typer.testing import CliRunner

    from corruptions import make_process
    from spdbench import samplerreport
    from spdbench.cli import app
    from spdbench.tables import csv_text, frame

    def small(image_shape, spectrum):  # type: ignore[no-untyped-def]
        return [
            (make_process("ddpm", image_shape, levels=60), True),
            (make_process("heat", image_shape, levels=20), True),
        ]

    monkeypatch.setattr(samplerreport, "process_cases", small)
    out = tmp_path / "samplers"
    result = CliRunner().invoke(app, ["samplers", "--spectrum", "paper", "--size", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "samplers.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(samplerreport.COLUMNS)
    measures = samplerreport.read_measures(out / "samplers.csv")  # what the README's table is made from
    assert {row.full for row in measures} == {True, False} and all(isinstance(row.nfe, int) for row in measures)
    assert csv_text(frame([row.record() for row in measures], samplerreport.COLUMNS)) == (
        out / "samplers.csv"
    ).read_text()
    ddpm = {(row["solver"], row["grid"], row["nfe"]) for row in rows if row["process"] == "ddpm"}
    gaussian = solvers_for(make_process("ddpm", (1, 8, 8)))
    assert "dpmpp3m" in gaussian and "ihdm" not in gaussian
    assert ddpm == {(s, g, n) for s in gaussian for g in GRIDS for n in ("5", "10", "20", "50")} | {
        (s, "native", "60") for s in gaussian
    }
    assert {row["solver"] for row in rows if row["process"] == "heat"} == {"ihdm"}
    assert all(float(row["w2"]) >= 0 for row in rows)
    ddpm_20 = [row for row in rows if row["process"] == "ddpm" and row["nfe"] == "20"]
    correctors = {(row["corrector"], row["projection"]) for row in ddpm_20}
    assert correctors == {("0.0", "0.0"), ("0.1", "0.0"), ("0.6", "0.0"), ("0.0", "1.0"), ("0.0", "3.0")}
    markdown = (out / "samplers.md").read_text()
    assert "`spdbench samplers --spectrum paper --dataset fmnist --size 8" in markdown and "| ddpm" in markdown
    assert "## Few calls against many" in markdown and "## With a Langevin corrector or a projection" in markdown
    assert (out / "w2_vs_nfe.png").stat().st_size > 10_000


def test_the_readme_quotes_the_committed_sampler_results() -> None:
    """The README's table of samplers is the one ``headline`` makes from the committed
    ``results/samplers/fmnist-28/samplers.csv`` (regenerate it after ``make samplers``)."""
    from spdbench.samplerreport import headline, read_measures

    root = Path(__file__).parents[1]
    table = headline(read_measures(root / "results" / "samplers" / "fmnist-28" / "samplers.csv"))
    assert table in (root / "README.md").read_text()


@needs_fmnist  # the empirical spectrum
@pytest.mark.parametrize("name", ["ddpm", "heat"])
def test_the_committed_sampler_measures_are_what_the_measure_gives_now(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The rows of ``results/samplers/fmnist-28/samplers.csv`` (``make samplers``) for a process at
    its defaults are what ``measure_all`` gives now (the other processes take longer; ``spdbench
    samplers`` regenerates the whole file in about a minute)."""
    from spdbench import samplerreport
    from spdbench.spectra import resolve_spectrum

    monkeypatch.setenv("SPDBENCH_CACHE", str(tmp_path / "cache"))
    every = samplerreport.process_cases

    def only(shape, spectrum):  # type: ignore[no-untyped-def]
        return [case for case in every(shape, spectrum) if case[0].label() == name]

    monkeypatch.setattr(samplerreport, "process_cases", only)
    rows = samplerreport.measure_all((1, 28, 28), resolve_spectrum("empirical", "fmnist", 28))
    csv_path = Path(__file__).parents[1] / "results" / "samplers" / "fmnist-28" / "samplers.csv"
    committed = samplerreport.read_measures(csv_path)
    kept = [row.record() for row in committed if row.label == name]
    # Another CPU's vector code may round the last digits otherwise: to 1e-12, not bit for bit.
    pd.testing.assert_frame_equal(
        pd.DataFrame([row.record() for row in rows]),
        pd.DataFrame(kept),
        rtol=1e-12,
        obj=f"{csv_path.relative_to(Path(__file__).parents[1])} (a solver or grid measures otherwise: if the change "
        "was meant, make samplers; if not, the tests of solvers and grids should say what broke)",
    )
