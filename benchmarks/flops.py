"""The FLOPs of the network, counted once by ``torch.utils.flop_counter`` on the meta device."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import UNet, UNetConfig


def network_flops(config: UNetConfig) -> tuple[float, float]:
    """``(training, call)``: the FLOPs of one image's training step (forward and backward) and of
    one network call without gradients, as ``FlopCounterMode`` counts them (matrix products,
    convolutions and attention; element-wise work is not counted) on the meta device."""
    net = UNet(config).to("meta")
    x = torch.zeros(1, config.in_channels, config.image_size, config.image_size, device="meta")
    t = torch.zeros(1, device="meta")
    with FlopCounterMode(display=False) as training:
        net(x, t).square().mean().backward()
    with FlopCounterMode(display=False) as call, torch.no_grad():
        net(x, t)
    return float(training.get_total_flops()), float(call.get_total_flops())
