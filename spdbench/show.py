"""Pictures of what a process does to real training images: what ``spdbench show`` writes.

For each process, named by its label, two PNG grids with one row per time (evenly spread over
the process's sampling grid, labelled with the fraction of the path ``t/T``) and one column per
image:

- ``<label>.png``: ``x_t``, mapped from ``[-1, 1]`` to ``[0, 1]`` and clipped;
- ``<label>-noise.png``: the noise part ``x_t − x_t|_{ε=0}`` (the same corruption with zero
  noise subtracted), each row mapped from ``±3`` times its root mean square to ``[0, 1]``, so
  that zero is mid-grey (the scale is printed beside the row).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from corruptions import PROCESSES, Process, make_process
from spdbench.data import image_shape, load_images
from spdbench.errors import UserError, check_seed
from spdbench.files import write_atomically
from spdbench.spectra import resolve_size, resolve_spectrum

CELL_INCHES = 0.9
PADDING = 2  #: pixels between images in a grid
MAX_IMAGES = 64  #: the most training images (columns) a picture shows


def process_names(process: str) -> list[str]:
    """``[process]``, or every registered process for ``all``; unknown names are refused."""
    if process == "all":
        return list(PROCESSES)
    if process not in PROCESSES:
        raise UserError(f"unknown process {process!r}; valid: {', '.join([*PROCESSES, 'all'])}")
    return [process]


def show_processes(
    process: str,
    dataset: str,
    size: int | None,
    spectrum_kind: str,
    options: Mapping[str, Any],
    images: int,
    times: int,
    seed: int,
    out: Path,
) -> list[Path]:
    """Write the two grids of ``process`` (or of every process, for ``all``) for ``images``
    training images of ``dataset`` (resized to ``size``; drawn with ``seed``, as is the noise)
    at ``times`` times into ``out``; returns the files written. ``options`` go to every process
    shown, which refuses those it does not have."""
    names = process_names(process)
    if not 1 <= images <= MAX_IMAGES or times < 1:
        raise UserError(
            f"need 1 to {MAX_IMAGES} images (the columns) and at least one time, got {images} images and {times} times"
        )
    check_seed(seed)
    spectrum = resolve_spectrum(spectrum_kind, dataset, size)
    size = resolve_size(dataset, size)
    shape = (image_shape(dataset)[0], size, size)
    processes = [make_process(name, shape, spectrum=spectrum, **options) for name in names]
    for corrupted in processes:
        levels = len(corrupted.time_grid()) - 1
        if times > levels:
            raise UserError(f"{corrupted.name} has {levels} time steps, fewer than the {times} times asked for")
    data = load_images(dataset, "train", size=size)
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(data), generator=generator)[:images]
    x0 = data[indices].to(torch.float64)
    files = []
    for corrupted in processes:
        files += write_show_grids(corrupted, x0, indices, times, generator, out, dataset)
    return files


def show_times(process: Process, times: int) -> Tensor:
    """``times`` times of ``process``'s sampling grid, evenly spread, increasing, all ``> 0``."""
    return process.time_grid(times)[:-1].flip(0)


def write_show_grids(
    process: Process, x0: Tensor, indices: Tensor, times: int, generator: torch.Generator, out: Path, dataset: str
) -> list[Path]:
    """The ``x_t`` and noise grids of ``process`` for clean images ``x0`` (dataset indices
    ``indices``), with pixel noise drawn from ``generator``; returns the two paths."""
    grid = show_times(process, times)
    noisy, noise_part = [], []
    for t in grid:
        t_batch = t.repeat(len(x0))
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x_t = process.corrupt(x0, t_batch, noise).x_t
        noisy.append(x_t)
        noise_part.append(x_t - process.corrupt(x0, t_batch, torch.zeros_like(x0)).x_t)
    fractions = [f"t/T = {float(f):.3g}" for f in process.network_time(grid)]
    scales = [3 * float(row.square().mean().sqrt()) for row in noise_part]
    label = process.label()
    paths = [out / f"{label}.png", out / f"{label}-noise.png"]
    image_rows = [((row + 1) / 2).clamp(0, 1) for row in noisy]
    scaled_rows = [
        (0.5 + 0.5 * row / max(scale, 1e-12)).clamp(0, 1) for row, scale in zip(noise_part, scales, strict=True)
    ]
    save_grid(image_rows, fractions, indices, f"{label} on {dataset}: x_t", paths[0])
    save_grid(
        scaled_rows,
        [f"{fraction}\n±{scale:.2g}" for fraction, scale in zip(fractions, scales, strict=True)],
        indices,
        f"{label} on {dataset}: noise part x_t − x_t(ε = 0), each row scaled to ±3 RMS",
        paths[1],
    )
    return paths


def tile(rows: list[Tensor]) -> Tensor:
    """Images in ``[0, 1]`` (one ``N × C × H × W`` tensor per row) as one ``H' × W' × 3`` RGB
    array with white padding between them (grey images are repeated over the three channels)."""
    count, channels, height, width = rows[0].shape
    canvas = torch.ones(3, len(rows) * (height + PADDING) + PADDING, count * (width + PADDING) + PADDING)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            top, left = PADDING + i * (height + PADDING), PADDING + j * (width + PADDING)
            canvas[:, top : top + height, left : left + width] = image.expand(3, -1, -1) if channels == 1 else image
    return canvas.permute(1, 2, 0)


def save_grid(rows: list[Tensor], row_labels: list[str], indices: Tensor, title: str, path: Path) -> None:
    """One PNG of the tiled ``rows``, each row labelled, each column named by its dataset index."""
    count, _, height, width = rows[0].shape
    figure = Figure(figsize=(count * CELL_INCHES, len(rows) * CELL_INCHES))
    axes = figure.add_axes((0, 0, 1, 1))  # the labels and title lie outside; the saved PNG is cropped to them
    axes.imshow(tile(rows).numpy(), interpolation="nearest", aspect="auto")
    axes.set_yticks([PADDING + (i + 0.5) * (height + PADDING) for i in range(len(rows))], row_labels, fontsize=8)
    axes.set_xticks(
        [PADDING + (j + 0.5) * (width + PADDING) for j in range(count)], [f"#{int(i)}" for i in indices], fontsize=8
    )
    axes.set_xlabel("training image (index)", fontsize=8)
    axes.tick_params(length=0)
    axes.set_title(title, fontsize=9)
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=100, bbox_inches="tight"))
