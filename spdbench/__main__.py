"""``python -m spdbench``: the command line."""

from spdbench.cli import app

app()
