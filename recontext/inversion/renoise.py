"""ReNoise (Garibi et al. 2024): each inversion step is refined by fixed-point
iterations — predict the noise at the current estimate of the next level, step again
from the same start — and the step is finally taken with the average of a window of
those predictions. Reconstruction is plain DDIM.

Iteration 0 is the prediction at the current latents (the plain DDIM step), iterations
1..`renoise_steps` the renoised ones; `average` = (first, end) is the half-open window
averaged (None: the last prediction alone), `average_early` the window for timesteps
below `early_t`, where the loop also stops at the window's end. `lambda_ac` / `lambda_kl`
turn on noise regularisation of every renoised prediction (its auto-correlation and its
divergence from the plain prediction pushed down by gradient steps).

The authors' settings per preset (`SPEC`), from the official code (garibida/ReNoise-Inversion):
its RunConfig defaults are the SDXL-Turbo setting — 9 renoise steps (10 UNet calls per
step), iterations 8–9 averaged for t ≥ 250 and 0–4 (at most 5 renoise steps) for t < 250,
noise regularisation λ_ac 20 and λ_kl 0.065, noise correction for the stochastic Euler
scheduler. Its SD / SDXL examples with DDIM use 1 renoise step, the last iteration alone.
"""

import torch

from ..methods import Option, Spec
from . import ddim
from .schedule import ddim_step

ITERATIONS = 3  # renoising iterations per step when called without settings


def _autocorrelation(e, generator):
    """Squared correlation of the noise with random shifts of itself, over a pyramid."""
    loss = 0.0
    for ch in e.unbind(1):
        x = ch[:, None]
        while x.shape[-1] > 8:
            s = int(torch.randint(x.shape[-1] // 2, (1,), generator=generator))
            loss = loss + (x * torch.roll(x, s, dims=2)).mean() ** 2 + (x * torch.roll(x, s, dims=3)).mean() ** 2
            x = torch.nn.functional.avg_pool2d(x, 2) * 2
    return loss


def _kl(e, reference, patch=4):
    """KL divergence between Gaussians fitted to matching patches of `e` and `reference`."""
    def stats(x):
        p = torch.nn.functional.unfold(x, patch, stride=patch)
        return p.mean(1), p.var(1) + 1e-6
    m1, v1 = stats(e)
    m2, v2 = stats(reference)
    return (0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)).mean()


def regularize(eps, reference, lambda_ac, lambda_kl, generator, steps=4, rolls=5):
    """Noise regularisation: a few gradient steps on each loss (the official 4 and 5)."""
    with torch.enable_grad():
        for _ in range(steps):
            if lambda_kl > 0:
                v = eps.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(_kl(v, reference), v)
                eps = eps - lambda_kl * grad.clamp(-100, 100)
            if lambda_ac > 0:
                for _ in range(rolls):
                    v = eps.detach().requires_grad_(True)
                    (grad,) = torch.autograd.grad(_autocorrelation(v, generator), v)
                    eps = eps - lambda_ac * grad / rolls
    return eps.detach()


def invert(unet_call, x, timesteps, alphas, cond, generator=None, callback=None,
           renoise_steps=ITERATIONS, average=(1, ITERATIONS + 1), average_early=None,
           early_t=250, lambda_ac=0.0, lambda_kl=0.0, noise_correction=False):
    # noise_correction belongs to the stochastic Euler sampler; the steps here are the
    # deterministic DDIM ones for every scheduler, so there is no sampled noise to correct
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    for i, t in enumerate(timesteps):
        window = average_early if float(t) < early_t and average_early else average
        calls = renoise_steps if window is None else min(renoise_steps, window[1] - 1)
        plain = unet_call(x, t, cond)
        predictions = [plain]
        for _ in range(calls):
            eps = unet_call(ddim_step(x, predictions[-1], alphas[i], alphas[i + 1]), t, cond)
            if lambda_ac or lambda_kl:
                eps = regularize(eps, plain, lambda_ac, lambda_kl, generator)
            predictions.append(eps)
        chosen = predictions[-1:] if window is None else predictions[window[0]:window[1]]
        x = ddim_step(x, sum(chosen) / len(chosen), alphas[i], alphas[i + 1])
        if callback:
            callback(i)
    return x


reconstruct = ddim.reconstruct


_TURBO = "sdxl-turbo"
SPEC = Spec(
    "renoise", family="epsilon", label="ReNoise", order=10, cost=lambda s: 2 + s.get("renoise_steps", ITERATIONS),
    help="ReNoise: each inversion step refined by fixed-point iterations (Garibi et al. 2024)",
    options=(
        Option("renoise_steps", 1, 0, 20, "renoised predictions per inversion step (each one UNet call)",
               kind="int", step=1, per_preset={_TURBO: 9}),
        Option("average", None, kind="fixed", per_preset={_TURBO: (8, 10)},
               help="window of iterations averaged (None: the last one)"),
        Option("average_early", None, kind="fixed", per_preset={_TURBO: (0, 5)},
               help="the window below early_t"),
        Option("early_t", 250, kind="fixed", help="timestep below which average_early applies"),
        Option("lambda_ac", 0.0, 0.0, 100.0, "noise regularisation: auto-correlation weight (0: off)",
               step=1.0, per_preset={_TURBO: 20.0}),
        Option("lambda_kl", 0.0, 0.0, 1.0, "noise regularisation: KL weight (0: off)",
               step=0.005, per_preset={_TURBO: 0.065}),
        Option("noise_correction", False, kind="fixed", per_preset={_TURBO: True},
               help="the stochastic Euler sampler's noise correction"),
    ))
