"""Tables as pandas DataFrames: CSV at full precision and Markdown for people, both by the library."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd


def frame(rows: Sequence[dict[str, Any]] | Sequence[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    """One table: ``rows`` (dicts keyed by column, or cells in column order) as a DataFrame of
    Python objects, so that integers stay integers and ``None`` stays empty."""
    return pd.DataFrame(list(rows), columns=list(columns), dtype=object)


def csv_text(table: pd.DataFrame) -> str:
    """``table`` as CSV with a header row, numbers at full precision, empty cells for ``None``."""
    return table.to_csv(index=False, lineterminator="\n")


def markdown_text(table: pd.DataFrame, left: Sequence[str]) -> str:
    """``table`` (cells already formatted as text) as a Markdown table, without a final newline;
    the columns in ``left`` left-aligned, the others right-aligned."""
    align = ["left" if column in left else "right" for column in table.columns]
    return table.fillna("").to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)
