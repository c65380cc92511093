"""The U-Net every process trains: the DDPM / guided-diffusion architecture, time-conditioned.

The network is called as ``net(x, t)`` with ``x`` of shape N×C×H×W and ``t`` a float tensor of
shape (N,) holding the fraction of the diffusion path in [0, 1]; it returns a tensor shaped like
``x``. What the output means (noise, clean image, velocity) is the business of the process.

Layout, as in Ho et al. (2020) and guided-diffusion's ``UNetModel``:

- time embedding: sinusoidal embedding of ``t * TIME_SCALE`` with ``base_channels`` features,
  then linear → SiLU → linear to ``4 * base_channels``;
- encoder: an input 3×3 conv, then per level ``num_res_blocks`` residual blocks (each followed
  by self-attention at the chosen resolutions) and, except at the last level, a stride-2 conv;
  every one of these outputs is kept as a skip connection;
- middle: residual block, self-attention, residual block;
- decoder: per level ``num_res_blocks + 1`` residual blocks, each taking the concatenation with
  one skip connection (and followed by attention at the chosen resolutions), then, except at the
  top level, nearest-neighbour upsampling and a 3×3 conv;
- output: GroupNorm → SiLU → 3×3 conv back to ``in_channels``.

The last layer of every residual branch (second conv of a residual block, output projection of
an attention block) and the output conv are zero-initialised, as in both reference
implementations: at initialisation the network outputs zeros and each block is the identity.

The Python control flow depends only on the configuration (plus one check of the input shape),
so the network runs under ``torch.compile``, bf16 autocast and with channels_last inputs.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TIME_SCALE = 1000.0
"""``t`` in [0, 1] is multiplied by this before the sinusoidal embedding, so the embedding sees
the same range as a 1000-step discrete-time model."""

MAX_PERIOD = 10000.0
"""Longest period of the sinusoidal time embedding."""


@dataclass(frozen=True)
class UNetConfig:
    """Every hyper-parameter of a :class:`UNet`.

    Attributes:
        in_channels: channels of the images (and of the output).
        image_size: height and width of the (square) images the network takes.
        base_channels: channels at the first level; level ``i`` has
            ``base_channels * channel_mult[i]``; the time embedding has ``4 * base_channels``.
        channel_mult: channel multiplier per level; the image is halved between levels.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_resolutions: image sizes (in pixels, e.g. 16 for 16×16 feature maps) at which
            each residual block is followed by self-attention. The middle block always has it.
        num_heads: attention heads (DDPM: 1, guided-diffusion: 4).
        dropout: dropout rate inside the residual blocks.
        scale_shift_norm: condition the residual blocks on time by ``norm(h) * (1 + scale) + shift``
            (guided-diffusion) instead of adding a projection of the embedding before the norm (DDPM).
        norm_groups: groups of every GroupNorm; it must divide every channel count.
    """

    in_channels: int
    image_size: int
    base_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    num_heads: int
    dropout: float
    scale_shift_norm: bool
    norm_groups: int = 32

    def __post_init__(self) -> None:
        """Reject combinations the network cannot be built from, with a message that says why."""
        positive = {
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "base_channels": self.base_channels,
            "num_res_blocks": self.num_res_blocks,
            "num_heads": self.num_heads,
            "norm_groups": self.norm_groups,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"UNetConfig.{name} must be at least 1, got {value}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNetConfig.channel_mult must be positive integers, got {self.channel_mult}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.base_channels % 2:
            raise ValueError(
                f"UNetConfig.base_channels must be even (sinusoidal embedding), got {self.base_channels}"
            )
        factor = 2 ** (len(self.channel_mult) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image size {self.image_size} must be divisible by 2**(levels - 1) = {factor} "
                f"for {len(self.channel_mult)} levels (channel_mult {self.channel_mult})"
            )
        unknown = sorted(set(self.attention_resolutions) - set(self.resolutions))
        if unknown:
            raise ValueError(
                f"attention resolutions {unknown} are not among this network's resolutions {self.resolutions}"
            )
        for mult in self.channel_mult:
            channels = self.base_channels * mult
            if channels % self.norm_groups or channels % self.num_heads:
                raise ValueError(
                    f"{channels} channels (base_channels {self.base_channels} × {mult}) must be divisible "
                    f"by norm_groups ({self.norm_groups}) and num_heads ({self.num_heads})"
                )

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map size at each level, from the image size down."""
        return tuple(self.image_size // 2**level for level in range(len(self.channel_mult)))


def _zero(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero and return it."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (N, dim) of times ``t`` (N,) in [0, 1], computed in float32.

    Frequencies are geometric from 1 down to about ``1 / MAX_PERIOD``; the first half of the
    features are cosines, the second half sines.
    """
    half = dim // 2
    exponents = torch.arange(half, device=t.device, dtype=torch.float32) / half
    frequencies = torch.exp(-math.log(MAX_PERIOD) * exponents)
    angles = (t.float() * TIME_SCALE)[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv3x3 → time conditioning → GroupNorm → SiLU → dropout → conv3x3,
    added to the input (through a 1×1 conv when the channel count changes)."""

    def __init__(
        self, in_channels: int, out_channels: int, emb_channels: int, config: UNetConfig
    ) -> None:
        super().__init__()
        self.scale_shift_norm = config.scale_shift_norm
        self.norm1 = nn.GroupNorm(config.norm_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        emb_out = 2 * out_channels if config.scale_shift_norm else out_channels
        self.emb_proj = nn.Linear(emb_channels, emb_out)
        self.norm2 = nn.GroupNorm(config.norm_groups, out_channels)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply the block to ``x`` (N, in, H, W) conditioned on the time embedding ``emb`` (N, E)."""
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all pixels: GroupNorm → 1×1 qkv → attention → 1×1 projection,
    added to the input."""

    def __init__(self, channels: int, config: UNetConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.norm = nn.GroupNorm(config.norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` (N, C, H, W)."""
        n, c, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.num_heads, c // self.num_heads, height * width)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # each (N, heads, H*W, C/heads)
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(-1, -2).reshape(n, c, height, width)
        return x + self.proj(h)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Double the height and width of ``x``."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimeBlock(nn.Module):
    """A residual block, then self-attention when the level has it."""

    def __init__(
        self, in_channels: int, out_channels: int, emb_channels: int, attention: bool, config: UNetConfig
    ) -> None:
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_channels, config)
        self.attn = AttentionBlock(out_channels, config) if attention else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply the residual block conditioned on ``emb``, then the attention."""
        return self.attn(self.res(x, emb))


class Level(nn.Module):
    """The blocks at one resolution and the resampling that leaves it (``None`` at the end)."""

    def __init__(self, blocks: list[TimeBlock], resample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class UNet(nn.Module):
    """The DDPM / guided-diffusion U-Net described in the module docstring, built from a
    :class:`UNetConfig`."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.base_channels
        emb_ch = 4 * ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)

        levels = range(len(config.channel_mult))
        level_channels = [mult * config.base_channels for mult in config.channel_mult]
        level_attention = [size in config.attention_resolutions for size in config.resolutions]

        skip_channels = [ch]
        self.encoder = nn.ModuleList()
        for level in levels:
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(TimeBlock(ch, level_channels[level], emb_ch, level_attention[level], config))
                ch = level_channels[level]
                skip_channels.append(ch)
            downsample = None
            if level < levels[-1]:
                downsample = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                skip_channels.append(ch)
            self.encoder.append(Level(blocks, downsample))

        self.middle_res1 = ResBlock(ch, ch, emb_ch, config)
        self.middle_attn = AttentionBlock(ch, config)
        self.middle_res2 = ResBlock(ch, ch, emb_ch, config)

        self.decoder = nn.ModuleList()
        for level in reversed(levels):
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                in_ch = ch + skip_channels.pop()
                blocks.append(TimeBlock(in_ch, level_channels[level], emb_ch, level_attention[level], config))
                ch = level_channels[level]
            self.decoder.append(Level(blocks, Upsample(ch) if level > 0 else None))

        self.out = nn.Sequential(
            nn.GroupNorm(config.norm_groups, ch),
            nn.SiLU(),
            _zero(nn.Conv2d(ch, config.in_channels, 3, padding=1)),
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Map images ``x`` (N, C, H, W) at path fractions ``t`` (N,) in [0, 1] to (N, C, H, W)."""
        size = self.config.image_size
        if x.shape[1:] != (self.config.in_channels, size, size):
            raise ValueError(
                f"UNet expects inputs of shape (N, {self.config.in_channels}, {size}, {size}), "
                f"got {tuple(x.shape)}"
            )
        emb = self.time_embed(timestep_embedding(t, self.config.base_channels))
        h = self.conv_in(x)
        skips = [h]
        for level in self.encoder:
            for block in level.blocks:
                h = block(h, emb)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        h = self.middle_res2(self.middle_attn(self.middle_res1(h, emb)), emb)
        for level in self.decoder:
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if level.resample is not None:
                h = level.resample(h)
        return self.out(h)
