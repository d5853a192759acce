"""Text-to-image sampling on the shared pipeline: seeded noise, DDIM or flow-Euler, decode."""

from __future__ import annotations

import torch
from PIL import Image

from .inversion import ddim, flow_euler, levels


def sample(models, cond, side: int, steps: int, seed: int, tick=None, what: str = "generation") -> Image.Image:
    """A `side`-pixel square image sampled from seeded noise under `cond`: DDIM for epsilon
    models, the Euler flow ODE for flow models."""
    factor = models.pipe.vae_scale_factor
    channels = (models.pipe.transformer.config.in_channels // 4 if models.flow
                else models.pipe.unet.config.in_channels)
    shape = (1, channels, side // factor, side // factor)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    timesteps, alphas = models.levels(steps, noise) if models.flow else levels(models.pipe.scheduler, steps)
    solver = flow_euler if models.flow else ddim
    with torch.no_grad():
        z = solver.reconstruct(models.model_call, noise.to(models.device), timesteps, alphas, cond, callback=tick)
    return models.decode(z, what)
