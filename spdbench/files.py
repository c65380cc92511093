"""Where spdbench keeps its cache, and writing result and cache files so that a crash never
leaves a half-written one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """``$SPDBENCH_CACHE``, default ``~/.cache/spdbench``."""
    base = os.environ.get("SPDBENCH_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "spdbench"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` through ``write(temporary)``: the temporary file has a unique name in the
    same directory and the same suffix (writers that go by the extension pick the right format),
    and is renamed onto ``path`` only once ``write`` returns; on any failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
