"""Bad input to every command: one line ``error: …`` on stderr, exit code 2, nothing left on disk;
and hostile pickle payloads in every file spdbench reads: no code runs.

The promise (``spdbench.errors``): input the user can fix (an unknown name, an out-of-range value,
a missing, empty, truncated, corrupt or garbage file, a file where a directory is expected, a
device this machine does not have) gets exactly one line on stderr that starts with ``error: ``,
exit code 2, and leaves nothing new behind: every test runs in its own working directory
(``tmp_path``, which also holds ``$SPDBENCH_CACHE`` and ``$SPDBENCH_DATA``), whose every path
(and every file's bytes) is compared before and after the command.

Every case is cheap: nothing trains a network or the feature classifier, run directories are
written by hand (their ``config.json`` is what ``spdbench run --dry-run`` prints), processes that
need a spectrum get ``--spectrum paper``, and the classifier's cache is filled with an untrained
network where a command would otherwise train it.

A hostile payload is a pickle whose ``__reduce__`` runs ``touch MARKER``: the marker must never
appear, whatever the command does with the file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save, save_file
from typer.testing import CliRunner

from benchmarks import harness
from corruptions.transforms import BASES
from models import UNet, network_config
from spdbench import spectra
from spdbench.checkpoint import MANIFEST, latest_checkpoint, save_checkpoint
from spdbench.classifier import (
    ClassifierConfig,
    ClassifierInfo,
    FmnistCNN,
    cache_paths,
    read_classifier,
    write_classifier,
)
from spdbench.cli import app
from spdbench.metrics import INCEPTION_FILE, split_features

runner = CliRunner()

MARKER = "MARKER"  #: the file a hostile payload creates (in the working directory) if it ever runs
RUN = "run"  #: the hand-made run directory, relative to the working directory
SUITE = "results/s"  #: the hand-made suite directory
SHAPE = (1, 28, 28)


# --- the working directory ---------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the working directory, holding the cache and the dataset downloads."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPDBENCH_DATA", str(tmp_path / "data"))
    for name in ("SPDBENCH_INCEPTION_WEIGHTS", "SPDBENCH_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every path under ``root``: a file's bytes, a link's target, ``None`` for a directory."""
    state: dict[str, bytes | str | None] = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(directory) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                state[key] = None
            else:
                state[key] = path.read_bytes()
    return state


def disk_changes(before: dict[str, bytes | str | None], after: dict[str, bytes | str | None]) -> list[str]:
    """What differs between two snapshots, as readable lines."""
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(key for key in set(before) & set(after) if before[key] != after[key])
    return [f"new: {key}" for key in new] + [f"removed: {key}" for key in gone] + [f"changed: {key}" for key in changed]


def invoke(cli: str, args: list[str]) -> Any:
    return runner.invoke(harness.app if cli == "harness" else app, args)


def outcome(result: Any) -> str:
    """The exit code, the output and the exception of a CliRunner result, for failure messages."""
    exception = "" if isinstance(result.exception, SystemExit | None) else f" exception={result.exception!r}"
    return f"exit {result.exit_code}{exception} stderr={result.stderr!r} stdout={result.stdout[-300:]!r}"


def error_line_problems(result: Any, message: str = "") -> list[str]:
    """Why ``result`` is not exit 2 with one ``error: `` line (holding ``message``) and no stdout."""
    problems = []
    lines = result.stderr.splitlines()
    if result.exit_code != 2:
        problems.append(f"exit code {result.exit_code}, not 2")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"stderr is {len(lines)} lines, not one 'error: ' line")
    elif message not in lines[0]:
        problems.append(f"the error does not say {message!r}")
    if result.stdout != "":
        problems.append("stdout is not empty")
    return problems


# --- hand-made run and suite directories ---------------------------------------------------------


@functools.cache
def dry_run_config(process: str) -> str:
    """The configuration ``spdbench run --dry-run`` prints for ``process`` at the smoke budget and
    the paper's spectrum, without its ``run_id``, as JSON text."""
    result = runner.invoke(app, ["run", "--process", process, "--budget", "smoke", "--spectrum", "paper", "--dry-run"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)
    config.pop("run_id")
    return json.dumps(config)


def run_config(process: str = "ddpm") -> dict[str, Any]:
    return json.loads(dry_run_config(process))


def run_id(process: str = "ddpm") -> str:
    result = runner.invoke(app, ["run", "--process", process, "--budget", "smoke", "--spectrum", "paper", "--dry-run"])
    return str(json.loads(result.stdout)["run_id"])


def write_json(path: Path, value: Any) -> None:
    """``value`` as ``spdbench.records.write_json`` writes it (so that rewriting it changes no byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def samples_npz(shape: tuple[int, ...] = (4, *SHAPE), key: str = "images", dtype: Any = np.uint8) -> bytes:
    images = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{key: images})
    return buffer.getvalue()


@functools.cache
def smoke_weights() -> dict[str, torch.Tensor]:
    """The state dict of the smoke budget's network for Fashion-MNIST (untrained)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNet(network_config("smoke", SHAPE[0], SHAPE[1])).state_dict()


def make_run(
    root: Path,
    process: str = "ddpm",
    *,
    directory: str = RUN,
    config: bytes | None = None,
    samples: bytes | None = None,
    checkpoint: bool = False,
    finished: bool = True,
) -> Path:
    """A run directory with ``config.json`` (the dry run's, unless ``config`` gives its bytes),
    ``samples.npz`` (when given) and, with ``checkpoint``, a complete checkpoint of the untrained
    smoke network and, when ``finished``, a summary (made-up scores)."""
    run_dir = root / directory
    run_dir.mkdir(parents=True)
    if config is None:
        write_json(run_dir / "config.json", run_config(process))
    else:
        (run_dir / "config.json").write_bytes(config)
    if samples is not None:
        (run_dir / "samples.npz").write_bytes(samples)
    if checkpoint:
        weights = smoke_weights()
        save_checkpoint(run_dir, 40, weights, weights, {"step": torch.zeros(1)}, {"step": 40})
        if finished:
            write_json(run_dir / "summary.json", {"run_id": directory, "train_steps": 40, "scores": SCORES})
    return run_dir


def replace_checkpoint_file(run_dir: Path, name: str, data: bytes) -> None:
    """Put ``data`` in the checkpoint file ``name`` and record it in the manifest (so that only
    its contents, not its size or hash, give it away)."""
    path = latest_checkpoint(run_dir)
    assert path is not None
    (path / name).write_bytes(data)
    if name != MANIFEST:
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (path / MANIFEST).write_text(json.dumps(manifest, indent=1))


SCORES = {  # made up: not a measurement
    "fid": 30.0, "fid_low": 29.0, "fid_high": 31.5, "kid": 0.03, "kid_std": 0.001,
    "features": "fmnist-cnn-synthetic", "samples": 4, "reference": "fmnist-train-4",
}


def make_suite(root: Path, **files: bytes) -> Path:
    """A suite ``results/s`` with one finished SPD run ``r1`` (paper spectrum, made-up scores);
    ``files`` replaces or adds files by name: ``suite_json`` for ``suite.json``, else a file of
    the run (``summary_json``, ``config_json``, ``samples_npz``, ``eval_jsonl``, ``failed_json``,
    ``resampled``, written as ``resampled/x.json``, and ``geometry_json``, as ``geometry/summary.json``)."""
    suite_dir = root / SUITE
    run_dir = suite_dir / "runs" / "r1"
    info = {
        "suite": "s", "title": "made-up suite", "budget": "smoke", "dataset": "fmnist",
        "features": "fmnist-cnn-synthetic", "samples": 4, "reference": "fmnist-train-4",
        "command": "pytest", "machine": "test", "smoke": True, "runs": ["r1"],
    }
    write_json(suite_dir / "suite.json", info)
    write_json(run_dir / "config.json", run_config("spd"))
    summary = {"run_id": "r1", "train_steps": 40, "train_seconds": 1.0, "images_per_second": 1.0,
               "final_loss": 0.1, "nfe": 10, "samples": 4, "sampling_seconds": 1.0, "scores": SCORES}
    write_json(run_dir / "summary.json", summary)
    (run_dir / "samples.npz").write_bytes(samples_npz((16, *SHAPE)))
    (run_dir / "eval.jsonl").write_text(json.dumps({"step": 20, "fid": 40.0, "samples": 4}) + "\n")
    names = {
        "suite_json": suite_dir / "suite.json",
        "summary_json": run_dir / "summary.json",
        "config_json": run_dir / "config.json",
        "samples_npz": run_dir / "samples.npz",
        "eval_jsonl": run_dir / "eval.jsonl",
        "failed_json": run_dir / "failed.json",
        "resampled": run_dir / "resampled" / "x.json",
        "geometry_json": run_dir / "geometry" / "summary.json",
    }
    for name, data in files.items():
        names[name].parent.mkdir(parents=True, exist_ok=True)
        names[name].write_bytes(data)
    return suite_dir


def fake_classifier_cache(root: Path) -> None:
    """The default classifier's cache filled with an untrained network (claimed 95 % accurate), so
    that scoring reads it instead of training one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = FmnistCNN(ClassifierConfig().channels, ClassifierConfig().hidden)
    write_classifier(network, ClassifierInfo(ClassifierConfig(), 0.95, 0.0, 1, torch.__version__))


def harness_caches(root: Path) -> None:
    """Everything the smoke suite would measure before its first write, cached with made-up values:
    the Fashion-MNIST spectrum in the FFT basis (SPD), the classifier, and the classifier features
    of the floor's images and of the reference."""
    spectrum_path = spectra.cache_path("fmnist", 28, BASES["fft"])
    spectrum_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"spectrum": torch.rand(*SHAPE, dtype=torch.float64) + 0.5}, str(spectrum_path))
    fake_classifier_cache(root)
    name = ClassifierConfig().name
    features = root / "cache" / "features"
    features.mkdir(parents=True, exist_ok=True)
    for split, count in (("test", 64), ("train", 10_000)):
        values = torch.randn(count, ClassifierConfig().hidden, dtype=torch.float64)
        save_file({"features": values}, str(features / f"{name}-fmnist-{split}-{count}.safetensors"))


# --- the table of bad inputs ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad invocation: ``args`` (to ``spdbench`` or the harness), what its error line must
    contain, what to write before it, and environment variables."""

    id: str
    args: list[str]
    message: str = ""
    setup: Callable[[Path], object] | None = None
    env: dict[str, str] = field(default_factory=dict)
    cli: str = "spdbench"


def a_file(root: Path) -> None:
    (root / "afile").write_text("not a directory\n")


def run_with(**kwargs: Any) -> Callable[[Path], object]:
    return lambda root: make_run(root, **kwargs)


def ema_of_another_network(root: Path) -> None:
    """A run whose EMA weights are a whole, hashed safetensors file of other tensors."""
    replace_checkpoint_file(make_run(root, checkpoint=True), "ema.safetensors", save({"other": torch.zeros(2)}))


def finished_run_of_another_seed(root: Path) -> None:
    """Under ``out/`` at the smoke DDPM run's id, a finished run whose ``config.json`` is seed 7's."""
    make_run(root, directory=f"out/{run_id()}", config=json.dumps({**run_config(), "seed": 7}).encode(),
             checkpoint=True)


def summary_without_config(root: Path) -> None:
    """Under ``out/`` at the smoke DDPM run's id, a summary and nothing else."""
    write_json(root / "out" / run_id() / "summary.json", {"run_id": run_id(), "train_steps": 40, "scores": SCORES})


def geometry_of(**changes: Any) -> bytes:
    """``geometry/summary.json`` as ``spdbench geometry`` writes it (made-up values), with ``changes``."""
    shape = {
        "sampling_deviation_max": 0.3, "sampling_deviation_mean": 0.1, "denoising_deviation_max": 0.2,
        "denoising_deviation_mean": 0.1, "sampling_off_plane": [0.1, 0.2], "denoising_off_plane": [0.1, 0.2],
        "optimal_gap_mean": None, "final_fid": 30.0, "best_jump_calls": 5, "best_jump_fid": 40.0, "steps": 10,
        "samples": 4, "sampler": {"solver": "ancestral"}, "command": "pytest",
    }
    return json.dumps({**shape, **changes}).encode()


def suite_with(**files: bytes) -> Callable[[Path], object]:
    return lambda root: make_suite(root, **files)


def valid_samples_and(extra: Callable[[Path], object] | None = None, **kwargs: Any) -> Callable[[Path], object]:
    def setup(root: Path) -> None:
        make_run(root, samples=samples_npz(), **kwargs)
        if extra is not None:
            extra(root)

    return setup


def run_with_config(dotted: str, value: Any, **kwargs: Any) -> Callable[[Path], object]:
    """A run (``make_run``) whose ``config.json`` is the dry run's with the value at ``dotted``
    (``train.train_steps``) replaced."""

    def setup(root: Path) -> object:
        config = run_config()
        *parents, key = dotted.split(".")
        inner = config
        for parent in parents:
            inner = inner[parent]
        inner[key] = value
        return make_run(root, config=json.dumps(config).encode(), **kwargs)

    return setup


def suite_info(**changes: Any) -> bytes:
    info = {
        "suite": "s", "title": "made-up suite", "budget": "smoke", "dataset": "fmnist",
        "features": "fmnist-cnn-synthetic", "samples": 4, "reference": "fmnist-train-4",
        "command": "pytest", "machine": "test", "smoke": True, "runs": ["r1"],
    }
    return json.dumps({**info, **changes}).encode()


def truncated_cifar10(root: Path) -> None:
    """The first kilobyte of a gzipped tar archive where the CIFAR-10 download is cached."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = os.urandom(4096)
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    write_bytes(root / "data" / "cifar10" / "cifar-10-python.tar.gz", buffer.getvalue()[:1024])


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


PAPER = ["--spectrum", "paper"]
DRY = ["--budget", "smoke", "--spectrum", "paper", "--dry-run"]
SAMPLE = ["sample", "--run", RUN]
CIFAR_CONFIG = json.dumps({"dataset": "cifar10", "seed": 0}).encode()

CASES: list[Case] = [
    # paths
    Case("paths-unknown-spectrum", ["paths", "--spectrum", "nope"], "nope"),
    Case("paths-unknown-dataset", ["paths", *PAPER, "--dataset", "nope"], "nope"),
    Case("paths-size-0", ["paths", *PAPER, "--size", "0"], "size"),
    Case("paths-size-3000", ["paths", *PAPER, "--size", "3000"], "must lie in [2, 128]"),
    Case("paths-channels-0", ["paths", *PAPER, "--size", "8", "--channels", "0"], "channels"),
    Case("paths-out-is-a-file", ["paths", *PAPER, "--size", "4", "--out", "afile"], "afile", a_file),
    Case("paths-out-empty", ["paths", *PAPER, "--size", "4", "--out", ""], "an empty path"),
    Case("data-dir-empty", ["--data-dir", "", "paths", *PAPER, "--size", "4"], "an empty path"),
    # samplers
    Case("samplers-unknown-spectrum", ["samplers", "--spectrum", "nope"], "nope"),
    Case("samplers-unknown-dataset", ["samplers", *PAPER, "--dataset", "nope"], "nope"),
    Case("samplers-size-0", ["samplers", *PAPER, "--size", "0"], "size"),
    Case("samplers-out-is-a-file", ["samplers", *PAPER, "--size", "4", "--out", "afile"], "afile", a_file),
    Case("samplers-out-empty", ["samplers", *PAPER, "--size", "4", "--out", ""], "an empty path"),
    # show
    Case("show-unknown-process", ["show", "--process", "nope", *PAPER], "nope"),
    Case("show-unknown-dataset", ["show", "--process", "ddpm", *PAPER, "--dataset", "nope"], "nope"),
    Case("show-unknown-spectrum", ["show", "--process", "ddpm", "--spectrum", "nope"], "nope"),
    Case("show-seed-negative", ["show", "--process", "ddpm", *PAPER, "--seed", "-1"], "--seed"),
    Case("show-images-0", ["show", "--process", "ddpm", *PAPER, "--images", "0"], "image"),
    Case("show-images-100000", ["show", "--process", "ddpm", *PAPER, "--images", "100000"], "1 to 64 images"),
    Case("show-times-0", ["show", "--process", "ddpm", *PAPER, "--times", "0"], "time"),
    Case("show-times-beyond-the-levels", ["show", "--process", "ddpm", *PAPER, "--times", "5000"], "5000"),
    Case("show-size-0", ["show", "--process", "ddpm", *PAPER, "--size", "0"], "size"),
    Case("show-perturb-1.5", ["show", "--process", "spd", *PAPER, "--perturb", "1.5"], "1.5"),
    Case("show-option-malformed", ["show", "--process", "ddpm", *PAPER, "--option", "levels"], "NAME=VALUE"),
    Case(
        "show-out-is-a-file",
        ["show", "--process", "ddpm", *PAPER, "--size", "4", "--images", "1", "--times", "1", "--out", "afile"],
        "afile",
        a_file,
    ),
    Case(
        "show-out-empty",
        ["show", "--process", "ddpm", *PAPER, "--size", "4", "--images", "1", "--times", "1", "--out", ""],
        "an empty path",
    ),
    Case("show-usage-missing-process", ["show", *PAPER], "--process"),
    # run
    Case("run-unknown-process", ["run", "--process", "nope", *DRY], "nope"),
    Case("run-unknown-dataset", ["run", "--process", "ddpm", "--dataset", "nope", *DRY], "nope"),
    Case("run-unknown-budget", ["run", "--process", "ddpm", "--budget", "nope", *PAPER, "--dry-run"], "nope"),
    Case("run-unknown-spectrum", ["run", "--process", "ddpm", "--budget", "smoke", "--spectrum", "nope", "--dry-run"],
         "nope"),
    Case("run-unknown-sampler", ["run", "--process", "ddpm", "--sampler", "nope", *DRY], "nope"),
    Case("run-sampler-of-another-family", ["run", "--process", "ddpm", "--sampler", "ihdm", *DRY], "ihdm"),
    Case("run-unknown-grid", ["run", "--process", "ddpm", "--grid", "nope", *DRY], "nope"),
    Case("run-unknown-variance", ["run", "--process", "ddpm", "--sampler", "ancestral", "--variance", "x", *DRY],
         "'x'"),
    Case("run-steps-0", ["run", "--process", "ddpm", "--steps", "0", *DRY], "--steps"),
    Case("run-batch-0", ["run", "--process", "ddpm", "--batch", "0", *DRY], "--batch"),
    Case("run-samples-0", ["run", "--process", "ddpm", "--samples", "0", *DRY], "--samples"),
    Case("run-samples-over-a-million", ["run", "--process", "ddpm", "--samples", "1000001", *DRY], "--samples"),
    Case("run-seed-negative", ["run", "--process", "ddpm", "--seed", "-1", *DRY], "--seed"),
    Case("run-seed-over-64-bits", ["run", "--process", "ddpm", "--seed", "100000000000000000000", *DRY], "--seed"),
    Case("run-nfe-0", ["run", "--process", "ddpm", "--nfe", "0", *DRY], "--nfe"),
    Case("run-nfe-5000-ddpm", ["run", "--process", "ddpm", "--nfe", "5000", *DRY], "--nfe"),
    Case("run-nfe-5000-spd", ["run", "--process", "spd", "--nfe", "5000", *DRY], "--nfe"),
    Case("run-eta-2", ["run", "--process", "ddpm", "--eta", "2", *DRY], "eta"),
    Case("run-perturb-1.5", ["run", "--process", "spd", "--perturb", "1.5", *DRY], "1.5"),
    Case("run-option-malformed", ["run", "--process", "ddpm", "--option", "levels", *DRY], "NAME=VALUE"),
    Case("run-option-unknown", ["run", "--process", "ddpm", "--option", "shape=round", *DRY], "shape"),
    Case("run-levels-0", ["run", "--process", "ddpm", "--option", "levels=0", *DRY], "levels"),
    Case("run-levels-1e9", ["run", "--process", "spd", "--option", "levels=1000000000", *DRY], "100000 levels"),
    Case("run-option-nan", ["run", "--process", "heat", "--option", "sigma=nan", *DRY], "finite"),
    Case("run-out-is-a-file", ["run", "--process", "ddpm", "--budget", "smoke", *PAPER, "--quiet", "--out", "afile"],
         "afile", a_file),
    Case("run-out-empty", ["run", "--process", "ddpm", "--out", "", *DRY], "an empty path"),
    Case("run-batch-larger-than-the-dataset",
         ["run", "--process", "ddpm", "--budget", "smoke", *PAPER, "--quiet", "--batch", "100000"], "100000"),
    Case("run-finished-with-another-configuration",
         ["run", "--process", "ddpm", "--budget", "smoke", *PAPER, "--quiet", "--out", "out"],
         "another configuration", finished_run_of_another_seed),
    Case("run-summary-without-its-config",
         ["run", "--process", "ddpm", "--budget", "smoke", *PAPER, "--quiet", "--out", "out"],
         "summary without its config.json", summary_without_config),
    Case("run-usage-steps-not-a-number", ["run", "--process", "ddpm", "--steps", "abc", *DRY], "--steps"),
    # sample
    Case("sample-run-missing", ["sample", "--run", "nowhere", "--nfe", "10"], "nowhere"),
    Case("sample-run-is-a-file", ["sample", "--run", "afile", "--nfe", "10"], "afile", a_file),
    Case("sample-run-empty", ["sample", "--run", "", "--nfe", "10"], "an empty path"),
    Case("sample-config-garbage", [*SAMPLE, "--nfe", "10"], "config.json",
         run_with(config=b"{not json", checkpoint=True)),
    Case("sample-config-empty", [*SAMPLE, "--nfe", "10"], "config.json", run_with(config=b"", checkpoint=True)),
    Case("sample-config-missing-keys", [*SAMPLE, "--nfe", "10"], "lacks 'sampler'",
         run_with(config=b'{"process": {"process": "ddpm"}}', checkpoint=True)),
    Case("sample-config-not-an-object", [*SAMPLE, "--nfe", "10"], "holds a JSON list",
         run_with(config=b"[1, 2]", checkpoint=True)),
    Case("sample-no-checkpoints", [*SAMPLE, "--nfe", "10"], "checkpoint", run_with()),
    Case("sample-config-steps-a-string", [*SAMPLE, "--nfe", "10"], "train.train_steps = 'x'",
         run_with_config("train.train_steps", "x", checkpoint=True)),
    Case("sample-config-samples-a-fraction", [*SAMPLE, "--nfe", "10"], "samples = 2.5",
         run_with_config("samples", 2.5, checkpoint=True)),
    Case("sample-config-unknown-process", [*SAMPLE, "--nfe", "10"], "unknown process 'bogus'",
         run_with_config("process.process", "bogus", checkpoint=True)),
    Case("sample-run-unfinished", [*SAMPLE, "--nfe", "10"], "summary.json", run_with(checkpoint=True, finished=False)),
    Case("sample-checkpoint-truncated", [*SAMPLE, "--nfe", "10"], "ema.safetensors",
         lambda root: truncate(latest_checkpoint(make_run(root, checkpoint=True)) / "ema.safetensors")),
    Case("sample-nfe-abc", [*SAMPLE, "--nfe", "abc"], "--nfe", run_with(checkpoint=True)),
    Case("sample-nfe-0", [*SAMPLE, "--nfe", "0"], "--nfe", run_with(checkpoint=True)),
    Case("sample-nfe-5000-ddpm", [*SAMPLE, "--nfe", "5000"], "--nfe", run_with(checkpoint=True)),
    Case("sample-nfe-5000-spd", [*SAMPLE, "--nfe", "5000"], "--nfe", run_with(process="spd", checkpoint=True)),
    Case("sample-unknown-sampler", [*SAMPLE, "--nfe", "10", "--sampler", "nope"], "nope", run_with(checkpoint=True)),
    Case("sample-unknown-grid", [*SAMPLE, "--nfe", "10", "--grid", "nope"], "nope", run_with(checkpoint=True)),
    Case("sample-eta-2", [*SAMPLE, "--nfe", "10", "--eta", "2"], "eta", run_with(checkpoint=True)),
    Case("sample-nfe-twice", [*SAMPLE, "--nfe", "10,10"], "names a count twice", run_with(checkpoint=True)),
    Case("sample-ema-of-another-network", [*SAMPLE, "--nfe", "10"], "does not fit this run", ema_of_another_network),
    # geometry
    Case("geometry-run-missing", ["geometry", "--run", "nowhere"], "nowhere"),
    Case("geometry-run-empty", ["geometry", "--run", ""], "an empty path"),
    Case("geometry-no-checkpoints", ["geometry", "--run", RUN], "checkpoint", run_with()),
    Case("geometry-run-unfinished", ["geometry", "--run", RUN], "summary.json",
         run_with(checkpoint=True, finished=False)),
    Case("sample-device-nope", [*SAMPLE, "--nfe", "10", "--device", "nope"], "nope", run_with(checkpoint=True)),
    Case("geometry-samples-1", ["geometry", "--run", RUN, "--samples", "1"], "--samples", run_with(checkpoint=True)),
    Case("geometry-device-nope", ["geometry", "--run", RUN, "--device", "nope"], "nope", run_with(checkpoint=True)),
    Case("geometry-nfe-500", ["geometry", "--run", RUN, "--nfe", "500"], "at most 200", run_with(checkpoint=True)),
    Case("geometry-more-samples-than-the-run", ["geometry", "--run", RUN, "--samples", "100000"], "--samples",
         run_with(checkpoint=True)),
    # report
    Case("report-results-missing", ["report", "--results", "nowhere"], "nowhere"),
    Case("report-results-is-a-file", ["report", "--results", "afile"], "afile", a_file),
    Case("report-results-empty", ["report", "--results", ""], "an empty path"),
    Case("report-unknown-suite", ["report", "nope", "--results", "results"], "nope", suite_with()),
    Case("report-suite-json-garbage", ["report", "--results", "results"], "suite.json",
         suite_with(suite_json=b"{not json")),
    Case("report-suite-json-empty", ["report", "--results", "results"], "suite.json", suite_with(suite_json=b"")),
    Case("report-suite-json-missing-keys", ["report", "--results", "results"], "title",
         suite_with(suite_json=b'{"suite": "s"}')),
    Case("report-suite-json-not-an-object", ["report", "--results", "results"], "suite.json",
         suite_with(suite_json=b"42")),
    Case("report-suite-json-runs-not-a-list", ["report", "--results", "results"], "runs",
         suite_with(suite_json=suite_info(runs=7))),
    Case("report-summary-json-garbage", ["report", "--results", "results"], "summary.json",
         suite_with(summary_json=b"{not json")),
    Case("report-summary-json-empty", ["report", "--results", "results"], "summary.json",
         suite_with(summary_json=b"")),
    Case("report-summary-json-not-an-object", ["report", "--results", "results"], "summary.json",
         suite_with(summary_json=b"[1, 2]")),
    Case("report-config-train-a-list", ["report", "--results", "results"], "train = []",
         suite_with(config_json=b'{"train": []}')),
    Case("report-config-process-a-string", ["report", "--results", "results"], "process = 'x'",
         suite_with(config_json=b'{"process": "x"}')),
    Case("report-summary-scores-a-number", ["report", "--results", "results"], "scores = 3",
         suite_with(summary_json=b'{"scores": 3}')),
    Case("report-summary-fid-a-string", ["report", "--results", "results"], "scores.fid = 'low'",
         suite_with(summary_json=b'{"scores": {"fid": "low"}}')),
    Case("report-resampled-nfe-a-string", ["report", "--results", "results"], "sampler.nfe = 'ten'",
         suite_with(resampled=b'{"sampler": {"nfe": "ten"}, "scores": {}, "sampling_seconds": 1}')),
    Case("report-summary-scores-empty", ["report", "--results", "results"], "scores without fid",
         suite_with(summary_json=b'{"scores": {}}')),
    Case("report-summary-fid-nan", ["report", "--results", "results"], "scores.fid = nan",
         suite_with(summary_json=json.dumps({"scores": {**SCORES, "fid": float("nan")}}).encode())),
    Case("report-suite-floor-a-string", ["report", "--results", "results"], "floor = 'x'",
         suite_with(suite_json=suite_info(floor="x"))),
    Case("report-suite-floor-without-its-interval", ["report", "--results", "results"], "floor without fid_low",
         suite_with(suite_json=suite_info(floor={"fid": 1.0}))),
    Case("report-suite-invocation-without-its-seconds", ["report", "--results", "results"],
         "invocations[0] without seconds",
         suite_with(suite_json=suite_info(invocations=[{"started": "now", "runs": 1, "estimated_seconds": 1.0}]))),
    Case("report-eval-samples-a-string", ["report", "--results", "results"], "samples = 'y'",
         suite_with(eval_jsonl=b'{"step": 50, "fid": 1.0, "samples": "y"}\n')),
    Case("report-geometry-off-plane-a-number", ["report", "--results", "results"], "sampling_off_plane = 3",
         suite_with(geometry_json=geometry_of(sampling_off_plane=3))),
    Case("report-geometry-off-plane-holds-a-string", ["report", "--results", "results"],
         "sampling_off_plane[0] = 'x'", suite_with(geometry_json=geometry_of(sampling_off_plane=["x", 0.2]))),
    Case("report-geometry-fid-a-string", ["report", "--results", "results"], "final_fid = 'x'",
         suite_with(geometry_json=geometry_of(final_fid="x"))),
    Case("report-config-json-garbage", ["report", "--results", "results"], "config.json",
         suite_with(config_json=b"{not json")),
    Case("report-failed-json-missing-error", ["report", "--results", "results"], "failed.json",
         suite_with(failed_json=b"{}")),
    Case("report-resampled-json-garbage", ["report", "--results", "results"], "x.json",
         suite_with(resampled=b"{not json")),
    # score
    Case("score-run-missing", ["score", "--run", "nowhere"], "nowhere"),
    Case("score-run-is-a-file", ["score", "--run", "afile"], "afile", a_file),
    Case("score-config-garbage", ["score", "--run", RUN], "config.json",
         run_with(config=b"{not json", samples=samples_npz())),
    Case("score-config-empty", ["score", "--run", RUN], "config.json", run_with(config=b"", samples=samples_npz())),
    Case("score-config-seed-a-string", ["score", "--run", RUN], "seed = 'x'",
         run_with_config("seed", "x", samples=samples_npz())),
    Case("score-config-missing-keys", ["score", "--run", RUN], "config.json",
         run_with(config=b"{}", samples=samples_npz())),
    Case("score-samples-truncated", ["score", "--run", RUN], "samples.npz",
         run_with(samples=samples_npz()[:100])),
    Case("score-samples-empty", ["score", "--run", RUN], "samples.npz", run_with(samples=b"")),
    Case("score-samples-garbage", ["score", "--run", RUN], "samples.npz", run_with(samples=b"garbage " * 20)),
    Case("score-samples-wrong-key", ["score", "--run", RUN], "samples.npz",
         run_with(samples=samples_npz(key="pictures"))),
    Case("score-samples-wrong-shape", ["score", "--run", RUN], "28", run_with(samples=samples_npz((4, 3, 32, 32)))),
    Case("score-samples-float", ["score", "--run", RUN], "uint8", run_with(samples=samples_npz(dtype=np.float32))),
    Case("score-unknown-features", ["score", "--run", RUN, "--features", "nope"], "nope", valid_samples_and()),
    Case("score-classifier-on-cifar10", ["score", "--run", RUN, "--features", "classifier"], "classifier",
         run_with(config=CIFAR_CONFIG, samples=samples_npz((4, 3, 32, 32)))),
    Case("score-device-nope", ["score", "--run", RUN, "--device", "nope"], "nope",
         valid_samples_and(fake_classifier_cache)),
    Case("score-device-cuda-without-gpu", ["score", "--run", RUN, "--device", "cuda"], "cuda",
         valid_samples_and(fake_classifier_cache)),
    Case("score-inception-weights-missing", ["score", "--run", RUN, "--features", "inception"], INCEPTION_FILE,
         valid_samples_and(), env={"SPDBENCH_INCEPTION_WEIGHTS": f"weights/{INCEPTION_FILE}"}),
    Case("score-inception-weights-empty", ["score", "--run", RUN, "--features", "inception"], INCEPTION_FILE,
         valid_samples_and(lambda root: write_bytes(root / "weights" / INCEPTION_FILE, b"")),
         env={"SPDBENCH_INCEPTION_WEIGHTS": f"weights/{INCEPTION_FILE}"}),
    # a truncated dataset archive (the CIFAR-10 cache under $SPDBENCH_DATA)
    Case("run-cifar10-archive-truncated",
         ["run", "--process", "ddpm", "--dataset", "cifar10", "--budget", "smoke", *PAPER, "--quiet"],
         "cifar-10-python.tar.gz", truncated_cifar10),
    Case("show-cifar10-archive-truncated", ["show", "--process", "ddpm", "--dataset", "cifar10", *PAPER],
         "cifar-10-python.tar.gz", truncated_cifar10),
    Case("paths-cifar10-archive-truncated", ["paths", "--dataset", "cifar10", "--spectrum", "empirical", "--size", "8"],
         "cifar-10-python.tar.gz", truncated_cifar10),
    # the suite harness
    Case("harness-unknown-suite", ["nope"], "nope", cli="harness"),
    Case("harness-results-is-a-file", ["smoke", "--results", "afile", "--quiet"], "afile",
         lambda root: (a_file(root), harness_caches(root)), cli="harness"),
]


def command_of(args: list[str]) -> str:
    """The command of an ``spdbench`` command line: the first word after the shared options (each with its value)."""
    index = 0
    while args[index].startswith("--"):
        index += 2
    return args[index]


def test_the_table_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
    commands = {command_of(case.args) for case in CASES if case.cli == "spdbench"}
    registered = {command.name or command.callback.__name__ for command in app.registered_commands}  # type: ignore[union-attr]
    assert commands == registered == {"paths", "samplers", "show", "run", "sample", "report", "score", "geometry"}
    assert any(case.cli == "harness" for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_error_line_exit_2_and_leaves_nothing(
    case: Case, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.setup is not None:
        case.setup(workdir)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    before = snapshot(workdir)
    result = invoke(case.cli, case.args)
    problems = error_line_problems(result, case.message)
    problems += disk_changes(before, snapshot(workdir))
    assert not problems, f"{'; '.join(problems)} ({outcome(result)})"


# --- hostile pickles ----------------------------------------------------------------------------


class Payload:
    """Runs ``touch MARKER`` in the working directory when unpickled."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {MARKER}",)


def raw_pickle() -> bytes:
    return pickle.dumps(Payload(), protocol=4)


def torch_save() -> bytes:
    """What ``torch.save`` writes for the payload: a zip archive whose ``data.pkl`` is the pickle."""
    buffer = io.BytesIO()
    torch.save(Payload(), buffer)
    return buffer.getvalue()


def object_npz() -> bytes:
    """An ``.npz`` whose ``images`` entry is an object array: its ``.npy`` holds the pickle."""
    buffer = io.BytesIO()
    np.savez(buffer, images=np.array([Payload(), Payload()], dtype=object))
    return buffer.getvalue()


def hostile_torchscript() -> bytes:
    """A real TorchScript archive (what clean-fid loads) whose ``data.pkl`` is the pickle."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, clean-fid still uses it
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    original = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    payload = pickle.dumps(Payload(), protocol=2)  # the protocol TorchScript reads
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in original.infolist():
            data = payload if info.filename.endswith("/data.pkl") else original.read(info.filename)
            archive.writestr(info.filename, data)
    return out.getvalue()


@dataclass(frozen=True)
class Hostile:
    """A command reading a file that holds a payload; ``expect``: ``error`` (exit 2, one error
    line, nothing left on disk), ``recomputed`` (a cache: exit 0, the file rewritten valid) or
    ``error-or-ignored`` (a log whose foreign lines are skipped: exit 0 is fine too)."""

    id: str
    args: list[str]
    setup: Callable[[Path], object]
    expect: str = "error"
    env: dict[str, str] = field(default_factory=dict)


def checkpoint_with(name: str, payload: Callable[[], bytes], process: str = "ddpm") -> Callable[[Path], object]:
    def setup(root: Path) -> None:
        replace_checkpoint_file(make_run(root, process, checkpoint=True), name, payload())

    return setup


def resumable_run_with(name: str, payload: Callable[[], bytes]) -> Callable[[Path], object]:
    """An interrupted run under ``runs/`` (its own configuration, a checkpoint) whose checkpoint
    file ``name`` holds ``payload``: ``spdbench run`` resumes from it."""

    def setup(root: Path) -> None:
        run_dir = make_run(root, directory=f"runs/{run_id()}", checkpoint=True, finished=False)
        replace_checkpoint_file(run_dir, name, payload())

    return setup


def inception_with(payload: Callable[[], bytes]) -> Callable[[Path], object]:
    def setup(root: Path) -> None:
        make_run(root, samples=samples_npz())
        write_bytes(root / "weights" / INCEPTION_FILE, payload())

    return setup


def spectrum_cache_with(payload: Callable[[], bytes]) -> Callable[[Path], object]:
    return lambda root: write_bytes(spectra.cache_path("fmnist", 28, BASES["fft"]), payload())


REPORT = ["report", "--results", "results"]
INCEPTION_ENV = {"SPDBENCH_INCEPTION_WEIGHTS": f"weights/{INCEPTION_FILE}"}
HOSTILE: list[Hostile] = [
    *(
        Hostile(f"checkpoint-{name}-{kind.__name__}", [*SAMPLE, "--nfe", "10"], checkpoint_with(name, kind))
        for name in ("model.safetensors", "ema.safetensors", "state.safetensors", "meta.json", MANIFEST)
        for kind in (raw_pickle, torch_save)
    ),
    Hostile("resumed-checkpoint-model.safetensors-raw_pickle",
            ["run", "--process", "ddpm", "--budget", "smoke", *PAPER, "--quiet"],
            resumable_run_with("model.safetensors", raw_pickle)),
    Hostile("resumed-checkpoint-meta.json-raw_pickle",
            ["run", "--process", "ddpm", "--budget", "smoke", *PAPER, "--quiet"],
            resumable_run_with("meta.json", raw_pickle)),
    Hostile("samples.npz-object-array-score", ["score", "--run", RUN], run_with(samples=object_npz())),
    Hostile("samples.npz-raw_pickle-score", ["score", "--run", RUN], run_with(samples=raw_pickle())),
    Hostile("samples.npz-object-array-report", REPORT, suite_with(samples_npz=object_npz())),
    Hostile("config.json-raw_pickle-score", ["score", "--run", RUN],
            run_with(config=raw_pickle(), samples=samples_npz())),
    Hostile("config.json-raw_pickle-sample", [*SAMPLE, "--nfe", "10"], run_with(config=raw_pickle(), checkpoint=True)),
    Hostile("config.json-raw_pickle-report", REPORT, suite_with(config_json=raw_pickle())),
    Hostile("summary.json-raw_pickle-report", REPORT, suite_with(summary_json=raw_pickle())),
    Hostile("suite.json-raw_pickle-report", REPORT, suite_with(suite_json=raw_pickle())),
    Hostile("failed.json-raw_pickle-report", REPORT, suite_with(failed_json=raw_pickle())),
    Hostile("resampled.json-raw_pickle-report", REPORT, suite_with(resampled=raw_pickle())),
    Hostile("eval.jsonl-raw_pickle-report", REPORT, suite_with(eval_jsonl=raw_pickle()), "error-or-ignored"),
    *(
        Hostile(f"inception-weights-{kind.__name__}", ["score", "--run", RUN, "--features", "inception"],
                inception_with(kind), env=INCEPTION_ENV)
        for kind in (raw_pickle, torch_save, hostile_torchscript)
    ),
    Hostile("spectrum-cache-raw_pickle", ["run", "--process", "spd", "--budget", "smoke", "--dry-run"],
            spectrum_cache_with(raw_pickle), "recomputed"),
    Hostile("spectrum-cache-torch_save", ["run", "--process", "spd", "--budget", "smoke", "--dry-run"],
            spectrum_cache_with(torch_save), "recomputed"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.id for case in HOSTILE])
def test_hostile_pickle_never_runs(case: Hostile, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case.setup(workdir)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    before = snapshot(workdir)
    result = invoke("spdbench", case.args)
    assert not (workdir / MARKER).exists(), f"the payload ran ({outcome(result)})"
    if case.expect == "recomputed":
        assert result.exit_code == 0, outcome(result)
        assert load_file(str(spectra.cache_path("fmnist", 28, BASES["fft"])))["spectrum"].dtype == torch.float64
        return
    if case.expect == "error-or-ignored" and result.exit_code == 0:
        return
    problems = error_line_problems(result) + disk_changes(before, snapshot(workdir))
    assert not problems, f"{'; '.join(problems)} ({outcome(result)})"


@pytest.mark.parametrize("which", ["weights", "record"])
def test_hostile_classifier_cache_is_never_unpickled(which: str, workdir: Path) -> None:
    """The classifier's cache with the payload in its weights (the record's SHA-256 matching it)
    or in its record is not trusted (it would be retrained) and runs nothing."""
    fake_classifier_cache(workdir)
    weights, record = cache_paths(ClassifierConfig())
    if which == "weights":
        payload = raw_pickle()
        weights.write_bytes(payload)
        values = json.loads(record.read_text()) | {"weights_sha256": hashlib.sha256(payload).hexdigest()}
        record.write_text(json.dumps(values))
    else:
        record.write_bytes(raw_pickle())
    assert read_classifier(weights, record, ClassifierConfig()) is None
    assert not (workdir / MARKER).exists()


@pytest.mark.parametrize("payload", [raw_pickle, torch_save], ids=lambda kind: kind.__name__)
def test_hostile_feature_cache_is_recomputed(payload: Callable[[], bytes], workdir: Path) -> None:
    """A reference-feature cache file holding the payload is recomputed, and runs nothing."""

    class Stub:
        name = "stub"
        weights = "stub-weights"
        calls = 0

        def features(self, images: torch.Tensor) -> torch.Tensor:
            Stub.calls += 1
            return torch.zeros(len(images), 3, dtype=torch.float64)

    path = workdir / "cache" / "features" / "stub-fmnist-test-2.safetensors"
    write_bytes(path, payload())
    values = split_features(Stub(), "fmnist", "test", 2)
    assert not (workdir / MARKER).exists()
    assert Stub.calls == 1 and values.shape == (2, 3)
    assert load_file(str(path))["features"].shape == (2, 3)
