"""What every report's figures share: panels laid out on a grid, and saving a figure atomically."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from spdbench.files import write_atomically


def panel_grid(figure: Figure, count: int, columns: int = 2, **options: object) -> list:
    """``count`` axes (at least one) on a grid ``columns`` wide; the spare ones switched off."""
    count = max(1, count)
    panels = list(figure.subplots(math.ceil(count / columns), columns, squeeze=False, **options).flatten())
    for spare in panels[count:]:
        spare.set_axis_off()
    return panels[:count]


def save_figure(figure: Figure, path: Path) -> None:
    """Save ``figure`` as a PNG (drawn by Agg) atomically."""
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110))
