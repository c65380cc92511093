"""The performance checks run before any GPU sees them: the GPU self-check at toy sizes on the
CPU, and the comparison with diffusers on a network of the identical architecture."""

from __future__ import annotations

import ast
import csv
import json
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check, train_speed, vs_diffusers
from corruptions import PROCESSES
from models import UNet, network_config
from spdbench.errors import UserError

CPU = torch.device("cpu")


def test_the_gpu_check_runs_at_toy_sizes_on_the_cpu(tmp_path: Path) -> None:
    """Every process trains in every mode and samples; a step is profiled; ours is timed against
    diffusers' example in each pairing; two gloo ranks end with identical weights, those of one
    process trained at the same global batch up to rounding; the page is generated from the
    record."""
    pytest.importorskip("diffusers")
    gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--commit", "abc1234"])
    record = json.loads((tmp_path / "gpu-cpu.json").read_text())
    assert record["failed"] == [] and record["skipped"] == []
    modes = [mode.name for mode in gpu_check.TOY.modes]
    assert [(r["process"], r["mode"]) for r in record["training"]] == [(p, m) for p in PROCESSES for m in modes]
    assert all(r["images_per_s"] > 0 and 0 < r["mfu"] for r in record["training"])
    assert [s["process"] for s in record["sampling"]] == list(PROCESSES)
    assert all(s["nfe"] == gpu_check.TOY.nfe and 0 <= s["outside_share"] < 1 for s in record["sampling"])
    assert [(c["ours"], c["theirs"], c["repeats"]) for c in record["comparisons"]] == [
        (ours.name, theirs.name, gpu_check.TOY.compare_repeats) for ours, theirs in gpu_check.TOY.comparisons
    ]
    assert all(c["ours_images_per_s"] > 0 and c["theirs_images_per_s"] > 0 for c in record["comparisons"])
    assert record["distributed"] == {**record["distributed"], "ok": True, "ranks": 2, "backend": "gloo",
                                     "identical": True}
    assert 0 < record["distributed"]["single_process_distance"] < 1e-5
    profile = record["profile"]
    assert profile["process"] == "ddpm" and profile["steps"] == gpu_check.TOY.profile_steps
    assert profile["wall_ms"] > 0 and profile["device_ms"] is None and len(profile["top"]) == 5
    assert all(ms > 0 for _, ms in profile["top"])
    page = (tmp_path / "gpu-cpu.md").read_text()
    assert page == gpu_check.page(record) and "commit `abc1234`" in page
    assert "the weights of every rank identical" in page


@pytest.mark.parametrize(
    "main, argv, message",
    [
        (gpu_check.main, ["--device", "tpu"], "argument --device: invalid choice"),
        (gpu_check.main, ["--limit-s", "soon"], "argument --limit-s: 'soon' is not a number"),
        (gpu_check.main, ["--limit-s", "-5"], "argument --limit-s: must be at least 1, got -5"),
        (gpu_check.main, ["--limit-s", "nan"], "argument --limit-s: must be at least 1, got nan"),
        (gpu_check.main, ["--limit-s", "inf"], "argument --limit-s: must be at least 1, got inf"),
        (vs_diffusers.main, ["--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (vs_diffusers.main, ["--comparisons", "network,speed"], "unknown comparison 'speed'"),
        (vs_diffusers.main, ["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (vs_diffusers.main, ["--threads", "-1"], "argument --threads: must be at least 1, got -1"),
        (vs_diffusers.main, ["--csv", "results"], "results is not a file"),
        (vs_diffusers.main, ["--csv", ""], "argument --csv: an empty path"),
        (gpu_check.main, ["--out", ""], "argument --out: an empty path"),
        (train_speed.main, ["--steps", "0"], "argument --steps: must be at least 2, got 0"),
        (train_speed.main, ["--steps", "abc"], "argument --steps: 'abc' is not an integer"),
        (train_speed.main, ["--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (train_speed.main, ["--device", "tpu"], "argument --device: invalid choice"),
        (train_speed.main, ["--steps", "3", "--warm", "2"], "--steps must exceed --warm by at least 2"),
        (train_speed.main, ["--variants", "eager-fp64"], "unknown variant 'eager-fp64'"),
    ],
)
def test_bad_input_to_the_performance_checks_is_one_line_and_exit_2(
    main, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_gpu_check_without_a_gpu_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--device", "cuda"])
    assert stopped.value.code == 2 and capsys.readouterr().err.startswith("error: no CUDA device")


@pytest.mark.parametrize("size, shape", [("quick", (1, 28)), ("ddpm-cifar", (3, 32))])
def test_diffusers_builds_the_identical_network(size: str, shape: tuple[int, int]) -> None:
    pytest.importorskip("diffusers")
    config = network_config(size, *shape)
    theirs = vs_diffusers.diffusers_unet(config)
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in UNet(config).parameters())


def test_the_comparison_alternates_and_appends_one_row_per_measurement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each side runs ``repeats`` times, alternately, in its own precision (diffusers' never
    compiled); the medians are compared; each comparison is one CSV row."""
    pytest.importorskip("diffusers")
    setting = vs_diffusers.Setting("smoke", (1, 28, 28), 4, 1, 1, True, False, CPU, their_bf16=False)
    calls: list[tuple[str, bool, bool]] = []
    measure = vs_diffusers.COMPARISONS["inference"]

    def recorded(s: vs_diffusers.Setting, side: str) -> float:
        calls.append((side, s.bf16, s.compile))
        return measure(s, side)

    monkeypatch.setitem(vs_diffusers.COMPARISONS, "inference", recorded)
    result = vs_diffusers.compare("inference", setting, repeats=3)
    assert calls == [("ours", True, False), ("diffusers", False, False)] * 3
    assert result.ours > 0 and result.diffusers > 0
    results = [vs_diffusers.compare(name, setting, repeats=1) for name in vs_diffusers.COMPARISONS]
    path = tmp_path / "perf" / "vs_diffusers.csv"
    vs_diffusers.append_rows(results[:1], path)
    vs_diffusers.append_rows(results[1:], path)
    rows = list(csv.DictReader(path.open()))
    assert [row["comparison"] for row in rows] == list(vs_diffusers.COMPARISONS)
    assert all(row["network"] == "smoke" and row["repeats"] == "1" for row in rows)
    assert all(row["precision"] == "bf16" and row["diffusers_precision"] == "fp32" for row in rows)
    written = path.read_bytes()
    assert written.count(b"\n") == written.count(b"\r\n") == 1 + len(rows)  # the csv module's line ends, kept
    path.write_bytes(written[:-5])  # a torn last row: refused, and left as it is
    with pytest.raises(UserError, match="not a vs_diffusers record"):
        vs_diffusers.append_rows(results[:1], path)
    assert path.read_bytes() == written[:-5]


def test_the_readme_quotes_the_committed_gpu_check() -> None:
    """The README's digest of the GPU check is the one ``summary_table`` makes from the committed
    ``results/perf/gpu-nvidia-h200.json`` (regenerate it after ``make gpu-check``), and the numbers
    and claims its prose and benchmarks/README.md draw from it are the record's."""
    root = Path(__file__).parents[1]
    record = json.loads((root / "results" / "perf" / "gpu-nvidia-h200.json").read_text())
    readme = (root / "README.md").read_text()
    assert gpu_check.summary_table(record) in readme
    assert (root / "results" / "perf" / "gpu-nvidia-h200.md").read_text() == gpu_check.page(record)
    flat = " ".join(readme.split())  # the prose, whatever its line breaks
    benchmarks = " ".join((root / "benchmarks" / "README.md").read_text().split())
    network, batch = record["network"], record["network"]["batch"]
    bf16_tflops = record["environment"]["bf16_flops"] / 1e12
    assert f"it took {record['seconds']:.0f} s" in flat

    assert min(c["ratio"] for c in record["comparisons"]) >= 1.3  # "Both targets of the check are met"
    assert max(s["outside_share"] for s in record["sampling"]) <= 0.10
    ours_bf16 = sorted(c["ours_images_per_s"] for c in record["comparisons"] if c["ours"] == "bf16 + compile")
    assert f"for ours in bf16 + compile ({' and '.join(f'{r:,.0f}' for r in ours_bf16)} images/s)" in flat
    outside = max(s["outside_share"] for s in record["sampling"])
    assert f"Sampling spends at most {100 * outside:.1f} % of its time outside the network" in flat
    ratios = [f"{c['ratio']:.2f}×" for c in record["comparisons"]]
    assert (
        f"ours in bf16 + compile is {ratios[0]} the example in bf16 and {ratios[1]} the example in fp32 "
        f"(its faster precision at this batch), and ours in fp32 is {ratios[2]} the example in fp32" in benchmarks
    )

    compiled = [r for r in record["training"] if r["mode"] == "bf16 + compile"]
    assert [r["process"] for r in compiled] == ["ddpm", "heat", "blurring", "spd"]
    ddpm, spd = compiled[0], compiled[-1]
    step_ms = 1000 * batch / ddpm["images_per_s"]
    profile = record["profile"]
    assert (profile["process"], profile["mode"]) == ("ddpm", ddpm["mode"])
    assert f"took {profile['wall_ms']:.1f} ms, of which the GPU's kernels took {profile['device_ms']:.1f} ms" in flat
    assert f"takes {step_ms:.1f} ms (batch {batch} at {ddpm['images_per_s']:,.0f} images/s)" in flat
    assert f"idle for at least about {100 - 100 * profile['device_ms'] / step_ms:.0f} % of it" in flat
    arithmetic_ms = 1000 * network["training_flops_per_image"] * batch / (bf16_tflops * 1e12)
    assert f"would take about {arithmetic_ms:.0f} ms at the bf16 rate measured in the same run " in flat
    assert f"({bf16_tflops:.0f} TFLOP/s)" in flat
    assert (
        f"kernels take {profile['device_ms']:.1f} ms of the {step_ms:.1f} ms an unprofiled step takes, and the "
        f"step's counted arithmetic would take about {arithmetic_ms:.0f} ms" in benchmarks
    )
    assert f"at {bf16_tflops:.0f} TFLOP/s)" in benchmarks
    assert all("nchwToNhwc" in kernel or "nhwcToNchw" in kernel for kernel, _ in profile["top"][:2])
    transposes = sum(ms for _, ms in profile["top"][:2])
    assert f"The two heaviest kernels ({transposes:.1f} ms a step) are cuDNN's layout transposes" in flat
    slowest_ms = 1000 * batch / spd["images_per_s"]
    assert (
        f"from DDPM's {ddpm['images_per_s']:,.0f} images/s ({step_ms:.1f} ms a step) "
        f"to SPD's {spd['images_per_s']:,.0f} ({slowest_ms:.1f} ms)" in flat
    )

    tflops = [r["images_per_s"] * network["training_flops_per_image"] / 1e12 for r in (spd, ddpm)]
    sampled = next(s for s in record["sampling"] if s["process"] == "ddpm")
    sampling = sampled["images_per_s"] * sampled["nfe"] * network["call_flops_per_image"] / 1e12
    assert (
        f"the compiled rows trained at {spd['images_per_s']:,.0f} to {ddpm['images_per_s']:,.0f} images/s "
        f"({tflops[0]:.0f} to {tflops[1]:.0f} TFLOP/s of the network's counted FLOPs) and DDPM sampled at "
        f"{sampled['images_per_s']:.0f} images/s at {sampled['nfe']} NFE ({sampling:.0f} TFLOP/s), all above" in flat
    )
    assert min(r["images_per_s"] for r in compiled) == spd["images_per_s"]


def test_the_readme_quotes_the_committed_train_speed_runs_on_the_gpu() -> None:
    """The README's channels-last sentence gives the last two compiled bf16 runs of
    ``results/perf/train_speed-h200.txt`` (the file is appended to: its newest runs come last), one
    in each order, and its bound on what drawing the times and corrupting a batch take is that
    file's largest."""
    root = Path(__file__).parents[1]
    text = (root / "results" / "perf" / "train_speed-h200.txt").read_text()
    flat = " ".join((root / "README.md").read_text().split())
    names = "|".join(PROCESSES)
    corruption_ms = [float(ms) for ms in re.findall(rf"^  (?:{names}) +([0-9.]+) ms", text, flags=re.MULTILINE)]
    assert f"corrupting the batch, takes at most {max(corruption_ms):.1f} ms" in flat
    rows = re.findall(r"^  (compiled-bf16(?:-cl)?) +([0-9.]+) images/s", text, flags=re.MULTILINE)[-4:]
    assert [name for name, _ in rows] == ["compiled-bf16-cl", "compiled-bf16", "compiled-bf16", "compiled-bf16-cl"]
    first_cl, first, second, second_cl = (float(rate) for _, rate in rows)

    def change(new: float, old: float) -> str:
        return f"{100 * (new / old - 1):+.0f} %".replace("-", "−")

    sentence = (
        f"compiled bf16 with it ran at {first_cl:,.0f} images/s against {first:,.0f} without "
        f"({change(first_cl, first)}), then at {second_cl:,.0f} against {second:,.0f} ({change(second_cl, second)})"
    )
    assert sentence in flat
    assert f"Single runs of one variant differ by {100 * abs(second / first - 1):.0f} %" in flat


def test_a_failed_measurement_is_recorded_and_the_check_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A measurement that raises is written into the record and the page with its error, the
    others still run, and the command ends with one line and exit 1."""

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise RuntimeError("boom")

    for name in ("training", "step_profile", "distributed"):
        monkeypatch.setattr(gpu_check, name, broken)
    monkeypatch.setattr(vs_diffusers, "missing", lambda: "diffusers does not import")
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "gpu-cpu.json").read_text())
    modes = len(gpu_check.TOY.modes)
    assert len(record["failed"]) == len(PROCESSES) * modes + 2
    assert all(line.endswith("RuntimeError: boom") for line in record["failed"])
    assert "## Failed" in (tmp_path / "gpu-cpu.md").read_text()
    assert any("diffusers does not import" in line for line in record["skipped"])
    assert stopped.value.code == 1 and capsys.readouterr().err.startswith("error: ")


def test_the_comparisons_start_only_when_every_diffusers_module_they_use_imports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``missing`` imports each of ``DIFFUSERS_MODULES``, which holds every diffusers module the
    comparisons import (a partial install skips them with its reason instead of failing each)."""
    source = Path(vs_diffusers.__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "diffusers"}
    assert imported == set(vs_diffusers.DIFFUSERS_MODULES)
    pytest.importorskip("diffusers")
    assert vs_diffusers.missing() is None
    monkeypatch.setattr(vs_diffusers, "DIFFUSERS_MODULES", (*vs_diffusers.DIFFUSERS_MODULES, "diffusers.absent"))
    assert (vs_diffusers.missing() or "").startswith("diffusers.absent does not import (ModuleNotFoundError: ")


@pytest.mark.parametrize("fails_at", ["warm", "before"])
def test_a_step_that_fails_while_profiled_stops_the_profiler(monkeypatch: pytest.MonkeyPatch, fails_at: str) -> None:
    """The profile's training fails after the profiler started (at the warm step's mark, in its
    synchronisation): the profiler is stopped, so the measurements after it are not timed under
    tracing; it fails before then: the profiler, never started, is not stopped."""
    calls: list[str] = []

    class Profiler:
        def __init__(self, **options: object) -> None:
            pass

        def start(self) -> None:
            calls.append("start")

        def stop(self) -> None:
            calls.append("stop")

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    def failing(process: object, net: UNet, images: object, config: object, run_dir: object, mark, **options: object):
        if fails_at == "before":
            boom()
        mark(gpu_check.TrainState(step=gpu_check.TOY.warm, net=net, ema=None, rank=0))  # type: ignore[arg-type]

    monkeypatch.setattr(gpu_check.torch.profiler, "profile", Profiler)
    monkeypatch.setattr(gpu_check, "synchronize", boom)
    monkeypatch.setattr(gpu_check, "train", failing)
    run = gpu_check.resolve("ddpm", gpu_check.TOY)
    images = torch.zeros(4, *run.process.image_shape)
    with pytest.raises(RuntimeError, match="boom"):
        gpu_check.step_profile(run, gpu_check.TOY, images, torch.device("cpu"))
    assert calls == ([] if fails_at == "before" else ["start", "stop"])


def test_sampling_that_fails_returns_the_network_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampled network goes back to the CPU whatever happens, freeing the device's memory for
    the measurements after it."""
    run = gpu_check.resolve("ddpm", gpu_check.TOY)
    net = UNet(network_config(run.network, *run.process.image_shape[:2]))
    moved: list[str] = []
    monkeypatch.setattr(net, "cpu", lambda: moved.append("cpu") or net)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gpu_check, "generate", boom)
    with pytest.raises(RuntimeError, match="boom"):
        gpu_check.sampling(run, net, gpu_check.TOY, torch.zeros(4, *run.process.image_shape), torch.device("cpu"))
    assert moved == ["cpu"]


def test_a_stopped_torchrun_leaves_no_worker_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The distributed run's time limit stops torchrun and its workers, which run in sessions of
    their own (out of reach of a signal to torchrun's group)."""
    marker = f"spdbench-stop-{tmp_path.name}"
    monkeypatch.setenv("SPDBENCH_STOP_MARKER", marker)
    script = tmp_path / "sleeps.py"
    script.write_text("import time\ntime.sleep(600)\n")  # far longer than the test waits for them to go
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    launched = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers() -> list[str]:
        """The processes started from this test's command other than torchrun itself."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                marked = marker.encode() in (entry / "environ").read_bytes()
                line = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if marked and entry.name != str(launched.pid) and str(script).encode() in line:
                found.append(entry.name)
        return found

    deadline = time.monotonic() + 60
    while len(workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers()) == 2, "torchrun did not start its two workers within a minute"
    gpu_check.stop(launched)
    assert launched.returncode is not None
    deadline = time.monotonic() + 120  # a guard against a slow machine, not a speed: left alone, they sleep on
    while workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers() == []


def test_workers_a_stuck_torchrun_leaves_are_killed(tmp_path: Path) -> None:
    """A launcher that ignores SIGTERM is killed after its grace, and the workers it started go
    with it instead of sleeping on: one in a session of its own (as torchrun starts them), one in
    the launcher's."""
    script = tmp_path / "stuck.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "for own_session in (True, False):\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=own_session)\n"
        "time.sleep(600)\n"
    )
    launched = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while len(gpu_check.children(launched.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = list(gpu_check.children(launched.pid))
    assert len(workers) == 2, "the launcher did not start its two workers within a minute"
    gpu_check.stop(launched, grace=1.0)
    assert launched.returncode == -9  # SIGTERM was ignored: killed

    def alive(pid: int) -> bool:
        fields = gpu_check.process_fields(pid)
        return fields is not None and fields[0] != "Z"  # a zombie has ended

    deadline = time.monotonic() + 30
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers))


def test_a_cuda_profile_counts_each_kernel_once() -> None:
    """On CUDA the profile's device time is the kernels' own: not again through the operator that
    launched one, nor through a user annotation spanning a pass."""
    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    def event(key: str, device: torch.autograd.DeviceType, device_us: float, annotation: bool = False) -> object:
        return types.SimpleNamespace(key=key, device_type=device, is_user_annotation=annotation,
                                     self_device_time_total=device_us, self_cpu_time_total=7.0)

    events = [
        event("aten::convolution", cpu, 1000.0),  # its kernel's time, carried by the launching operator
        event("## Call CompiledFxGraph ##", cuda, 3000.0, annotation=True),
        event("sm90_xmma_fprop", cuda, 1000.0),
        event("triton_poi_fused", cuda, 500.0),
    ]
    shares = gpu_check.time_shares(events, cuda=True, steps=10)
    assert shares == {"device_ms": pytest.approx(0.15), "top": [["sm90_xmma_fprop", 0.1], ["triton_poi_fused", 0.05]]}
    assert gpu_check.time_shares(events, cuda=False, steps=10)["device_ms"] is None


def test_the_distributed_run_trains_as_it_would_on_a_gpu_in_fp32_uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each torchrun worker is a fresh process: compiling there would cost a minute per run, so
    the ranks train in fp32 without compilation, on CUDA too (where the budget compiles)."""
    configs = []
    monkeypatch.setattr(gpu_check, "train", lambda process, net, images, config, *rest, **named: configs.append(config))
    gpu_check.rank_training(gpu_check.FULL, CPU, world=1, seed=0)
    on_cuda = configs[0].resolved(torch.device("cuda"))
    assert (on_cuda.bf16, on_cuda.compile) == (False, False)
