"""The Fisher path length of every process, its speed profile and per-frequency SNR: what
``spdbench paths`` writes, with no training.

Under the Gaussian data model ``N(0, diag D)`` in a process's basis, the marginal at time ``t``
has per-frequency variance ``v_k(t) = a_k(t)² D_k + s_k(t)²``; the process walks a path of
Fisher-Rao length ``L = ∫ sqrt(½ Σ_k (d log v_k/dt)²) dt`` whose endpoints are
``geodesic = sqrt(½ Σ_k (log v_k(end) − log v_k(0))²)`` apart (``corruptions.paths``).
``efficiency = geodesic / L`` (1 for SPD); ``speed_cv`` is the spread of the speed ``ds/dt``
over the path, ``sqrt(∫ (ds/dt − L)² dt) / L`` with ``t`` the fraction of the path (0 when it
is walked evenly, which the length alone cannot tell: SPD's ``time`` variants have the same
curve, and so the same efficiency, as SPD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure

from corruptions import PROCESSES, Process, make_process
from corruptions.base import ImageShape
from corruptions.paths import PathLength, fisher_path_length
from corruptions.spectrum import Spectrum
from spdbench import data
from spdbench.figures import panel_grid, save_figure
from spdbench.files import write_text_atomically
from spdbench.spectra import process_spectrum, resolve_size, resolve_spectrum
from spdbench.tables import csv_text, frame, markdown_text

COLUMNS: tuple[str, ...] = ("process", "label", "basis", "levels", "length", "geodesic", "efficiency", "speed_cv")
#: The Markdown and terminal tables: the process as its label names it (with its options).
DISPLAY_COLUMNS: tuple[str, ...] = ("process", "basis", "levels", "length", "geodesic", "efficiency", "speed_cv")
TEXT_COLUMNS: tuple[str, ...] = ("process", "basis")  #: left-aligned; the numbers are right-aligned


@dataclass(frozen=True)
class PathRow:
    """One process and the length of its marginal path."""

    process: Process
    path: PathLength
    family: str = ""  #: the family of ``Process.variants`` the row belongs to; ``""`` for the defaults

    @property
    def levels(self) -> int:
        return len(self.process.time_grid()) - 1

    @property
    def speed_cv(self) -> float:
        """``sqrt(∫ (ds/dt − L)² dt) / L`` over the path's grid (``∫ dt = 1``)."""
        dt = torch.diff(self.process.network_time(self.process.time_grid().flip(0)).to(torch.float64))
        return math.sqrt(float(((self.path.speed - self.path.length).square() * dt).sum())) / self.path.length

    def record(self) -> dict[str, object]:
        """The row as ``COLUMNS`` to values."""
        return {
            "process": self.process.name,
            "label": self.process.label(),
            "basis": self.process.basis.name,
            "levels": self.levels,
            "length": self.path.length,
            "geodesic": self.path.geodesic,
            "efficiency": self.path.efficiency,
            "speed_cv": self.speed_cv,
        }


def report_name(spectrum_kind: str, dataset: str, image_shape: ImageShape) -> str:
    """The report's directory name: ``paper-<size>x<channels>`` for the paper's spectrum (no
    data), else ``<dataset>-<size>-<kind>``, with ``x<channels>`` after the size when the
    channels are not the dataset's."""
    channels, size = image_shape[0], image_shape[1]
    if spectrum_kind == "paper":
        return f"paper-{size}x{channels}"
    suffix = "" if channels == data.image_shape(dataset)[0] else f"x{channels}"
    return f"{dataset}-{size}{suffix}-{spectrum_kind}"


@dataclass(frozen=True)
class PathReport:
    """What ``paths_report`` measured and wrote."""

    rows: list[PathRow]
    description: str
    files: list[Path]


def paths_report(
    spectrum_kind: str, dataset: str, size: int | None, channels: int | None, out: Path | None, command: str
) -> PathReport:
    """Measure every process (``path_rows``) for images of ``dataset``'s shape, resized to
    ``size`` with ``channels`` channels where given, under the spectrum ``spectrum_kind``, and
    write the report (``write_path_report``) into ``out``, default
    ``results/paths/<report_name>``; ``command`` is what the Markdown says made it."""
    spectrum = resolve_spectrum(spectrum_kind, dataset, size, channels)
    size = resolve_size(dataset, size)
    shape = (data.image_shape(dataset)[0] if channels is None else channels, size, size)
    out = Path("results") / "paths" / report_name(spectrum_kind, dataset, shape) if out is None else out
    description = f"spectrum {spectrum_kind}, dataset {dataset}, size {size}, channels {shape[0]}"
    rows = path_rows(spectrum, shape)
    return PathReport(rows, description, write_path_report(rows, spectrum, out, description, command))


def measure_path(process: Process, spectrum: Spectrum, family: str = "") -> PathRow:
    """The Fisher path length of ``process`` under data with ``spectrum``."""
    return PathRow(process, fisher_path_length(process, process_spectrum(spectrum, process)), family)


def path_rows(spectrum: Spectrum, image_shape: ImageShape) -> list[PathRow]:
    """Every registered process with its defaults, then each process's ``variants``, family by
    family."""
    rows = [measure_path(make_process(name, image_shape, spectrum=spectrum), spectrum) for name in PROCESSES]
    for name, cls in PROCESSES.items():
        for family, variants in cls.variants.items():
            for options in variants:
                process = make_process(name, image_shape, spectrum=spectrum, **options)
                rows.append(measure_path(process, spectrum, family))
    return rows


def display_cells(row: PathRow) -> list[str]:
    """``row`` as the Markdown and terminal tables show it, in ``DISPLAY_COLUMNS`` order (the
    process as its label names it, rounded numbers)."""
    path = row.path
    return [
        row.process.label(),
        row.process.basis.name,
        str(row.levels),
        f"{path.length:.3f}",
        f"{path.geodesic:.3f}",
        f"{path.efficiency:.4f}",
        f"{row.speed_cv:.4f}",
    ]


def paths_markdown(rows: list[PathRow], header: str) -> str:
    """A title, ``header`` and the rows as a Markdown table."""
    table = markdown_text(frame([display_cells(row) for row in rows], DISPLAY_COLUMNS), left=TEXT_COLUMNS)
    return "\n".join(["# Fisher path length of every process", "", header, "", table]) + "\n"


def speed_figure(rows: list[PathRow], title: str) -> Figure:
    """``ds/dt`` against the fraction of the path: every process at its defaults on a log scale,
    then one panel per family of variants with its process at the defaults (solid, black) and
    the variants (dashed, coloured in the family's order)."""
    base = [row for row in rows if not row.family]
    families = list(dict.fromkeys((row.process.name, row.family) for row in rows if row.family))
    figure = Figure(figsize=(12, 4.25 * math.ceil((1 + len(families)) / 2)), layout="constrained")
    panels = panel_grid(figure, 1 + len(families))
    for i, row in enumerate(base):
        panels[0].plot(row.path.time, row.path.speed, label=row.process.label(), color=f"C{i}", lw=1.8)
    panels[0].set_yscale("log")
    panels[0].set_title("every process at its defaults (log scale)")
    for axes, (name, family) in zip(panels[1:], families, strict=True):
        default = next(row for row in base if row.process.name == name)
        axes.plot(default.path.time, default.path.speed, label=default.process.label(), color="black", lw=1.8)
        members = [row for row in rows if row.family == family and row.process.name == name]
        for j, row in enumerate(members):
            colour = matplotlib.colormaps["coolwarm"](j / max(1, len(members) - 1))
            axes.plot(row.path.time, row.path.speed, label=row.process.label(), color=colour, ls="--", lw=1.4)
        axes.set_title(f"{name}: variants {family}")
    for axes in panels:
        axes.set_xlabel("fraction of the path t/T (0 = data)")
        axes.set_ylabel("Fisher speed ds/dt")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def snr_radii(width: int) -> tuple[int, ...]:
    """The frequency radii the SNR plot follows, in cycles per image: one cycle, and about an
    eighth, a quarter and a half (the Nyquist limit) of the image width."""
    return (1, max(1, round(width / 8)), max(1, round(width / 4)), width // 2)


def snr_figure(rows: list[PathRow], spectrum: Spectrum, title: str) -> Figure:
    """``SNR_k(t) = a_k(t)² D_k / s_k(t)²`` against the fraction of the path for the coefficients
    of the first channel and first row nearest to ``snr_radii``, one panel per process at its
    defaults."""
    base = [row for row in rows if not row.family]
    figure = Figure(figsize=(11, 4.25 * math.ceil(len(base) / 2)), layout="constrained")
    panels = panel_grid(figure, len(base), sharey=True)
    floor, ceiling = 1e-8, 1e8
    for axes, row in zip(panels, base, strict=True):
        process = row.process
        _, height, width = process.image_shape
        grid = process.time_grid().flip(0)[1:]  # t > 0: the data have s = 0
        a, s = process.marginal_coefficients(grid)
        snr = (a.square() * process_spectrum(spectrum, process) / s.square()).expand(len(grid), -1, height, width)
        fraction = process.network_time(grid)
        radii = process.basis.radius(height, width)[0]
        for radius in snr_radii(width):
            j = int((radii - radius).abs().argmin())
            axes.plot(fraction, snr[:, 0, 0, j].clamp(floor, ceiling), label=f"r = {float(radii[j]):g} cycles/image")
        axes.set_yscale("log")
        axes.set_ylim(floor, ceiling)
        axes.set_title(f"{process.name} ({process.basis.name} basis)")
        axes.set_xlabel("fraction of the path t/T (0 = data)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.supylabel(f"SNR_k = a_k² D_k / s_k²  (clipped to [{floor:g}, {ceiling:g}])")
    figure.suptitle(title)
    return figure


def write_path_report(rows: list[PathRow], spectrum: Spectrum, out: Path, description: str, command: str) -> list[Path]:
    """Write ``paths.csv``, ``paths.md`` (headed by ``description``, the spectrum and data, and
    the ``command`` that made it), ``speed.png`` and ``snr.png`` into ``out``; returns their paths."""
    paths = [out / "paths.csv", out / "paths.md", out / "speed.png", out / "snr.png"]
    write_text_atomically(paths[0], csv_text(frame([row.record() for row in rows], COLUMNS)))
    write_text_atomically(paths[1], paths_markdown(rows, f"{description}. Made by `{command}`."))
    save_figure(speed_figure(rows, f"Fisher speed along the path; {description}"), paths[2])
    save_figure(snr_figure(rows, spectrum, f"Per-frequency signal-to-noise ratio; {description}"), paths[3])
    return paths
