"""The power spectra the command line and the trainer use, by name.

- ``paper``: the official SPD code's CIFAR-10 law ``D(r) = 1.59 / |0.0086 + r|^2`` (no data);
- ``empirical``: ``D_{c,k} = mean over the training images of |(B x)_{c,k}|²``, measured in
  each basis the first time it is asked for and cached on disk, once per (dataset, size, basis),
  in ``$SPDBENCH_CACHE/spectra/<dataset>-<size>-<basis>.safetensors`` (default cache
  ``~/.cache/spdbench``);
- ``fit``: ``D(r) = c1 / |c2 + r|^m`` least-squares fitted to the empirical spectrum measured in
  the FFT basis (``corruptions.spectrum.fit_power_law``).

With ``channels`` different from the dataset's, the measured spectrum is averaged over the
dataset's channels (``1 × H × W``, which broadcasts over any number of channels).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from corruptions import Process
from corruptions.spectrum import PAPER_SPECTRUM, MeasuredSpectrum, Spectrum, estimate_spectrum, fit_power_law
from corruptions.transforms import BASES, Basis
from spdbench.data import check_size, image_shape, iterate_batches, load_images
from spdbench.errors import UserError
from spdbench.files import cache_dir, write_atomically

SPECTRUM_KINDS: tuple[str, ...] = ("empirical", "fit", "paper")
BATCH_SIZE = 2048


def cache_path(dataset: str, size: int, basis: Basis) -> Path:
    """Where the empirical spectrum of ``dataset`` at ``size``×``size`` in ``basis`` is cached."""
    return cache_dir() / "spectra" / f"{dataset}-{size}-{basis.name}.safetensors"


def resolve_size(dataset: str, size: int | None) -> int:
    """``size`` (``check_size``), or the dataset's own image size when it is ``None``."""
    return image_shape(dataset)[1] if size is None else check_size(size)


def resolve_spectrum(kind: str, dataset: str, size: int | None = None, channels: int | None = None) -> Spectrum:
    """The spectrum ``kind`` (one of ``SPECTRUM_KINDS``) for images of ``dataset`` resized to
    ``size`` (default: the dataset's size) with ``channels`` channels (default: the dataset's).
    ``empirical`` is measured lazily, on its first use in each basis."""
    if kind not in SPECTRUM_KINDS:
        raise UserError(f"unknown spectrum {kind!r}; valid: {', '.join(SPECTRUM_KINDS)}")
    dataset_channels = image_shape(dataset)[0]
    size = resolve_size(dataset, size)
    if channels is not None and channels < 1:
        raise UserError(f"channels must be positive, not {channels}")
    if kind == "paper":
        return PAPER_SPECTRUM
    average = channels is not None and channels != dataset_channels

    def measure(basis: Basis) -> Tensor:
        values = empirical_spectrum(dataset, size, basis)
        return values.mean(0, keepdim=True) if average else values

    if kind == "empirical":
        return MeasuredSpectrum("empirical", measure)
    return fit_power_law(measure(BASES["fft"]), BASES["fft"], name="fit")


def empirical_spectrum(dataset: str, size: int, basis: Basis) -> Tensor:
    """``D_{c,k}`` of the training images of ``dataset`` at ``size``×``size`` in ``basis``,
    float64 ``C × H × W``: read from the cache, or measured (in batches of ``BATCH_SIZE``) and
    cached when the file is missing or unreadable."""
    path = cache_path(dataset, size, basis)
    expected = (image_shape(dataset)[0], size, size)
    cached = read_cached_spectrum(path, expected)
    if cached is not None:
        return cached
    images = load_images(dataset, "train", size=size)
    values = estimate_spectrum(iterate_batches(images, BATCH_SIZE, shuffle=False, drop_last=False), basis)
    metadata = {"dataset": dataset, "size": str(size), "basis": basis.name, "images": str(len(images))}
    write_atomically(path, lambda temporary: save_file({"spectrum": values}, str(temporary), metadata=metadata))
    return values


def read_cached_spectrum(path: Path, shape: tuple[int, int, int]) -> Tensor | None:
    """The spectrum cached at ``path``, or ``None`` when the file is missing, unreadable, or does
    not hold a finite, positive float64 tensor of ``shape`` (it is then measured again)."""
    try:
        values = load_file(str(path)).get("spectrum")
    except (OSError, SafetensorError):
        return None
    if values is None or values.dtype != torch.float64 or tuple(values.shape) != shape:
        return None
    if not torch.isfinite(values).all() or (values <= 0).any():
        return None
    return values


def process_spectrum(spectrum: Spectrum, process: Process) -> Tensor:
    """``D_k`` in ``process``'s basis for its image shape: float64 ``C|1 × H × W``."""
    return spectrum.values(process.basis, process.image_shape)
