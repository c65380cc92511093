"""The sampling noise: counter-based, per image, on the sampling device."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from spdbench.sampling import PerImageNoise, splitmix64

MASK = (1 << 64) - 1
DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def reference_splitmix64(z: int) -> int:
    """splitmix64's finaliser on Python's unbounded integers."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & MASK
    return z ^ (z >> 31)


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
    pairs = [(first, second), (first[:32], first[32:]), (first[:, 0], first[:, 1])]
    assert all(abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) < 0.01 for a, b in pairs)
