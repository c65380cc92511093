"""Shared fixtures: every registered process (and a perturbed SPD), and image-like test data."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from corruptions import PROCESSES, Process, make_process
from corruptions.gaussian import FrequencyDiagonalGaussian
from corruptions.oracle import gaussian_images
from corruptions.spectrum import RadialPowerLaw
from spdbench import data

#: Tests that read Debian's Fashion-MNIST skip without it (``make setup`` installs it as root; CI has it).
needs_fmnist = pytest.mark.skipif(
    not all((data.DEBIAN_FMNIST_DIR / name).is_file() for name in data.FMNIST_SHA256),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)

# Tests run many small tensor operations, often two workers at once (pytest -n 2): one
# thread each avoids oversubscribing the cores, which slows PyTorch down many times over.
torch.set_num_threads(1)

#: An image-like spectrum: the power law fitted to Fashion-MNIST's DCT spectrum, rounded
#: (``spdbench paths --spectrum fit`` measures it: c1 ≈ 201, c2 ≈ 1, m ≈ 3.43).
IMAGE_SPECTRUM = RadialPowerLaw(c1=200.0, c2=1.0, m=3.4, name="image-like")

#: Every registered process with its defaults, plus one perturbed SPD.
PROCESS_CASES: list[tuple[str, dict[str, object]]] = [(name, {}) for name in PROCESSES] + [
    ("spd", {"perturb": 0.1, "perturb_kind": "desync"})
]


#: The cases whose process is a frequency-diagonal Gaussian one, what the Gaussian solvers,
#: the posterior, the corrector and the projection serve.
GAUSSIAN_CASES = [case for case in PROCESS_CASES if issubclass(PROCESSES[case[0]], FrequencyDiagonalGaussian)]


def case_id(case: tuple[str, dict[str, object]]) -> str:
    name, options = case
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


def build(case: tuple[str, dict[str, object]], shape: tuple[int, int, int] = (1, 16, 16)) -> Process:
    name, options = case
    return make_process(name, shape, spectrum=IMAGE_SPECTRUM, **options)  # type: ignore[arg-type]


@pytest.fixture(params=PROCESS_CASES, ids=case_id)
def process_case(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param


@pytest.fixture(params=GAUSSIAN_CASES, ids=case_id)
def gaussian_case(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param


def image_like(n: int, shape: tuple[int, int, int], seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Zero-mean Gaussian images with ``IMAGE_SPECTRUM`` in the DCT basis."""
    process = make_process("ddpm", shape)
    spectrum = IMAGE_SPECTRUM.values(process.basis, shape)
    noise = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return gaussian_images(spectrum, process, noise).to(dtype)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def become_rank(rank: int, world: int, port: int) -> None:
    """Make this spawned process one rank of ``world``, as torchrun does: through the environment."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
