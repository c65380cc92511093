"""The geometry of sampling paths: the diagnostics on paths with known answers, the recorded
trajectory, and the empirical optimal denoiser against brute force and the Gaussian posterior."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from corruptions import make_process
from corruptions.oracle import OracleDenoiser, gaussian_images
from spdbench.geometry import (
    EmpiricalOptimalDenoiser,
    chord_deviation,
    off_plane_share,
    path_fraction,
    record_trajectory,
)
from spdbench.grids import make_grid
from spdbench.sampling import PerImageNoise, sample
from spdbench.solvers import SOLVERS, solvers_for
from tests.conftest import IMAGE_SPECTRUM, build, image_like

CPU = torch.device("cpu")


def embedded(points: Tensor, dimension: int = 48, samples: int = 3) -> Tensor:
    """``points`` (``P × k``) placed in ``dimension`` pixels by a random orthonormal frame, one per
    sample, shaped as a path ``P × samples × 1 × 6 × 8``."""
    paths = []
    for seed in range(samples):
        generator = torch.Generator().manual_seed(seed)
        frame, _ = torch.linalg.qr(torch.randn(dimension, points.shape[1], generator=generator, dtype=torch.float64))
        paths.append(points @ frame.T + seed)
    return torch.stack(paths, 1).reshape(len(points), samples, 1, 6, 8)


def arc(angle: float, count: int) -> Tensor:
    """``count`` points evenly along a circular arc of radius 2 and ``angle`` radians, in a plane."""
    phi = torch.linspace(0.0, angle, count, dtype=torch.float64)
    return torch.stack([2 * torch.cos(phi), 2 * torch.sin(phi)], 1)


def test_a_straight_path_has_no_deviation_and_walks_evenly() -> None:
    line = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)[:, None] * torch.tensor([[3.0, -1.0, 2.0]])
    path = embedded(line)
    torch.testing.assert_close(chord_deviation(path), torch.zeros(11, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(off_plane_share(path, 0), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(path_fraction(path), torch.linspace(0.0, 1.0, 11, dtype=torch.float64))


@pytest.mark.parametrize("angle", [0.5, math.pi / 2, 3.0])
def test_a_circular_arc_deviates_by_its_sagitta_over_its_chord(angle: float) -> None:
    """At the middle of an arc of angle θ the deviation is (1 − cos(θ/2)) / (2 sin(θ/2)); the arc
    lies in one plane with its chord, so nothing is left outside one component off the chord."""
    path = embedded(arc(angle, 21))
    deviation = chord_deviation(path)
    expected = (1 - math.cos(angle / 2)) / (2 * math.sin(angle / 2))
    torch.testing.assert_close(deviation[10], torch.full((3,), expected, dtype=torch.float64))
    assert deviation[0].abs().max() < 1e-12 and deviation[-1].abs().max() < 1e-12
    assert off_plane_share(path, 1).abs().max() < 1e-12


def test_a_helix_leaves_the_plane() -> None:
    """A path that winds around its chord has variance outside one component, and none outside
    the two of its circle."""
    phi = torch.linspace(0.0, 4 * math.pi, 41, dtype=torch.float64)
    helix = torch.stack([torch.cos(phi), torch.sin(phi), phi / 3], 1)
    path = embedded(helix)
    assert (off_plane_share(path, 1) > 0.1).all()
    assert off_plane_share(path, 2).abs().max() < 1e-12


def test_the_recorded_trajectory_is_the_sampler_s_path(gaussian_case) -> None:
    """The states the network saw, from the prior's draw, then the sample; the sample is what
    ``sample`` returns."""
    process = build(gaussian_case, shape=(1, 8, 8))
    spectrum = IMAGE_SPECTRUM.values(process.basis, process.image_shape)
    denoiser = OracleDenoiser(process, spectrum)
    reference = image_like(2, process.image_shape, dtype=torch.float64)
    grid = make_grid("native", process, 6)
    solver = SOLVERS[solvers_for(process)[-1]]
    settings = solver.settings_for(clip_x0=False)
    trajectory = record_trajectory(denoiser, process, PerImageNoise([4, 5], process.image_shape, CPU), reference,
                                   grid, solver, settings)
    final = sample(denoiser, process, PerImageNoise([4, 5], process.image_shape, CPU), reference, grid, solver,
                   settings)
    assert trajectory.states.shape == (7, 2, 1, 8, 8) and trajectory.denoised.shape == (6, 2, 1, 8, 8)
    torch.testing.assert_close(trajectory.states[-1], final, rtol=0, atol=0)
    prior = process.prior(PerImageNoise([4, 5], process.image_shape, CPU).draw(), reference)
    torch.testing.assert_close(trajectory.states[0], prior)
    torch.testing.assert_close(trajectory.times, grid[:-1].to(torch.float64))


def brute_force_posterior_mean(process, images: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """``Σ_i softmax_i(−½ Σ_k |(B x_t − a_k B y_i)_k / s_k|²) y_i``, one training image at a time,
    in the process's own coefficients."""
    a, s = process.marginal_coefficients(t.reshape(1))
    coefficients = process.basis.forward(x_t)
    means = []
    for state in coefficients:
        logits = torch.stack([
            -0.5 * ((state - a * process.basis.forward(image[None])[0]) / s).abs().square().sum() for image in images
        ])
        means.append((torch.softmax(logits, 0)[:, None, None, None] * images).sum(0))
    return torch.stack(means)


def test_the_empirical_optimal_denoiser_is_the_posterior_mean_over_the_training_set(gaussian_case) -> None:
    """Against brute force on a tiny set, with chunks smaller than the set; at small noise it
    returns the training image the state came from."""
    process = build(gaussian_case, shape=(1, 8, 8))
    images = image_like(7, process.image_shape, seed=3, dtype=torch.float64)
    optimal = EmpiricalOptimalDenoiser(process, images, chunk=3)
    levels = process.time_grid()
    for t in (levels[0], levels[len(levels) // 2], levels[-3]):
        x_t = process.corrupt(images[:4], t.expand(4), torch.randn(4, *process.image_shape, dtype=torch.float64)).x_t
        expected = brute_force_posterior_mean(process, images, x_t, t)
        torch.testing.assert_close(optimal.posterior_mean(x_t, t), expected, rtol=1e-9, atol=1e-9)
    still = torch.zeros(4, *process.image_shape, dtype=torch.float64)
    x_t = process.corrupt(images[:4], levels[-2].expand(4), still).x_t
    torch.testing.assert_close(optimal.posterior_mean(x_t, levels[-2]), images[:4], rtol=0, atol=1e-6)


def test_on_a_large_gaussian_sample_it_is_the_gaussian_posterior_mean() -> None:
    """When the training set is a large sample of ``N(0, diag D)``, the empirical posterior mean is
    close to the closed-form one, ``a D / (a² D + s²) · u_t``, where the noise is large enough
    that many training images share the weight."""
    process = make_process("ddpm", (1, 4, 4))
    spectrum = IMAGE_SPECTRUM.values(process.basis, process.image_shape)
    generator = torch.Generator().manual_seed(0)
    images = gaussian_images(spectrum, process, torch.randn(60_000, 1, 4, 4, generator=generator, dtype=torch.float64))
    optimal = EmpiricalOptimalDenoiser(process, images)
    oracle = OracleDenoiser(process, spectrum)
    fresh = gaussian_images(spectrum, process, torch.randn(64, 1, 4, 4, generator=generator, dtype=torch.float64))
    t = process.time_grid()[len(process.time_grid()) // 3]
    x_t = process.corrupt(fresh, t.expand(64), torch.randn(64, 1, 4, 4, generator=generator, dtype=torch.float64)).x_t
    closed_form = oracle.posterior_mean(x_t, t)
    error = (optimal.posterior_mean(x_t, t) - closed_form).norm() / closed_form.norm()
    assert error < 0.05, float(error)
