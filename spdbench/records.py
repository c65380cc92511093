"""The run-directory and suite-directory schema: file names, and reading and writing the records.

A run directory holds ``config.json`` (the resolved configuration, as ``--dry-run`` prints it),
``metrics.jsonl`` (the training log), ``checkpoints/``, ``samples.npz`` (uint8 images),
``samples.png``, ``eval.jsonl`` (FID during training, one ``{step, fid, samples}`` a line) and
``summary.json`` (costs and the FID/KID scores); a run that failed inside a suite has
``failed.json`` (``{"run_id", "error", "traceback"}``) instead of a summary. ``spdbench sample``
adds ``resampled/<sampler>.json`` (``{"sampler", "scores", "sampling_seconds"}``): the run's
sample set drawn again from its final weights with another sampler or NFE, scored the same way;
``spdbench score`` adds ``scores-<features>.json``: the samples scored again with other features.

A suite directory holds ``suite.json`` (its name, title, budget, dataset, how its FID is
computed, the command and machine that made it, the floor score, whether it is a smoke test,
the process its claims are about (``claims_about``) and the ids of its runs) and ``runs/<run id>/``.

Reading needs none of the machinery that made the records (no trainer, metrics or distributed
code): ``spdbench report`` imports this module alone for them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spdbench.errors import UserError, one_line
from spdbench.files import write_text_atomically

CONFIG = "config.json"
SUMMARY = "summary.json"
SAMPLES = "samples.npz"
SAMPLE_GRID = "samples.png"
EVALUATIONS = "eval.jsonl"
FAILED = "failed.json"
RESAMPLED = "resampled"  #: ``resampled/<sampler>.json``: the run's sample set drawn again (``spdbench sample``)
SUITE_FILE = "suite.json"
RUNS_DIR = "runs"
#: What ``suite.json`` must hold.
SUITE_KEYS = ("suite", "title", "budget", "dataset", "features", "samples", "reference", "command", "machine")
#: What ``resampled/<sampler>.json`` must hold.
RESAMPLED_KEYS = ("sampler", "scores", "sampling_seconds")
NUMBER = (int, float)  #: a finite number (``misfits`` refuses NaN and infinities)


@dataclass(frozen=True)
class Holding:
    """The kind of an object that must hold ``keys``, its values of ``kinds`` where it has them."""

    keys: tuple[str, ...]
    kinds: dict[str, Any]


@dataclass(frozen=True)
class ListOf:
    """The kind of a list whose every item is of ``kind``."""

    kind: Any


#: What the values a record's readers use must be, where the record has them: a type or a tuple
#: of types, a dict (an object whose values must be so in turn, where it has them), ``Holding``
#: or ``ListOf``.
SCORE_KINDS: dict[str, Any] = {
    "fid": NUMBER, "fid_low": NUMBER, "fid_high": NUMBER, "kid": NUMBER, "kid_std": NUMBER, "samples": int,
    "features": str, "reference": str,
}
SCORES = Holding(("fid", "fid_low", "fid_high"), SCORE_KINDS)  #: a run's scores: its FID and interval at least
#: One invocation of the harness that ran runs: when it started (UTC), its seconds from its start to the end of
#: its last run, how many runs it ran (finished or failed) and the seconds it estimated for the runs left.
INVOCATION = Holding(
    ("started", "seconds", "runs", "estimated_seconds"),
    {"started": str, "seconds": NUMBER, "runs": int, "estimated_seconds": NUMBER},
)
SUITE_KINDS: dict[str, Any] = {
    **dict.fromkeys(SUITE_KEYS, str),
    "samples": int, "floor": Holding(("fid", "fid_low", "fid_high", "kid", "samples"), SCORE_KINDS), "smoke": bool,
    "claims_about": (str, type(None)), "invocations": ListOf(INVOCATION),
}
EVALUATION_KINDS: dict[str, Any] = {"step": int, "fid": NUMBER, "samples": int}
CONFIG_KINDS: dict[str, Any] = {
    "process": {"process": str, "label": str},
    "dataset": str,
    "image_shape": list,
    "budget": str,
    "network": dict,
    "train": {"train_steps": int, "batch": int, "seed": int},
    "sampler": {
        "solver": str, "grid": str, "nfe": int, "eta": NUMBER, "variance": str, "clip_x0": bool,
        "corrector": NUMBER, "projection": NUMBER,
    },
    "samples": int,
    "seed": int,
}
SUMMARY_KINDS: dict[str, Any] = {
    "train_steps": int, "train_seconds": NUMBER, "images_per_second": NUMBER, "nfe": int, "samples": int,
    "sampling_seconds": NUMBER, "scores": SCORES,
}
RESAMPLED_KINDS: dict[str, Any] = {
    "sampler": CONFIG_KINDS["sampler"], "scores": SCORES, "sampling_seconds": NUMBER,
}
GEOMETRY = "geometry"  #: ``geometry/``: the geometry of the run's sampling paths (``spdbench geometry``)
GEOMETRY_SUMMARY = "summary.json"
#: What ``geometry/summary.json`` must hold.
GEOMETRY_KEYS = (
    "sampling_deviation_max", "sampling_deviation_mean", "denoising_deviation_max", "denoising_deviation_mean",
    "sampling_off_plane", "optimal_gap_mean", "final_fid", "best_jump_calls", "best_jump_fid", "steps", "samples",
)
GEOMETRY_KINDS: dict[str, Any] = {
    **dict.fromkeys(GEOMETRY_KEYS, NUMBER),
    "sampling_off_plane": ListOf(NUMBER), "denoising_off_plane": ListOf(NUMBER),
    "optimal_gap_mean": (*NUMBER, type(None)), "best_jump_calls": int, "steps": int, "samples": int, "sampler": dict,
}


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a one-line error when it is not JSON (or not UTF-8 text)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None


def read_record(path: Path, keys: tuple[str, ...] = (), kinds: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object in ``path``; a one-line error when it is not an object, lacks one of
    ``keys`` or holds a value of another kind than ``kinds`` names for it (``CONFIG_KINDS``)."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise UserError(f"{path} holds a JSON {type(record).__name__}, not the object spdbench writes there")
    return checked(path, record, keys, kinds)


def checked(
    path: Path, record: dict[str, Any], keys: tuple[str, ...] = (), kinds: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``record`` (read from ``path``); a one-line error when it holds a value of another kind
    than ``kinds`` names for it (``misfits``) or lacks one of ``keys``."""
    wrong = misfits(record, kinds or {})
    if wrong:
        raise UserError(f"{path} holds {wrong[0]}: it is damaged or from another version of spdbench")
    missing = [key for key in keys if key not in record]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it is damaged or from another version of spdbench")
    return record


def misfits(record: dict[str, Any], kinds: dict[str, Any], within: str = "") -> list[str]:
    """``key = value`` for each value of ``record`` of another kind than ``kinds`` names (a type,
    a tuple of types, the kinds of an object's values, ``Holding`` or ``ListOf``), and ``key
    without item`` for an item a ``Holding`` object lacks; a boolean is no number, and a number
    must be finite."""
    found = []
    for key, kind in kinds.items():
        if key in record:
            found += misfit(record[key], kind, f"{within}{key}")
    return found


def misfit(value: Any, kind: Any, name: str) -> list[str]:
    """What ``misfits`` finds in the one ``value`` called ``name``."""
    if isinstance(kind, Holding):
        if not isinstance(value, dict):
            return [f"{name} = {value!r}"]
        lacking = [f"{name} without {key}" for key in kind.keys if key not in value]
        return misfits(value, kind.kinds, f"{name}.") + lacking
    if isinstance(kind, dict):
        return misfits(value, kind, f"{name}.") if isinstance(value, dict) else [f"{name} = {value!r}"]
    if isinstance(kind, ListOf):
        if not isinstance(value, list):
            return [f"{name} = {value!r}"]
        return [found for index, item in enumerate(value) for found in misfit(item, kind.kind, f"{name}[{index}]")]
    types = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        return [f"{name} = {value!r}"]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{name} = {value!r}"]
    return []


def as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists): what a record compares with."""
    return json.loads(json.dumps(value))


def finite_json(path: Path, record: Any, indent: int | None = None) -> str:
    """``record`` as JSON for ``path``; a one-line error for a number that is not finite (what
    the readers refuse: a sampler or network that diverged), so that nothing writes one."""
    try:
        return json.dumps(record, indent=indent, allow_nan=False)
    except ValueError:
        raise UserError(f"not writing {path}: it would hold a number that is not finite") from None


def write_json(path: Path, record: Any) -> None:
    """``record`` as indented JSON in ``path`` (``finite_json``), written atomically."""
    write_text_atomically(path, finite_json(path, record, indent=2) + "\n")


def append_evaluation(run_dir: Path, step: int, fid: float, samples: int) -> None:
    """One line of ``eval.jsonl`` (``finite_json``)."""
    line = finite_json(run_dir / EVALUATIONS, {"step": step, "fid": fid, "samples": samples})
    with (run_dir / EVALUATIONS).open("a") as log:
        log.write(line + "\n")


def read_samples(path: Path) -> np.ndarray:
    """The uint8 images N×C×H×W of the sample archive ``path`` (``samples.npz``), never unpickling
    anything; a one-line error when it is not one."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with archive:
            images = archive["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is not a readable sample archive ({one_line(str(error))})") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UserError(f"{path} holds {images.dtype} images of {images.ndim} dimensions, not uint8 N×C×H×W")
    return images


def trim_step_log(path: Path, through: int) -> None:
    """Keep only the entries of the JSON-lines log at ``path`` (``metrics.jsonl``, ``eval.jsonl``)
    up to step ``through``, and no torn last line, replacing the file atomically; no file, no log."""
    if not path.exists():
        return
    kept = [json.dumps(entry) + "\n" for entry in step_log(path) if entry["step"] <= through]
    write_text_atomically(path, "".join(kept))


def step_log(path: Path) -> list[dict[str, Any]]:
    """The entries of the JSON-lines log at ``path`` that have an integer ``step`` (a torn or
    foreign line is left out); none when there is no file."""
    entries = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict) and isinstance(entry.get("step"), int):
                    entries.append(entry)
    return entries


def last_entry(path: Path) -> dict[str, Any] | None:
    """The last entry of the JSON-lines log at ``path`` (``None`` when it has none)."""
    entries = step_log(path)
    return entries[-1] if entries else None


def write_failure(run_dir: Path, error: str, traceback: str) -> None:
    """``failed.json``: why the run in ``run_dir`` failed."""
    write_json(run_dir / FAILED, {"run_id": run_dir.name, "error": error, "traceback": traceback})


@dataclass(frozen=True)
class RunRecord:
    """One run directory as it reads back."""

    run_id: str
    directory: Path
    config: dict[str, Any]  #: ``config.json``; empty when the run never wrote one
    summary: dict[str, Any] | None
    error: str | None
    evaluations: list[dict[str, Any]]  #: the lines of ``eval.jsonl``
    resampled: list[dict[str, Any]]  #: ``resampled/*.json``: the sample set drawn again, by file name
    geometry: dict[str, Any] | None = None  #: ``geometry/summary.json``, when ``spdbench geometry`` ran

    @property
    def status(self) -> str:
        """``done`` (a summary), ``failed`` (an error), ``not started`` (no directory) or
        ``unfinished`` (none of these)."""
        if self.summary is not None:
            return "done"
        if self.error is not None:
            return "failed"
        return "unfinished" if self.directory.is_dir() else "not started"

    @property
    def process_config(self) -> dict[str, Any]:
        """The process's name, label, basis and options, as ``Process.config`` wrote them."""
        return dict(self.config.get("process", {}))

    @property
    def process(self) -> str:
        return str(self.process_config.get("process", ""))

    @property
    def label(self) -> str:
        """The process's label (``spd-desync+0.1``), as ``Process.label`` made it."""
        return str(self.process_config.get("label", self.process))

    @property
    def options(self) -> dict[str, Any]:
        """The process's options (its basis among them)."""
        return {key: value for key, value in self.process_config.items() if key not in ("process", "label")}

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def budget(self) -> str:
        return str(self.config.get("budget", ""))

    @property
    def scores(self) -> dict[str, Any] | None:
        """The run's score dict, or ``None`` when it has none (not finished, or not scored)."""
        return None if self.summary is None else self.summary.get("scores")

    @property
    def protocol(self) -> dict[str, Any]:
        """Everything the configuration holds but the process and the seeds, its nested keys joined
        by dots (``sampler.solver``): what runs must share for their options to be compared."""
        return {
            key: value for key, value in flattened(self.config).items()
            if key not in ("seed", "train.seed") and not key.startswith("process.")
        }

    @property
    def settings(self) -> dict[str, Any]:
        """The process's options and the ``protocol``: everything that tells a configuration apart."""
        return {**self.options, **self.protocol}

    @property
    def configuration(self) -> str:
        """The configuration without its seeds, as a string: runs that differ only by seed share it."""
        return json.dumps({"process": self.process_config, **self.protocol}, sort_keys=True)


def flattened(record: dict[str, Any], within: str = "") -> dict[str, Any]:
    """``record`` with the keys of its nested objects joined by dots (``{"sampler": {"nfe": 20}}``
    gives ``{"sampler.nfe": 20}``)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(flattened(value, f"{within}{key}."))
        else:
            flat[f"{within}{key}"] = value
    return flat


def varying_keys(settings: Sequence[dict[str, Any]], references: Sequence[dict[str, Any]] = ()) -> list[str]:
    """The keys, in order, whose values differ between the flat ``settings`` or from any of
    ``references``; a key one of them lacks differs from any value, ``None`` among them."""
    absent = object()

    def value(entry: dict[str, Any], key: str) -> object:
        return json.dumps(entry[key], sort_keys=True) if key in entry else absent

    keys = sorted({key for entry in settings for key in entry})
    return [
        key for key in keys
        if len({value(entry, key) for entry in settings}) > 1
        or any(value(entry, key) != value(reference, key) for entry in settings for reference in references)
    ]


def shown(value: Any) -> str:
    """A setting's value as a name shows it: its JSON (``null``, ``true``, ``0.1``), a string
    unquoted (``ddim``) unless it reads as JSON of another value (``"1"``, ``"null"``), so no
    two values look alike."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, sort_keys=True)


def differences(settings: dict[str, dict[str, Any]], references: Sequence[dict[str, Any]] = ()) -> dict[str, str]:
    """For each entry of ``settings`` (name to flat settings), ``key=value, …`` over its
    ``varying_keys`` (``key absent`` where it lacks one), each value ``shown``; ``""`` for every
    entry when none varies."""
    varying = varying_keys(list(settings.values()), references)
    return {
        name: ", ".join(f"{key}={shown(entry[key])}" if key in entry else f"{key} absent" for key in varying)
        for name, entry in settings.items()
    }


def configuration_names(runs: list[RunRecord]) -> dict[str, str]:
    """Each run's configuration as tables, plots and verdicts name it, by run id: its process's
    label (``spd-desync+0.1``), and where configurations of one label and budget differ in more,
    what tells them apart: ``spd (sampler.solver=ddim)``; so within a budget no two configurations
    share a name. A run without a ``config.json`` (never started, or failed before writing one)
    has its label, empty."""
    by_label: dict[tuple[str, str], dict[str, RunRecord]] = {}
    for run in runs:
        if run.config:
            by_label.setdefault((run.label, run.budget), {}).setdefault(run.configuration, run)
    names: dict[str, str] = {}
    for (label, _), members in by_label.items():
        told = differences({configuration: run.settings for configuration, run in members.items()})
        names.update({configuration: f"{label} ({text})" if text else label for configuration, text in told.items()})
    return {run.run_id: names.get(run.configuration, run.label) if run.config else run.label for run in runs}


def read_run(directory: Path) -> RunRecord:
    """The record of the run in ``directory``."""
    config = directory / CONFIG
    summary = directory / SUMMARY
    failed = directory / FAILED
    evaluations = directory / EVALUATIONS
    geometry = directory / GEOMETRY / GEOMETRY_SUMMARY
    return RunRecord(
        run_id=directory.name,
        directory=directory,
        config=read_record(config, kinds=CONFIG_KINDS) if config.is_file() else {},
        summary=read_record(summary, kinds=SUMMARY_KINDS) if summary.is_file() else None,
        error=str(read_record(failed, ("error",))["error"]) if failed.is_file() else None,
        evaluations=[
            checked(evaluations, entry, kinds=EVALUATION_KINDS)
            for entry in step_log(evaluations)
            if {"fid", "samples"} <= entry.keys()
        ],
        resampled=[
            read_record(path, RESAMPLED_KEYS, RESAMPLED_KINDS)
            for path in sorted((directory / RESAMPLED).glob("*.json"))
        ],
        geometry=read_record(geometry, GEOMETRY_KEYS, GEOMETRY_KINDS) if geometry.is_file() else None,
    )


@dataclass(frozen=True)
class SuiteRecord:
    """A suite directory: ``suite.json`` and the records of its runs."""

    directory: Path
    info: dict[str, Any]
    runs: list[RunRecord]  #: the runs ``suite.json`` lists (every run directory when it lists none)
    left_out: list[str]  #: run directories that ``suite.json`` does not list (another protocol)

    @property
    def smoke(self) -> bool:
        return bool(self.info.get("smoke"))

    @property
    def floor(self) -> dict[str, Any] | None:
        return self.info.get("floor")

    def scored(self) -> list[RunRecord]:
        """The finished runs that have scores."""
        return [run for run in self.runs if run.scores is not None]

    @functools.cached_property
    def names(self) -> dict[str, str]:
        """Each run's configuration name, by run id (``configuration_names``)."""
        return configuration_names(self.runs)


def read_suite(directory: Path) -> SuiteRecord:
    """The suite in ``directory``, its runs in the order ``suite.json`` lists them; one-line errors
    when ``suite.json`` is missing or lacks a key."""
    path = directory / SUITE_FILE
    if not path.is_file():
        raise UserError(f"{directory} is not a suite: it has no {SUITE_FILE}")
    info = read_record(path, SUITE_KEYS, SUITE_KINDS)
    runs_dir = directory / RUNS_DIR
    runs = runs_dir.iterdir() if runs_dir.is_dir() else []
    found = sorted(run.name for run in runs if run.is_dir() and not run.name.startswith("."))  # .x: being removed
    listed = info.get("runs", found)
    if not (isinstance(listed, list) and all(isinstance(run_id, str) for run_id in listed)):
        raise UserError(f"{path}: its runs are not a list of run ids")
    left_out = [run_id for run_id in found if run_id not in listed]
    return SuiteRecord(directory, info, [read_run(runs_dir / run_id) for run_id in listed], left_out)


def suite_dirs(results: Path, name: str | None) -> list[Path]:
    """The suite ``name`` under ``results``, or every directory there with a ``suite.json``."""
    suites = sorted(path.parent for path in results.glob(f"*/{SUITE_FILE}"))
    if name is None:
        if not suites:
            raise UserError(f"no suites in {results} (directories with a {SUITE_FILE})")
        return suites
    if not (results / name / SUITE_FILE).is_file():
        known = ", ".join(path.name for path in suites) or "none"
        raise UserError(f"unknown suite {name!r} in {results}; suites there: {known}")
    return [results / name]
