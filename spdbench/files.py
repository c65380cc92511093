"""Where spdbench keeps its cache, and writing result and cache files so that a killed process
(``kill -9``, Ctrl-C) never leaves a half-written one. They are not synced to disk: after a
power cut one may be empty (checkpoints are synced: :mod:`spdbench.checkpoint`)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from spdbench.errors import UserError

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
"""This machine's name as temporary file names carry it."""


def cache_dir() -> Path:
    """``$SPDBENCH_CACHE``, default ``~/.cache/spdbench``."""
    base = os.environ.get("SPDBENCH_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "spdbench"


def check_output_directory(directory: Path) -> None:
    """Refuse, before any work is done, an output ``directory`` that cannot be made or written to:
    its nearest existing ancestor (or itself) must be a directory this process may write in."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write to {directory}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {directory}: no permission to write in {existing}")


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` through ``write(temporary)``: the temporary file has a unique name in the
    same directory and the same suffix (writers that go by the extension pick the right format),
    and is renamed onto ``path`` only once ``write`` returns; on any failure it is removed, and
    those a killed process left for ``path`` are removed first."""
    if not path.name or path.is_dir():
        raise UserError(f"{path} is a directory, not a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.stem}.{HOST}.{os.getpid()}.{uuid.uuid4().hex}{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def remove_directory(directory: Path) -> None:
    """Remove ``directory`` so that no interruption leaves part of it where it was (a run's summary
    without its samples, say): it is renamed to ``.<name>.removing`` (hidden: reports skip it),
    then deleted; what an interrupted removal left under that name goes first. A link or a file
    is refused: what it points to is not this command's to delete."""
    if directory.is_symlink() or not directory.is_dir():
        raise UserError(f"{directory} is a link or a file, not a run directory; remove it yourself")
    doomed = directory.with_name(f".{directory.name}.removing")
    if doomed.is_symlink() or doomed.is_file():
        doomed.unlink()
    elif doomed.exists():
        shutil.rmtree(doomed)
    directory.rename(doomed)
    shutil.rmtree(doomed)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` (``.<stem>.<host>.<pid>.<hex><suffix>``) that a process of
    this host left and that is gone: what ``write_atomically`` leaves when it is killed without a
    chance to clean up (``kill -9``). Another host's are left alone (a shared file system)."""
    pattern = re.compile(
        rf"\.{re.escape(path.stem)}\.{re.escape(HOST)}\.(\d+)\.[0-9a-f]{{32}}{re.escape(path.suffix)}"
    )
    for candidate in path.parent.glob(f".{glob.escape(path.stem)}.*"):
        found = pattern.fullmatch(candidate.name)
        if found and not process_alive(int(found.group(1))):
            candidate.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
