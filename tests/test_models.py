"""The U-Net, its named sizes and EMA: shapes, parameter counts of the reference networks,
time conditioning, zero initialisation, mixed precision and the EMA arithmetic."""

import pytest
import torch
from torch import nn

from models import EMA, NETWORK_SIZES, UNet, UNetConfig, network_config

# Parameter counts of the reference networks at 3×32×32 (CIFAR-10).
# ddpm-cifar: the official TF model of Ho et al. (2020), github.com/hojonathanho/diffusion, reported
#   as 35.7M in the paper; 35,746,307 is also what guided-diffusion's UNetModel counts at DDPM's
#   settings (ch 128, mult 1,2,2,2, 2 res blocks, attention at 16, 1 head, no scale-shift).
# spd-cifar: counted by building guided-diffusion's UNetModel (github.com/openai/guided-diffusion,
#   the network of the official Shortest Path Diffusion code) with the SPD CIFAR-10 settings:
#   ch 128, mult 1,2,2,2, 3 res blocks, attention at 16 and 8, 4 heads, scale-shift norm,
#   learn_sigma False, no classes, resblock_updown False.
REFERENCE_PARAMETERS = {"ddpm-cifar": 35_746_307, "spd-cifar": 52_542_979}


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def small_config(in_channels: int, image_size: int, **changes: object) -> UNetConfig:
    """A tiny network with every kind of block (attention at the lowest resolution)."""
    settings: dict = dict(
        in_channels=in_channels,
        image_size=image_size,
        base_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(image_size // 2,),
        num_heads=2,
        dropout=0.0,
        scale_shift_norm=False,
        norm_groups=8,
    )
    settings.update(changes)
    return UNetConfig(**settings)


def randomise_zero_init(net: nn.Module) -> None:
    """Give random values to the parameters that start at zero (the last layer of each residual
    branch and the output conv), so the output depends on the input and the time."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


@pytest.mark.parametrize("size", sorted(REFERENCE_PARAMETERS))
def test_reference_parameter_counts(size: str) -> None:
    with torch.device("meta"):
        net = UNet(network_config(size, in_channels=3, image_size=32))
    assert count_parameters(net) == REFERENCE_PARAMETERS[size]


@pytest.mark.parametrize("size", ["quick", "smoke"])
def test_cpu_sizes_on_fashion_mnist_shape(size: str) -> None:
    torch.manual_seed(0)
    net = UNet(network_config(size, in_channels=1, image_size=28))
    x = torch.randn(2, 1, 28, 28)
    assert net(x, torch.rand(2)).shape == x.shape


@pytest.mark.parametrize("scale_shift_norm", [False, True])
def test_three_channel_forward_and_backward(scale_shift_norm: bool) -> None:
    torch.manual_seed(0)
    net = UNet(small_config(3, 32, scale_shift_norm=scale_shift_norm, dropout=0.1))
    x = torch.randn(2, 3, 32, 32)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_output_is_zero_at_initialisation() -> None:
    torch.manual_seed(0)
    net = UNet(small_config(1, 28))
    out = net(torch.randn(3, 1, 28, 28), torch.rand(3))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("scale_shift_norm", [False, True])
def test_time_conditioning_changes_the_output(scale_shift_norm: bool) -> None:
    torch.manual_seed(0)
    net = UNet(small_config(1, 28, scale_shift_norm=scale_shift_norm)).eval()
    randomise_zero_init(net)
    x = torch.randn(1, 1, 28, 28).expand(2, -1, -1, -1)
    out = net(x, torch.tensor([0.1, 0.6]))
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_bf16_autocast_and_channels_last_match_fp32() -> None:
    torch.manual_seed(0)
    net = UNet(small_config(3, 16)).eval()
    randomise_zero_init(net)
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    with torch.no_grad():
        reference = net(x, t)
        channels_last = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last), t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = net(x, t)
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-4)
    assert mixed.shape == reference.shape
    assert (mixed.float() - reference).abs().max() < 0.05 * reference.abs().max()


def test_config_rejects_unbuildable_networks() -> None:
    with pytest.raises(ValueError, match="divisible by 2"):
        small_config(1, 30, channel_mult=(1, 2, 2), attention_resolutions=())
    with pytest.raises(ValueError, match="attention resolutions"):
        small_config(1, 28, attention_resolutions=(16,))
    with pytest.raises(ValueError, match="norm_groups"):
        small_config(1, 28, norm_groups=32)


def test_wrong_input_shape_is_a_clear_error() -> None:
    net = UNet(small_config(1, 28))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        net(torch.randn(1, 3, 28, 28), torch.rand(1))


def test_unknown_size_lists_the_valid_names() -> None:
    with pytest.raises(ValueError) as error:
        network_config("huge", in_channels=1, image_size=28)
    assert all(name in str(error.value) for name in NETWORK_SIZES)


def test_ema_update_is_the_convex_combination() -> None:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.arange(6.0).reshape(2, 3))
        model.bias.fill_(4.0)
    ema = EMA(model, decay=0.75)
    with torch.no_grad():
        model.weight.add_(8.0)
        model.bias.fill_(-4.0)
    ema.update(model)
    # Dyadic decay and integer weights: both sides are exact in float32.
    assert torch.equal(ema.shadow["weight"], 0.75 * torch.arange(6.0).reshape(2, 3) + 0.25 * model.weight)
    assert torch.equal(ema.shadow["bias"], torch.full((2,), 2.0))


def test_ema_warmup_decay() -> None:
    ema = EMA(nn.Linear(1, 1), decay=0.999, warmup=True)
    model = nn.Linear(1, 1)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(model)
    assert decays == [1 / 10, 2 / 11, 3 / 12]
    assert EMA(model, decay=0.05, warmup=True).current_decay() == 0.05  # never above `decay`


def test_ema_state_round_trip_and_wrapped_models() -> None:
    torch.manual_seed(0)
    net = UNet(small_config(1, 28))
    ema = EMA(net, decay=0.9)
    randomise_zero_init(net)
    ema.update(torch.compile(net))  # names come from the unwrapped module
    restored = EMA(UNet(small_config(1, 28)), decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 1
    assert all(torch.equal(restored.shadow[name], ema.shadow[name]) for name in ema.shadow)

    averaged = restored.averaged_model(net)
    assert not averaged.training and not any(p.requires_grad for p in averaged.parameters())
    for name, p in averaged.named_parameters():
        assert torch.equal(p, ema.shadow[name])
    assert any(not torch.equal(p, ema.shadow[name]) for name, p in net.named_parameters())

    with pytest.raises(ValueError, match="does not fit"):
        EMA(UNet(small_config(1, 28, base_channels=32)), decay=0.9).load_state_dict(ema.state_dict())
