"""The noise schedule shared by every inversion method, and the one DDIM move.

Noise level 0 is the clean latent; level i (1..N) is timestep `timesteps[i-1]`, with
`alphas[i]` its cumulative alpha. Deterministic DDIM is the Euler method in these
coordinates, so the same step serves DDIM and Euler-scheduler presets.
"""

from __future__ import annotations

import torch


def levels(scheduler, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(timesteps ascending, length N; alphas_cumprod at levels 0..N, length N+1)."""
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.flip(0)
    ac = scheduler.alphas_cumprod
    final = getattr(scheduler, "final_alpha_cumprod", torch.tensor(1.0))
    alphas = torch.cat([final.reshape(1).float(), ac[timesteps.round().long()].float()])
    return timesteps, alphas


def ddim_step(x: torch.Tensor, eps: torch.Tensor, a_from, a_to) -> torch.Tensor:
    """Move `x` from noise level `a_from` to `a_to` along the deterministic DDIM path."""
    x0 = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
    return a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps


def flow_levels(scheduler, steps: int, image_seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow-matching levels as FluxPipeline sets them: sigmas linear from 1 to 1/steps,
    shifted for `image_seq_len` image tokens (FLUX's dynamic shift). Returns (sigmas at
    levels 1..N, sigmas at levels 0..N), ascending, sigma 0 the clean latent and 1 noise:
    the same shapes as `levels` gives epsilon methods, so skipping steps works alike."""
    import numpy as np
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    c = scheduler.config
    mu = calculate_shift(image_seq_len, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                         c.get("base_shift", 0.5), c.get("max_shift", 1.15))
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps).tolist(), mu=mu)
    sigmas = scheduler.sigmas.flip(0).float()
    return sigmas[1:], sigmas
