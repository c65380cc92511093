"""The sampling noise: counter-based, per image, on the sampling device; which seed and which
training image each image of a sample set starts from; images as bytes."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from corruptions import make_process
from spdbench.grids import solver_calls, with_correctors
from spdbench.sampling import PerImageNoise, sample, sample_set_inputs, splitmix64, to_uint8
from spdbench.solvers import SamplerSettings, get_solver

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def reference_splitmix64(z: int) -> int:
    """splitmix64's finaliser on Python's unbounded integers."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & MASK
    return z ^ (z >> 31)


def reference_pixel(seed: int, draw: int, pixel: int) -> float:
    """Pixel ``pixel`` of draw ``draw`` of the image seeded ``seed``, as ``PerImageNoise``'s
    docstring defines it, on Python's integers and floats."""
    key = reference_splitmix64((reference_splitmix64(seed * GOLDEN & MASK) + draw * GOLDEN) & MASK)
    bits = reference_splitmix64((key + (pixel + 1) * GOLDEN) & MASK)
    u1, u2 = ((bits >> 32) + 1) / 2**32, ((bits & 0xFFFFFFFF) + 1) / 2**32
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_the_noise_is_the_documented_function_of_seed_draw_and_pixel(device: torch.device) -> None:
    """Pinned: a change to the generator would silently change every sample set."""
    noise = PerImageNoise([0, 1, 123_000_007], (2, 3, 3), device)
    for draw in range(3):
        drawn = noise.draw().flatten(1).cpu()
        for i, seed in enumerate([0, 1, 123_000_007]):
            expected = torch.tensor([reference_pixel(seed, draw, j) for j in range(18)], dtype=torch.float64)
            torch.testing.assert_close(drawn[i], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_the_hash_takes_products_modulo_two_to_the_64(device: torch.device) -> None:
    values = [0, 1, 12345, (1 << 63) - 1, 1 << 63, (1 << 63) + 5, MASK]
    patterns = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values], device=device)
    assert [int(v) & MASK for v in splitmix64(patterns)] == [reference_splitmix64(v) for v in values]


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_any_subset_of_images_draws_the_same_noise_in_any_batch(device: torch.device) -> None:
    whole = PerImageNoise(range(100, 108), (3, 8, 8), device)
    part = PerImageNoise([105, 101], (3, 8, 8), device)
    for _ in range(3):
        expected = whole.draw()[[5, 1]]
        drawn = part.draw()
        assert drawn.device.type == device.type and drawn.dtype == torch.float64
        assert torch.equal(drawn, expected)


def test_the_draws_are_independent_standard_normals() -> None:
    noise = PerImageNoise(range(64), (3, 32, 32), torch.device("cpu"))
    first, second = noise.draw(), noise.draw()
    values = torch.cat([first.flatten(), second.flatten()]).numpy()
    assert stats.kstest(values, "norm").pvalue > 1e-3
    assert abs(values.mean()) < 0.01 and abs(values.var() - 1) < 0.01
    flat = first.flatten(1)
    pairs = {
        "draw k and k + 1": (first, second),
        "neighbouring seeds": (first[:-1], first[1:]),
        "neighbouring pixels": (flat[:, :-1], flat[:, 1:]),
        "channels": (first[:, 0], first[:, 1]),
    }
    for what, (a, b) in pairs.items():
        assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) < 0.01, what


def test_a_step_without_noise_passes_over_its_draw_without_computing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draw ``k`` is step ``k``'s whether or not the steps before it used theirs; a deterministic
    sampler computes no noise but the prior's."""
    skipping, drawing = (PerImageNoise([3, 4], (1, 4, 4), torch.device("cpu")) for _ in range(2))
    skipping.skip()
    drawing.draw()
    assert torch.equal(skipping.draw(), drawing.draw())

    computed = []
    real_draw = PerImageNoise.draw
    monkeypatch.setattr(PerImageNoise, "draw", lambda self: computed.append(self.draws) or real_draw(self))
    process = make_process("ddpm", (1, 8, 8), levels=20)
    corrected = with_correctors(process.time_grid(solver_calls(5)), 5)  # DDIM's steps 0, 2, 4; Langevin's 1, 3
    cases = [
        ("ddim", process.time_grid(5), SamplerSettings(), [0]),
        ("ancestral", process.time_grid(5), SamplerSettings(), [0, 1, 2, 3, 4]),  # its last step: x̂0
        ("ddim", corrected, SamplerSettings(corrector=0.1), [0, 2, 4]),  # the prior's, then Langevin's
    ]
    for solver, grid, settings, expected in cases:
        computed.clear()
        noise = PerImageNoise([0, 1], process.image_shape, torch.device("cpu"))
        sample(lambda x, t: x, process, noise, torch.zeros(2, 1, 8, 8), grid, get_solver(solver), settings)
        assert computed == expected, (solver, settings)


def test_each_image_of_a_sample_set_has_its_own_seed_and_training_image() -> None:
    """Image ``i`` of the sample set ``seed`` draws from seed ``seed · 10⁶ + i`` (so sets of
    two seeds share no image's noise) and starts from training image ``perm[i]`` of the
    permutation seeded by ``seed``."""
    process = make_process("blurring", (1, 4, 4))
    train = torch.arange(50 * 16, dtype=torch.float32).reshape(50, 1, 4, 4)
    noise, reference = sample_set_inputs(process, train, 5, range(3, 7), torch.device("cpu"))
    expected = PerImageNoise([5_000_003, 5_000_004, 5_000_005, 5_000_006], process.image_shape, torch.device("cpu"))
    assert torch.equal(noise.draw(), expected.draw())
    permutation = torch.randperm(50, generator=torch.Generator().manual_seed(5))
    assert torch.equal(reference, train[permutation[3:7]])
    other_seed = sample_set_inputs(process, train, 6, range(3, 7), torch.device("cpu"))[1]
    assert not torch.equal(reference, other_seed)


def test_images_become_bytes_by_rounding() -> None:
    """``[-1, 1]`` maps to ``round((x + 1) · 127.5)`` (its one tie, ``x = 0``, to 128), clipped outside."""
    images = torch.tensor([-2.0, -1.0, -0.999, 0.0, 0.5, 0.999, 1.0, 3.0], dtype=torch.float64)
    assert to_uint8(images).tolist() == [0, 0, 0, 128, 191, 255, 255, 255]
