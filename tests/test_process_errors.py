"""Bad input to the processes is refused with a clear one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corruptions import PROCESSES, ConfigurationError, make_process
from corruptions.spectrum import MeasuredSpectrum, RadialPowerLaw
from tests.conftest import IMAGE_SPECTRUM


def refused(match: str):
    return pytest.raises(ConfigurationError, match=match)


def test_unknown_process_lists_the_valid_names() -> None:
    with refused(f"unknown process 'nope'; valid: {', '.join(PROCESSES)}$"):
        make_process("nope", (1, 8, 8))


@pytest.mark.parametrize(
    ("perturb", "message"),
    [(1.0, r"\|p\| < 1"), (-1.0, r"\|p\| < 1"), (1.5, r"\|p\| < 1"), (float("nan"), "perturb must be a finite number")],
)
def test_perturbation_must_be_below_one(perturb: float, message: str) -> None:
    with refused(message):
        make_process("spd", (1, 8, 8), spectrum=IMAGE_SPECTRUM, perturb=perturb)


def test_unknown_perturbation_kind() -> None:
    with refused(r"unknown perturb kind 'bend'; valid: desync, spectrum, time"):
        make_process("spd", (1, 8, 8), spectrum=IMAGE_SPECTRUM, perturb=0.1, perturb_kind="bend")


def test_option_of_another_process() -> None:
    with refused(r"process 'ddpm' has no option perturb; its options: schedule, levels"):
        make_process("ddpm", (1, 8, 8), perturb=0.1)


@pytest.mark.parametrize(
    "spectrum",
    [
        RadialPowerLaw(c1=-1.0, c2=1.0, m=2.0),
        MeasuredSpectrum("zeros", lambda basis: torch.zeros(1, 8, 8)),
        MeasuredSpectrum("nan", lambda basis: torch.full((1, 8, 8), float("nan"))),
    ],
    ids=["negative", "zero", "nan"],
)
def test_spectrum_must_be_positive(spectrum) -> None:
    with refused("finite and positive"):
        make_process("spd", (1, 8, 8), spectrum=spectrum)


def test_spectrum_must_fit_the_images() -> None:
    with refused("does not fit images"):
        make_process("spd", (1, 8, 8), spectrum=MeasuredSpectrum("small", lambda basis: torch.ones(1, 4, 4)))


def test_spd_needs_a_spectrum() -> None:
    with refused("needs a power spectrum"):
        make_process("spd", (1, 8, 8))


def test_options_are_checked() -> None:
    with refused(r"nfe \(sampler network calls\) must lie in \[1, 1000\] \(the levels;"):
        make_process("ddpm", (1, 8, 8)).time_grid(1001)
    with refused("unknown DDPM schedule"):
        make_process("ddpm", (1, 8, 8), schedule="sigmoid")  # type: ignore[arg-type]
    with refused("unknown basis"):
        make_process("spd", (1, 8, 8), spectrum=IMAGE_SPECTRUM, basis="wavelet")  # type: ignore[arg-type]


WRONG_KIND = {int: 2.5, float: "many", str: 3}  #: a value of another type than a default's


@pytest.mark.parametrize("name", PROCESSES)
def test_an_option_of_another_type_than_its_default_is_refused(name: str) -> None:
    """``levels=2.5`` or ``levels=nan`` is not a number of levels: every option of every process
    takes only values of its default's type (an integer for a float is taken as that float)."""
    for option, default in PROCESSES[name].option_defaults((1, 8, 8)).items():
        with refused(f"process '{name}': {option} must be "):
            make_process(name, (1, 8, 8), spectrum=IMAGE_SPECTRUM, **{option: WRONG_KIND[type(default)]})
    with refused("levels must be an integer, got nan"):
        make_process(name, (1, 8, 8), spectrum=IMAGE_SPECTRUM, levels=float("nan"))
    with refused("levels must be an integer, got True"):
        make_process(name, (1, 8, 8), spectrum=IMAGE_SPECTRUM, levels=True)


@pytest.mark.parametrize("name", PROCESSES)
def test_numpy_numbers_are_taken_as_the_default_type(name: str) -> None:
    """A number from numpy (or an integer for a float) is the same option value as the Python
    number of the default's type: the process and its label are those of that number."""
    numeric = {key: value for key, value in PROCESSES[name].option_defaults((1, 8, 8)).items()
               if isinstance(value, int | float) and not isinstance(value, bool)}
    given = {key: (np.int64 if isinstance(value, int) else np.float64)(value) for key, value in numeric.items()}
    built = make_process(name, (1, 8, 8), spectrum=IMAGE_SPECTRUM, **given)
    plain = make_process(name, (1, 8, 8), spectrum=IMAGE_SPECTRUM, **numeric)
    assert built.config() == plain.config() and all(type(built.options[key]) is type(numeric[key]) for key in numeric)
