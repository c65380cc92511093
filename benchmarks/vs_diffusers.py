"""Our U-Net and trainer against diffusers' ``UNet2DModel`` and its unconditional training example.

Three comparisons, each run alternately (ours, diffusers, ours, …) in one process, with the
median of the repetitions and the ratio ours / diffusers printed and appended to
``results/perf/vs_diffusers.csv`` with the machine, device, precision and commit:

- ``network``: one training step of the network alone on a fixed batch of DDPM-corrupted
  images (forward, MSE to the noise, backward, clipping at 1, AdamW), our ``UNet`` against a
  ``UNet2DModel`` of the identical architecture (equal parameter counts, asserted);
- ``trainer``: our whole trainer step (:func:`spdbench.train.train` on the DDPM process:
  corruption, network, loss, AdamW, clipping, EMA) against the step of diffusers' own
  unconditional training example (``examples/unconditional_image_generation``:
  ``DDPMScheduler.add_noise``, ``UNet2DModel``, MSE, AdamW, clipping, the cosine learning-rate
  schedule, ``EMAModel``, and the ``loss.item()`` it logs every step), on the same batches held
  on the device;
- ``inference``: network calls without gradients, in images per second.

diffusers is the optional ``bench`` extra (``pip install -e '.[bench]'``), never a dependency
of spdbench. Precision: ``fp32``, or ``bf16`` autocast on both sides; ``--compile`` compiles
ours only (diffusers' example does not compile).

    python -m benchmarks.vs_diffusers [--network quick] [--batch 64] [--steps 5] [--repeats 5]
        [--precision fp32] [--compile] [--threads N] [--device cpu]
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib
import io
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import corruptions
from benchmarks.timing import calls_per_second, random_images, timed_training
from models import UNet, UNetConfig, network_config
from spdbench.budgets import TrainConfig
from spdbench.data import image_shape
from spdbench.errors import OneLineArgumentParser, UserError, at_least, command_errors, one_line, parse_path
from spdbench.files import check_output_directory, write_text_atomically

CSV = Path("results/perf/vs_diffusers.csv")
COLUMNS = (
    "date", "machine", "device", "commit", "network", "batch", "precision", "compiled", "comparison",
    "repeats", "ours_images_per_s", "diffusers_images_per_s", "ratio", "diffusers_precision",
)
TRAIN_STEPS = 1000
"""The DDPM noise levels both sides train on."""


@dataclass(frozen=True)
class Setting:
    """Where and how a comparison runs.

    Attributes:
        network: a size of :func:`models.network_config` (built at ``image_shape``).
        image_shape: C×H×W of the random training images.
        batch: images per step (or per inference call).
        steps: timed steps (or calls) per repetition, after ``warm`` untimed ones.
        warm: untimed steps first (compilation, allocator, cuDNN's choice of algorithms).
        bf16: our side in bf16 autocast, else fp32.
        compile: ``torch.compile`` our network (diffusers' example does not).
        device: where both run.
        their_bf16: diffusers' side in bf16 autocast; ``None``: as ours.
    """

    network: str
    image_shape: tuple[int, int, int]
    batch: int
    steps: int
    warm: int
    bf16: bool
    compile: bool
    device: torch.device
    their_bf16: bool | None = None

    def __post_init__(self) -> None:
        """Refuse sizes no measurement can be made with."""
        for name in ("batch", "steps", "warm"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def side(self, side: str) -> Setting:
        """The setting of one side: diffusers' in its own precision and never compiled."""
        if side == "ours":
            return self
        bf16 = self.bf16 if self.their_bf16 is None else self.their_bf16
        return dataclasses.replace(self, bf16=bf16, compile=False, their_bf16=None)

    def config(self) -> UNetConfig:
        return network_config(self.network, self.image_shape[0], self.image_shape[1])


DIFFUSERS_MODULES = ("diffusers", "diffusers.optimization", "diffusers.training_utils")  #: what the comparisons import


def missing() -> str | None:
    """Why the comparisons cannot run: the first of ``DIFFUSERS_MODULES`` (diffusers, the ``bench``
    extra) that does not import, with its error on one line; ``None`` when all do."""
    for module in DIFFUSERS_MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any import failure (a missing dependency, too) is the reason
            return f"{module} does not import ({one_line(f'{type(error).__name__}: {error}')})"
    return None


def diffusers_unet(config: UNetConfig) -> nn.Module:
    """diffusers' ``UNet2DModel`` with the architecture of our ``UNet(config)``: the same levels,
    residual blocks, attention resolutions and heads, GroupNorm groups, dropout, time embedding
    width and time conditioning (added, or scale-shift).

    Raises:
        UserError: the configuration has attention at levels of different widths (diffusers sets
            one head width for all).
        AssertionError: the two parameter counts differ.
    """
    from diffusers import UNet2DModel

    attention = [size in config.attention_resolutions for size in config.resolutions]
    channels = tuple(config.base_channels * mult for mult in config.channel_mult)
    # diffusers sets one head width for every attention block: ours has num_heads everywhere, so
    # the two agree only where every attention level (the middle's too) has the last level's width.
    if any(c != channels[-1] for c, a in zip(channels, attention) if a):
        raise UserError(f"diffusers cannot build {config}: its attention levels differ in width")
    net = UNet2DModel(
        sample_size=config.image_size,
        in_channels=config.in_channels,
        out_channels=config.in_channels,
        block_out_channels=channels,
        layers_per_block=config.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        attention_head_dim=channels[-1] // config.num_heads,
        norm_num_groups=config.norm_groups,
        dropout=config.dropout,
        resnet_time_scale_shift="scale_shift" if config.scale_shift_norm else "default",
    )
    ours = sum(p.numel() for p in UNet(config).parameters())
    theirs = sum(p.numel() for p in net.parameters())
    assert ours == theirs, f"parameter counts differ: ours {ours:,}, diffusers {theirs:,}"
    return net


def timed(setting: Setting, step: Callable[[], object]) -> float:
    """Images per second of ``step`` over ``setting.steps`` calls after ``setting.warm`` calls."""
    return setting.batch * calls_per_second(setting.device, step, setting.steps, setting.warm)


def network_rate(setting: Setting, side: str) -> float:
    """Images per second of one training step of the network alone (``side``: ``ours`` or
    ``diffusers``) on a fixed batch of DDPM-corrupted images."""
    torch.manual_seed(0)
    config = setting.config()
    net = (UNet(config) if side == "ours" else diffusers_unet(config)).to(setting.device)
    call = _network_call(net, side, setting)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x0 = random_images(setting.image_shape, setting.batch).to(setting.device)
    noise = torch.randn_like(x0)
    levels = torch.randint(0, TRAIN_STEPS, (setting.batch,), device=setting.device)
    alpha_bar = _alpha_bar(setting.device)[levels][:, None, None, None]
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def step() -> None:
        with torch.autocast(setting.device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            out = call(x_t, levels)
        loss = F.mse_loss(out.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()

    return timed(setting, step)


def inference_rate(setting: Setting, side: str) -> float:
    """Images per second of network calls without gradients at ``setting.batch``."""
    torch.manual_seed(0)
    net = (UNet(setting.config()) if side == "ours" else diffusers_unet(setting.config())).to(setting.device).eval()
    call = _network_call(net, side, setting)
    x = torch.randn(setting.batch, *setting.image_shape, device=setting.device)
    levels = torch.full((setting.batch,), TRAIN_STEPS // 2, device=setting.device)

    def step() -> None:
        with torch.no_grad(), torch.autocast(setting.device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            call(x, levels)

    return timed(setting, step)


def trainer_rate(setting: Setting, side: str) -> float:
    """Images per second of a whole training step: ours through :func:`spdbench.train.train`
    on the DDPM process, or diffusers' unconditional training example."""
    torch.manual_seed(0)
    images = random_images(setting.image_shape, 4 * setting.batch)
    if side == "diffusers":
        return timed(setting, _diffusers_example_step(setting, images.to(setting.device)))
    config = TrainConfig(
        train_steps=setting.warm + setting.steps + 1, batch=setting.batch, warmup=0, bf16=setting.bf16,
        compile=setting.compile,
    )
    process = corruptions.make_process("ddpm", setting.image_shape)
    net = UNet(setting.config())
    return timed_training(process, net, images, config, setting.device, setting.warm).images_per_s


def _diffusers_example_step(setting: Setting, images: Tensor) -> Callable[[], float]:
    """One step of diffusers' ``train_unconditional.py`` at its defaults (AdamW with betas
    (0.95, 0.999), weight decay 1e-6, ε 1e-8; cosine schedule with 500 warm-up steps; EMA with
    warm-up, inverse γ 1 and power ¾; ε-prediction; clipping at 1), with bf16 autocast in place
    of ``accelerate``'s mixed precision. The ``loss.item()`` the example logs every step (a wait
    for the device) is part of its step; its ``EMAModel`` updates parameter by parameter (its
    default, ``foreach=False``)."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    model = diffusers_unet(setting.config()).to(setting.device)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    ema.to(setting.device)
    scheduler = DDPMScheduler(num_train_timesteps=TRAIN_STEPS, beta_schedule="linear")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=500, num_training_steps=10_000)
    batches = images.split(setting.batch)
    position = [0]

    def step() -> float:
        clean = batches[position[0] % len(batches)]
        position[0] += 1
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, TRAIN_STEPS, (len(clean),), device=clean.device).long()
        noisy = scheduler.add_noise(clean, noise, timesteps)
        with torch.autocast(setting.device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            output = model(noisy, timesteps).sample
        loss = F.mse_loss(output.float(), noise.float())
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        ema.step(model.parameters())
        return loss.detach().item()

    return step


def _network_call(net: nn.Module, side: str, setting: Setting) -> Callable[[Tensor, Tensor], Tensor]:
    """``(x_t, level) ↦`` output: ours takes the level as a fraction of the path (compiled if
    asked), diffusers' the integer level."""
    if side == "diffusers":
        return lambda x, levels: net(x, levels).sample
    model = torch.compile(net) if setting.compile else net
    return lambda x, levels: model(x, levels.float() / TRAIN_STEPS)


def _alpha_bar(device: torch.device) -> Tensor:
    """DDPM's ᾱ over the 1000 levels of the linear β schedule 1e-4 … 0.02."""
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, TRAIN_STEPS, device=device), 0)


COMPARISONS: dict[str, Callable[[Setting, str], float]] = {
    "network": network_rate,
    "trainer": trainer_rate,
    "inference": inference_rate,
}


@dataclass(frozen=True)
class Result:
    """The medians of one comparison's alternating repetitions."""

    comparison: str
    setting: Setting
    repeats: int
    ours: float
    diffusers: float

    @property
    def ratio(self) -> float:
        return self.ours / self.diffusers


def compare(comparison: str, setting: Setting, repeats: int) -> Result:
    """Run ``comparison`` ``repeats`` times on each side, alternating, and take the medians."""
    if comparison not in COMPARISONS:
        raise UserError(f"unknown comparison {comparison!r}; valid: {', '.join(COMPARISONS)}")
    if repeats < 1:
        raise UserError(f"repeats must be at least 1, got {repeats}")
    rates: dict[str, list[float]] = {"ours": [], "diffusers": []}
    for _ in range(repeats):
        for side in rates:
            rates[side].append(COMPARISONS[comparison](setting.side(side), side))
    return Result(comparison, setting, repeats, statistics.median(rates["ours"]), statistics.median(rates["diffusers"]))


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def machine() -> str:
    """The host: architecture and cores."""
    return f"{platform.machine()}, {torch.get_num_threads()} threads of {os.cpu_count()} cores"


def commit() -> str:
    """The checked-out commit (with ``+changes`` when the tree differs), or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def recorded_rows(path: Path) -> str:
    """The text of the record ``path`` (``""`` when it is new), refused before anything is measured
    when it is not one: a file whose header is not ``COLUMNS`` or whose last row is torn, or a
    directory that cannot be written."""
    check_output_directory(path.parent)
    if not path.exists():
        return ""
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    with path.open(encoding="utf-8", errors="replace", newline="") as file:  # its CSV line ends as they are
        text = file.read()
    if text.split("\n", 1)[0].rstrip("\r") != ",".join(COLUMNS) or not text.endswith("\n"):
        raise UserError(f"{path} is not a vs_diffusers record: another header, or a torn last row")
    return text


def append_rows(results: list[Result], path: Path = CSV, at_commit: str | None = None) -> None:
    """Append one CSV row per result (the header first if the file is new), with ``at_commit``
    (default: git's); the file is rewritten atomically (``recorded_rows`` checks it first)."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    at_commit = at_commit or commit()
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    text = recorded_rows(path)
    if not text:
        writer.writerow(COLUMNS)
    for r in results:
        s = r.setting
        writer.writerow([
            when, machine(), device_name(s.device), at_commit, s.network, s.batch, s.precision, s.compile,
            r.comparison, r.repeats, f"{r.ours:.2f}", f"{r.diffusers:.2f}", f"{r.ratio:.3f}",
            s.side("diffusers").precision,
        ])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, text + buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    """Measure, print and append (see the module docstring)."""
    parser = OneLineArgumentParser(prog="benchmarks.vs_diffusers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="quick", choices=["quick", "ddpm-cifar"])
    parser.add_argument("--batch", type=at_least(1), default=64)
    parser.add_argument("--steps", type=at_least(1), default=5, help="timed steps per repetition")
    parser.add_argument("--warm", type=at_least(0), default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="ours, and diffusers' by default")
    parser.add_argument("--their-precision", default=None, choices=["fp32", "bf16"], help="diffusers' side")
    parser.add_argument("--compile", action="store_true", help="torch.compile our network")
    parser.add_argument("--comparisons", default=",".join(COMPARISONS), help="comma-separated")
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--csv", type=parse_path, default=CSV)
    parser.add_argument("--commit", default=None, help="the commit to record (default: git's; for a copied tree)")
    args = parser.parse_args(argv)
    with command_errors("benchmarks.vs_diffusers"):
        reason = missing()
        if reason is not None:
            raise UserError(f"{reason}: pip install -e '.[bench]'")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("no CUDA device is visible; use --device cpu")
        comparisons = args.comparisons.split(",")
        unknown = [name for name in comparisons if name not in COMPARISONS]
        if unknown:
            raise UserError(f"unknown comparison {unknown[0]!r}; valid: {', '.join(COMPARISONS)}")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        shape = image_shape("cifar10" if args.network == "ddpm-cifar" else "fmnist")
        theirs = None if args.their_precision is None else args.their_precision == "bf16"
        setting = Setting(args.network, shape, args.batch, args.steps, args.warm, args.precision == "bf16",
                          args.compile, torch.device(args.device), theirs)
        recorded_rows(args.csv)
        at_commit = args.commit or commit()
        print(f"{machine()}, {device_name(setting.device)}; torch {torch.__version__}; commit {at_commit}")
        results = []
        for comparison in comparisons:
            result = compare(comparison, setting, args.repeats)
            results.append(result)
            print(f"{comparison:<10} {setting.network} batch {setting.batch}: ours {setting.precision}"
                  f"{' compiled' if setting.compile else ''} {result.ours:8.1f} images/s, diffusers "
                  f"{setting.side('diffusers').precision} {result.diffusers:8.1f} images/s, ratio {result.ratio:.3f} "
                  f"(median of {args.repeats})")
        append_rows(results, args.csv, at_commit)
        print(f"appended to {args.csv}")


if __name__ == "__main__":
    main()
