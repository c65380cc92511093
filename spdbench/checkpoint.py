"""Training checkpoints: a directory of safetensors and JSON files, written atomically, read safely.

A run directory holds at most one complete checkpoint, ``checkpoints/step-<step>/`` (for a moment
after a save, two: the new one is complete before the old one is removed), with:

- ``model.safetensors``: the network's state dict (names of the unwrapped module);
- ``ema.safetensors``: the state dict of the averaged network (same names: load it into the
  network to sample with the EMA weights);
- ``state.safetensors``: every other tensor of the training state (optimizer moments, generator
  states), under names the trainer chooses;
- ``meta.json``: everything else (step, configuration, the structure of the optimizer state);
- ``manifest.json``: the format version, the step, and the size and SHA-256 of every file above.

Nothing is unpickled on loading: the tensors come from safetensors and the rest from JSON.

Atomicity: a checkpoint is written into a fresh hidden directory ``checkpoints/.tmp-*`` (each file
fsynced, the manifest last, then the directory), renamed to its final name in one ``rename(2)``
and the parent directory fsynced; only then is the previous checkpoint removed. A crash at any
point leaves the previous checkpoint complete; leftover temporary directories are never read and
are removed by the next save. On loading, every file is checked against the manifest, so a
truncated or altered file is reported instead of being used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import Tensor

from spdbench.errors import UserError, one_line

FORMAT = 1
"""Version of the layout above, recorded in every manifest."""

CHECKPOINTS = "checkpoints"
"""The directory of a run directory that holds its checkpoint."""

MANIFEST = "manifest.json"
_TENSOR_FILES = ("model", "ema", "state")
_META = "meta.json"
_STEP_DIRECTORY = re.compile(r"step-(\d+)")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read from disk; every tensor is on the CPU.

    Attributes:
        path: the checkpoint directory.
        step: the number of optimizer steps taken when it was written.
        model: the network's state dict.
        ema: the averaged network's state dict (the weights to sample with).
        state: the rest of the training state's tensors (optimizer, random generators).
        meta: the JSON part of the training state; ``meta["config"]`` is the run's
            :class:`~spdbench.train.TrainConfig` as a dict and ``meta["process"]`` the process's
            configuration.
    """

    path: Path
    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    state: dict[str, Tensor]
    meta: dict[str, Any]

    def does_not_fit(self, error: Exception) -> UserError:
        """The one-line error for a checkpoint whose tensors or state ``error`` says do not fit."""
        return UserError(f"the checkpoint {self.path} does not fit this run: {one_line(str(error))}")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` of ``run_dir`` lives (once written)."""
    return Path(run_dir) / CHECKPOINTS / f"step-{step:09d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The directory of the latest checkpoint of ``run_dir`` (by step), or ``None`` if it has none."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    steps = {int(m.group(1)): p for p in root.iterdir() if (m := _STEP_DIRECTORY.fullmatch(p.name)) and p.is_dir()}
    return steps[max(steps)] if steps else None


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """The latest checkpoint of ``run_dir``.

    Raises:
        UserError: ``run_dir`` has no checkpoint, or its checkpoint is incomplete or corrupt.
    """
    path = latest_checkpoint(run_dir)
    if path is None:
        raise UserError(f"{run_dir} holds no checkpoint (no {CHECKPOINTS}/step-* directory)")
    return read_checkpoint(path)


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint in directory ``path``, every file checked against the manifest.

    Raises:
        UserError: a file is missing, truncated or altered, or the manifest is not one of this format.
    """
    path = Path(path)
    advice = f"delete {path} and train again"
    manifest = _parse_json(_read(path / MANIFEST, advice), path / MANIFEST, advice)
    expected = {f"{name}.safetensors" for name in _TENSOR_FILES} | {_META}
    files = manifest.get("files")
    valid = (
        manifest.get("format") == FORMAT
        and isinstance(manifest.get("step"), int)
        and isinstance(files, dict)
        and set(files) == expected
        and all(isinstance(record, dict) for record in files.values())
    )
    if not valid:
        raise UserError(f"{path / MANIFEST} is not a manifest of checkpoint format {FORMAT}; {advice}")
    contents = {}
    for name, record in files.items():
        data = _read(path / name, advice)
        if len(data) != record.get("bytes"):
            raise UserError(
                f"checkpoint file {path / name} is truncated or corrupt: {len(data)} bytes "
                f"where its manifest says {record.get('bytes')}; {advice}"
            )
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            raise UserError(
                f"checkpoint file {path / name} is corrupt: its SHA-256 differs from the manifest's; {advice}"
            )
        contents[name] = data
    tensors = {
        name: _parse_safetensors(contents[f"{name}.safetensors"], path / f"{name}.safetensors", advice)
        for name in _TENSOR_FILES
    }
    meta = _parse_json(contents[_META], path / _META, advice)
    return Checkpoint(path=path, step=manifest["step"], meta=meta, **tensors)


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: dict[str, Tensor],
    ema: dict[str, Tensor],
    state: dict[str, Tensor],
    meta: dict[str, Any],
) -> Path:
    """Write a checkpoint of ``step`` into ``run_dir`` atomically (see the module docstring), then
    remove the older checkpoints; returns the new checkpoint's directory."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".tmp-*"):
        shutil.rmtree(leftover)
    final = checkpoint_path(run_dir, step)
    groups = zip(_TENSOR_FILES, (model, ema, state))
    files = {f"{name}.safetensors": _safetensors_bytes(tensors) for name, tensors in groups}
    files[_META] = json.dumps(meta, indent=1).encode()
    manifest = {
        "format": FORMAT,
        "step": step,
        "files": {
            name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()
        },
    }
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for name, data in files.items():
            _write_synced(temporary / name, data)
        _write_synced(temporary / MANIFEST, json.dumps(manifest, indent=1).encode())
        _fsync_directory(temporary)
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _fsync_directory(root)
    for older in root.iterdir():
        if _STEP_DIRECTORY.fullmatch(older.name) and older != final:
            shutil.rmtree(older)
    return final


def _safetensors_bytes(tensors: dict[str, Tensor]) -> bytes:
    """``tensors`` serialised as safetensors (copied to the CPU, contiguous)."""
    return safetensors.torch.save({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def _write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` and fsync it."""
    with path.open("xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_directory(path: Path) -> None:
    """Fsync directory ``path``, so that the entries created or renamed in it are durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read(path: Path, advice: str) -> bytes:
    """The bytes of checkpoint file ``path``; a missing or unreadable file is a UserError."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read checkpoint file {path} ({error.strerror or error}); {advice}") from error


def _parse_json(data: bytes, path: Path, advice: str) -> dict[str, Any]:
    """The JSON object in ``data`` (read from ``path``); anything else is a UserError."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"checkpoint file {path} is not valid JSON ({error}); {advice}") from error
    if not isinstance(value, dict):
        raise UserError(f"checkpoint file {path} does not hold a JSON object; {advice}")
    return value


def _parse_safetensors(data: bytes, path: Path, advice: str) -> dict[str, Tensor]:
    """The tensors in the safetensors bytes ``data`` (read from ``path``); invalid data is a UserError."""
    try:
        return safetensors.torch.load(data)
    except Exception as error:  # safetensors reports bad data with several exception types
        raise UserError(f"checkpoint file {path} is not valid safetensors ({error}); {advice}") from error
