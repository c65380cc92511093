"""Fisher path lengths, spectra and transforms: the analysis that needs no training."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from corruptions import PROCESSES, make_process
from corruptions.oracle import gaussian_images
from corruptions.paths import fisher_path_length
from corruptions.spectrum import (
    PAPER_SPECTRUM,
    RadialPowerLaw,
    estimate_spectrum,
    fit_power_law,
    radial_average,
    radial_bins,
)
from corruptions.transforms import BASES
from tests.conftest import IMAGE_SPECTRUM

SHAPE = (1, 16, 16)


def length(name: str, spectrum: RadialPowerLaw = IMAGE_SPECTRUM, **options: object):
    process = make_process(name, SHAPE, spectrum=spectrum, **options)  # type: ignore[arg-type]
    return fisher_path_length(process, spectrum.values(process.basis, SHAPE))


@pytest.mark.parametrize("basis", ["fft", "dct"])
def test_spd_is_the_geodesic(basis: str) -> None:
    result = length("spd", basis=basis)
    assert result.efficiency == pytest.approx(1.0, abs=1e-3)
    assert float(result.speed.std() / result.speed.mean()) < 1e-3  # walked at constant speed


@pytest.mark.parametrize("kind", ["desync", "spectrum"])
def test_bending_the_path_makes_it_longer(kind: str) -> None:
    lengths = {p: length("spd", perturb=p, perturb_kind=kind).length for p in (-0.2, -0.1, 0.0, 0.1, 0.2)}
    assert lengths[0.0] < lengths[0.1] < lengths[0.2]
    assert lengths[0.0] < lengths[-0.1] < lengths[-0.2]


def test_time_perturbation_keeps_the_curve_but_not_the_speed() -> None:
    spd, warped = length("spd"), length("spd", perturb=0.2, perturb_kind="time")
    assert warped.length == pytest.approx(spd.length, rel=1e-3)
    assert warped.efficiency == pytest.approx(1.0, abs=1e-3)
    assert float(warped.speed.std() / warped.speed.mean()) > 0.1


def test_ddpm_efficiency_does_not_depend_on_its_schedule() -> None:
    """Every frequency follows one ``ᾱ``, so a schedule only changes the speed. Both schedules
    end within ``ᾱ_T ≤ 4·10⁻⁵`` of pure noise: with ``D ≤ 200`` that moves the end by < 1e-2."""
    linear, cosine = length("ddpm"), length("ddpm", schedule="cosine")
    assert linear.efficiency == pytest.approx(cosine.efficiency, abs=2e-3)
    assert linear.efficiency < 0.99


def test_geodesic_and_length_of_a_known_path() -> None:
    """A DDPM path for a single-valued spectrum ``D`` is the straight log-variance path from
    ``log D`` to ``log v_T``: length = geodesic = ``sqrt(CHW/2) |log D − log v_T|``."""
    flat = RadialPowerLaw(c1=4.0, c2=0.0, m=0.0, name="flat")
    process = make_process("ddpm", SHAPE)
    result = fisher_path_length(process, flat.values(process.basis, SHAPE))
    alpha_bar_end = float(process.alpha_bar[-1])  # type: ignore[attr-defined]
    expected = np.sqrt(256 / 2) * abs(np.log(4.0) - np.log(alpha_bar_end * 4.0 + 1 - alpha_bar_end))
    assert result.length == pytest.approx(expected, rel=1e-9)
    assert result.geodesic == pytest.approx(expected, rel=1e-9)


def test_every_process_has_a_path() -> None:
    for name in PROCESSES:
        result = length(name)
        assert 0 < result.geodesic <= result.length * (1 + 1e-9)
        assert torch.isfinite(result.speed).all() and len(result.speed) == len(result.time)


def test_dct_is_scipys_orthonormal_dct() -> None:
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    expected = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(BASES["dct"].forward(x).numpy(), expected, atol=1e-12)
    torch.testing.assert_close(BASES["dct"].inverse(BASES["dct"].forward(x)), x)


@pytest.mark.parametrize("basis", ["fft", "dct"])
def test_mix_is_filtering_in_the_basis(basis: str) -> None:
    """``mix`` (FFT: through the half spectrum) equals ``B⁻¹ Σ c ⊙ B x`` with the full one."""
    b = BASES[basis]
    x, y = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    radius = b.radius(16, 16)
    c1, c2 = 1 / (1 + radius), radius.sqrt()  # functions of |k|, as every process's are
    expected = b.inverse(c1 * b.forward(x) + c2 * b.forward(y))
    torch.testing.assert_close(b.mix([(c1, x), (c2, y)]), expected)


def test_frequency_radius_conventions() -> None:
    fft = BASES["fft"].radius(8, 8)
    assert fft[0, 0] == 0 and fft[0, 1] == 1 and fft[0, 7] == 1 and fft[4, 0] == 4
    dct = BASES["dct"].radius(8, 8)
    assert dct[0, 2] == 1 and dct[3, 4] == 2.5  # a DCT index counts half cycles


@pytest.mark.parametrize("basis", ["fft", "dct"])
def test_estimated_spectrum_recovers_the_true_one(basis: str) -> None:
    process = make_process("spd", (2, 16, 16), spectrum=IMAGE_SPECTRUM, basis=basis)
    truth = IMAGE_SPECTRUM.values(process.basis, (2, 16, 16))
    images = gaussian_images(truth, process, torch.randn(4000, 2, 16, 16, dtype=torch.float64))
    estimate = estimate_spectrum(images.split(512), process.basis)
    assert estimate.shape == (2, 16, 16)
    ratio = radial_average(estimate, process.basis) / radial_average(truth.expand(2, -1, -1), process.basis)
    assert float((ratio - 1).abs().max()) < 0.15
    assert float((estimate / truth).mean()) == pytest.approx(1.0, abs=0.02)


def test_radial_average_is_constant_on_rings() -> None:
    basis = BASES["fft"]
    values = torch.rand(1, 16, 16, dtype=torch.float64)
    averaged = radial_average(values, basis)
    bins = radial_bins(basis, 16, 16)
    for ring in bins.unique():
        assert averaged[0][bins == ring].std(unbiased=False) < 1e-12
    assert averaged.sum() == pytest.approx(values.sum())


def test_power_law_fit_recovers_its_constants() -> None:
    truth = RadialPowerLaw(c1=300.0, c2=1.0, m=3.0)
    fitted = fit_power_law(truth.values(BASES["fft"], (1, 32, 32)), BASES["fft"])
    assert fitted.m == pytest.approx(3.0, rel=0.05) and fitted.c2 == pytest.approx(1.0, rel=0.3)


def test_paper_spectrum_is_the_official_constants() -> None:
    values = PAPER_SPECTRUM.values(BASES["fft"], (3, 32, 32))
    assert float(values[0, 0, 0]) == pytest.approx(1.59 / 0.0086**2)
    assert float(values[0, 0, 1]) == pytest.approx(1.59 / 1.0086**2)
