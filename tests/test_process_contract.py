"""The contract every process keeps, run against every registered process alike (what samplers
need of a process is in ``tests/test_solvers.py``)."""

from __future__ import annotations

import torch
from torch import nn

from tests.conftest import build, image_like

SHAPES = [(1, 28, 28), (3, 32, 32)]


def test_shapes_and_dtypes(process_case) -> None:
    for shape in SHAPES:
        process = build(process_case, shape)
        x0 = image_like(4, shape)
        t = process.sample_time(4, torch.Generator().manual_seed(0))
        corruption = process.corrupt(x0, t, torch.randn_like(x0))
        assert corruption.x_t.shape == x0.shape and corruption.x_t.dtype == torch.float32
        assert corruption.target.shape == x0.shape and corruption.target.dtype == torch.float32
        assert process.predict_x0(corruption.target, corruption.x_t, t).shape == x0.shape
        loss = process.loss(torch.zeros_like(x0), corruption)
        assert loss.shape == (4,) and torch.isfinite(loss).all()
        fraction = process.network_time(t)
        assert fraction.dtype == torch.float32 and ((0 < fraction) & (fraction <= 1)).all()


def test_time_grid_walks_from_prior_to_data(process_case) -> None:
    process = build(process_case)
    for nfe in (None, 10):
        grid = process.time_grid(nfe)
        assert grid[-1] == 0 and (torch.diff(grid.double()) < 0).all()
        if nfe is not None:
            assert len(grid) == nfe + 1
    full = process.time_grid()
    assert process.network_time(full[:1]) == 1.0


def test_corruption_is_deterministic_given_seeds(process_case) -> None:
    process = build(process_case)
    x0 = image_like(8, process.image_shape)
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(3)
        t = process.sample_time(8, generator)
        noise = torch.randn(x0.shape, generator=generator)
        runs.append(process.corrupt(x0, t, noise))
    assert torch.equal(runs[0].x_t, runs[1].x_t) and torch.equal(runs[0].target, runs[1].target)


def test_earliest_time_is_close_to_clean(process_case) -> None:
    """Within 20 % in norm at the first level (heat's is a 0.5-pixel blur)."""
    process = build(process_case)
    x0 = image_like(16, process.image_shape)
    earliest = process.time_grid()[-2].expand(16)
    x_t = process.corrupt(x0, earliest, torch.randn_like(x0)).x_t
    assert float((x_t - x0).norm() / x0.norm()) < 0.2


def test_last_marginal_matches_prior(process_case) -> None:
    """Pixel statistics of ``x_T`` from data and of the sampler's prior agree. Each image's
    mean varies (its DC coefficient), so with n = 2048 images the means' difference has a
    standard error of about 3 % of the pixel std and the stds' ratio about 2 %: we allow 4×."""
    process = build(process_case)
    n = 2048
    x0 = image_like(n, process.image_shape, seed=1, dtype=torch.float64)
    reference = image_like(n, process.image_shape, seed=2, dtype=torch.float64)
    last = process.time_grid()[:1].expand(n)
    generator = torch.Generator().manual_seed(0)
    x_last = process.corrupt(x0, last, torch.randn(x0.shape, generator=generator, dtype=torch.float64)).x_t
    prior = process.prior(torch.randn(x0.shape, generator=generator, dtype=torch.float64), reference)
    assert abs(float(x_last.mean() - prior.mean())) < 0.12 * float(prior.std())
    assert abs(float(x_last.std() / prior.std()) - 1) < 0.08


def test_loss_is_finite_and_differentiable(process_case) -> None:
    process = build(process_case)
    net = nn.Conv2d(1, 1, 3, padding=1)
    x0 = image_like(8, process.image_shape)
    t = process.sample_time(8, torch.Generator().manual_seed(0))
    corruption = process.corrupt(x0, t, torch.randn_like(x0))
    loss = process.loss(net(corruption.x_t), corruption).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all() and net.weight.grad.abs().sum() > 0


def test_true_clean_image_implies_the_training_target(process_case) -> None:
    """``net_output_from_x0`` at the true ``x0`` is exactly what the loss trains towards."""
    process = build(process_case)
    x0 = image_like(4, process.image_shape, dtype=torch.float64)
    t = process.sample_time(4, torch.Generator().manual_seed(1))
    corruption = process.corrupt(x0, t, torch.randn_like(x0))
    implied = process.net_output_from_x0(x0, corruption.x_t, t)
    torch.testing.assert_close(implied, corruption.target, rtol=1e-7, atol=1e-7)
