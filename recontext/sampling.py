"""Text-to-image sampling on the shared pipeline: seeded noise, DDIM, decode."""

from __future__ import annotations

import torch
from PIL import Image

from .inversion import ddim, levels


def sample(models, cond, side: int, steps: int, seed: int, tick=None) -> Image.Image:
    """A `side`-pixel square image sampled from seeded noise with DDIM under `cond`."""
    unet, factor = models.pipe.unet, models.pipe.vae_scale_factor
    shape = (1, unet.config.in_channels, side // factor, side // factor)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    timesteps, alphas = levels(models.pipe.scheduler, steps)
    with torch.no_grad():
        z = ddim.reconstruct(models.unet_call, noise.to(models.device), timesteps, alphas, cond, callback=tick)
    return models.decode(z)
