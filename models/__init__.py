"""The network every process trains (a DDPM / guided-diffusion U-Net), its named sizes, and EMA.

Knows nothing of the corruptions, the trainer or the command line.
"""

from models.ema import EMA, unwrap
from models.sizes import NETWORK_SIZES, network_config
from models.unet import UNet, UNetConfig

__all__ = ["EMA", "NETWORK_SIZES", "UNet", "UNetConfig", "network_config", "unwrap"]
