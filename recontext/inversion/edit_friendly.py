"""Edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2024): noise the clean
latent independently to every level, then store, per step, what the stochastic
(eta = 1) sampler must add to land exactly on the next stored level. Replaying those
residuals reconstructs the latents exactly; replaying them under another prompt edits.

The residual is stored already multiplied by the step's sigma (x_prev - mean), so a
zero-variance final step needs no special case.
"""

import torch

from ..methods import Spec


def _mean(x, eps, a_from, a_to):
    """DDPM posterior mean of the next level (DDIM with eta = 1)."""
    var = (1 - a_to) / (1 - a_from) * (1 - a_from / a_to)
    x0 = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
    return a_to.sqrt() * x0 + (1 - a_to - var).clamp(min=0).sqrt() * eps


def invert(unet_call, x, timesteps, alphas, cond, generator=None, callback=None):
    noise = [torch.randn(x.shape, generator=generator, device="cpu").to(x) for _ in timesteps]
    xs = [x] + [a.sqrt() * x + (1 - a).sqrt() * n for a, n in zip(alphas[1:], noise)]
    residuals = [None] * len(timesteps)
    for i in reversed(range(len(timesteps))):
        eps = unet_call(xs[i + 1], timesteps[i], cond)
        residuals[i] = xs[i] - _mean(xs[i + 1], eps, alphas[i + 1], alphas[i])
        if callback:
            callback(len(timesteps) - 1 - i)
    return xs[-1], residuals


def reconstruct(unet_call, state, timesteps, alphas, cond, callback=None):
    x, residuals = state
    for i in reversed(range(len(timesteps))):
        eps = unet_call(x, timesteps[i], cond)
        x = _mean(x, eps, alphas[i + 1], alphas[i]) + residuals[i]
        if callback:
            callback(len(timesteps) - 1 - i)
    return x


# DDPM_inversion's editing examples: source guidance 3.5 while inverting, T_skip 36 of 100 steps
SPEC = Spec("edit-friendly", family="epsilon", label="edit-friendly DDPM", cost=2, stochastic=True, order=20,
            edit_defaults={"skip": 0.36, "source_guidance": 3.5},
            help="edit-friendly DDPM: stores the noise maps that rebuild the photo exactly (draws noise: the seed matters)")
