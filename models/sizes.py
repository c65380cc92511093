"""Named network sizes: one name per U-Net the benchmark trains, resolved for a dataset's shape.

Parameter counts below are measured with this package's :class:`~models.unet.UNet`
(``tests/test_models.py`` checks the two paper-scale ones):

- ``ddpm-cifar``: the DDPM CIFAR-10 network (Ho et al. 2020, ``hojonathanho/diffusion``):
  35,746,307 parameters at 3×32×32, the count of the official model ("35.7M" in the paper).
- ``spd-cifar``: the network of the official Shortest Path Diffusion code, guided-diffusion's
  ``UNetModel`` with 3 residual blocks, attention at 16 and 8 with 4 heads, dropout 0.3 and
  scale-shift norm: 52,542,979 parameters at 3×32×32.
- ``quick``: a CPU-sized network for 28×28 Fashion-MNIST: 408,641 parameters at 1×28×28,
  sized so that the ``quick`` suite's 16 runs fit in an hour on 2 cores (about 0.5 s a
  training step at batch 64 and 0.6 s a sampler call on 250 images, on one thread).
- ``smoke``: a tiny network that only checks the pipeline runs: 163,985 parameters at 1×28×28.
"""

from typing import Any

from models.unet import UNetConfig

# Everything but the data shape. Attention is given as downsampling factors (2 means feature maps
# at half the image size), so a size also builds at image sizes other than its own dataset's.
_SIZES: dict[str, dict[str, Any]] = {
    "ddpm-cifar": dict(
        base_channels=128,
        channel_mult=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_factors=(2,),
        num_heads=1,
        dropout=0.1,
        scale_shift_norm=False,
    ),
    "spd-cifar": dict(
        base_channels=128,
        channel_mult=(1, 2, 2, 2),
        num_res_blocks=3,
        attention_factors=(2, 4),
        num_heads=4,
        dropout=0.3,
        scale_shift_norm=True,
    ),
    "quick": dict(
        base_channels=16,
        channel_mult=(1, 2, 2),
        num_res_blocks=2,
        attention_factors=(4,),
        num_heads=1,
        dropout=0.1,
        scale_shift_norm=False,
        norm_groups=8,
    ),
    "smoke": dict(
        base_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_factors=(),
        num_heads=1,
        dropout=0.1,
        scale_shift_norm=False,
        norm_groups=8,
    ),
}

NETWORK_SIZES: tuple[str, ...] = tuple(_SIZES)
"""The valid names for :func:`network_config`."""


def network_config(size: str, in_channels: int, image_size: int) -> UNetConfig:
    """The :class:`UNetConfig` of the named ``size`` for images of ``in_channels`` × ``image_size``².

    Raises:
        ValueError: ``size`` is not one of :data:`NETWORK_SIZES`, or the size cannot be built at
            this image size (see :class:`UNetConfig`).
    """
    if size not in _SIZES:
        raise ValueError(f"unknown network size {size!r}; valid sizes: {', '.join(NETWORK_SIZES)}")
    settings = dict(_SIZES[size])
    factors = settings.pop("attention_factors")
    return UNetConfig(
        in_channels=in_channels,
        image_size=image_size,
        attention_resolutions=tuple(image_size // factor for factor in factors),
        **settings,
    )
