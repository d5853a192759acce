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
