"""ReNoise (Garibi et al. 2024), as the official code runs it (garibida/ReNoise-Inversion,
`src/renoise_inversion.py`): each inversion step is refined by fixed-point iterations —
predict the noise at the current estimate of the next level, step again from the same
start — and finally taken with the average of a window of those predictions.
Reconstruction is plain DDIM.

Iteration 0 is the prediction at the current latents (its step is plain DDIM's),
iterations 1..`renoise_steps` the renoised ones. `average` = (first, end) is the half-open
window of iterations averaged, `average_early` the window for timesteps below `early_t`
(where at most end - 1 renoise steps run); a window that catches no iteration leaves the
last one. With `lambda_ac` / `lambda_kl` > 0 the noise is regularised (its auto-correlation
and its divergence from the prediction at the photo noised forward to the level, one
Gaussian sample per inversion, pushed down by gradient steps): every prediction from the
window's first iteration on, and the average — the official code's rule.

The official RunConfig (its defaults) is the SDXL-Turbo setting: 9 renoise steps, iterations
8–9 averaged for t ≥ 250 and 0–4 (at most 5 renoise steps) for t < 250, λ_ac 20, λ_kl 0.065
(4 steps, 5 rolls), noise correction for the stochastic Euler sampler. Its SD / SDXL DDIM
examples change only the steps (50), renoise steps (1) and noise correction (off): with
1 renoise step the late window catches nothing (the last iterate is kept, unregularised) and
the early steps average iterations 0–1, regularised. Those are the defaults here.

One addition: the fixed-point iterations need not contract on a photo the model knows little
about (issue 39 reported the last iterate at 14.5 dB where DDIM gave 28.1 on a plain disc-and-band
photo, tiny preset, 20 steps). So each iterate's residual ||F(z) - z|| is measured
(F(z): the step from the same start with the prediction at z; the residual is the step's
own reconstruction error up to a constant, and the plain DDIM estimate is iterate 1), the
final estimate's with one more UNet call (`keep_best`), and when the final one is not the
smallest the step keeps the best iterate instead. How often that happened is in the
result's notes (the state's `notes`).
"""

import torch

from ..methods import Option, Spec
from . import ddim
from .schedule import ddim_step


def _autocorrelation(e, generator):
    """Squared correlation of the noise with random shifts of itself, down a pyramid to 8 px."""
    loss = 0.0
    for ch in e.unbind(1):
        x = ch[:, None]
        while True:
            s = int(torch.randint(max(1, x.shape[2] // 2), (1,), generator=generator))
            loss = loss + (x * torch.roll(x, s, dims=2)).mean() ** 2 + (x * torch.roll(x, s, dims=3)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = torch.nn.functional.avg_pool2d(x, 2)
    return loss


def _kl(e, reference, patch=4):
    """Summed |KL| between Gaussians fitted per channel to matching patch×patch patches."""
    def stats(x):
        c = x.shape[1]
        p = torch.nn.functional.unfold(x, patch, stride=patch)        # (1, c·patch², n)
        p = p.view(c, patch * patch, -1)
        return p.mean(1), p.var(1)
    m1, v1 = stats(e)
    m2, v2 = stats(reference)
    eps = 1e-6
    return (torch.log((v2 + eps) / (v1 + eps)) + (v1 + (m1 - m2) ** 2) / (v2 + eps) - 1).abs().sum()


def regularize(eps, reference, lambda_ac, lambda_kl, generator, steps=4, rolls=5):
    """Noise regularisation: gradient steps on each loss (the official 4 steps, 5 rolls)."""
    with torch.enable_grad():
        for _ in range(steps):
            if lambda_kl > 0:
                v = eps.detach().float().requires_grad_(True)
                (grad,) = torch.autograd.grad(_kl(v, reference.float()), v)
                eps = eps - lambda_kl * grad.clamp(-100, 100).to(eps)
            if lambda_ac > 0:
                for _ in range(rolls):
                    v = eps.detach().float().requires_grad_(True)
                    (grad,) = torch.autograd.grad(_autocorrelation(v, generator), v)
                    eps = eps - lambda_ac * (grad / rolls).to(eps)
    return eps.detach()


def _norm(x):
    return float(x.float().pow(2).mean().sqrt())


def invert(unet_call, x, timesteps, alphas, cond, generator=None, callback=None,
           renoise_steps=1, average=(8, 10), average_early=(0, 5), early_t=250,
           lambda_ac=20.0, lambda_kl=0.065, noise_correction=False, keep_best=True):
    # noise_correction belongs to the stochastic Euler sampler; the steps here are the
    # deterministic DDIM ones for every scheduler, so there is no sampled noise to correct
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    regularising = bool(lambda_ac or lambda_kl)
    photo = x
    noise = torch.randn(x.shape, generator=generator, device="cpu").to(x) if regularising else None
    kept_best, worst = 0, 0.0
    for i, t in enumerate(timesteps):
        a_from, a_to = alphas[i], alphas[i + 1]
        window = (average_early if float(t) < early_t else average) or (renoise_steps + 1, renoise_steps + 1)
        calls = min(renoise_steps, window[1] - 1) if float(t) < early_t else renoise_steps
        reference = None
        if regularising:  # the prediction at the photo noised forward to this level
            reference = unet_call(a_to.sqrt() * photo + (1 - a_to).sqrt() * noise, t, cond)
        z, total, counted = x, None, 0
        candidates = []  # (residual, iterate)
        for k in range(calls + 1):
            eps = unet_call(z, t, cond)
            if k > 0:  # z is iterate k: its residual is measured by this prediction
                candidates.append((_norm(ddim_step(x, eps, a_from, a_to) - z), z))
            if window[0] <= k < window[1]:
                total, counted = (eps if total is None else total + eps), counted + 1
            if regularising and k >= window[0]:
                eps = regularize(eps, reference, lambda_ac, lambda_kl, generator)
            z = ddim_step(x, eps, a_from, a_to)
        if counted:
            mean = total / counted
            if regularising:
                mean = regularize(mean, reference, lambda_ac, lambda_kl, generator)
            z = ddim_step(x, mean, a_from, a_to)
        if keep_best and candidates:
            residual = _norm(ddim_step(x, unet_call(z, t, cond), a_from, a_to) - z)
            best = min(candidates, key=lambda c: c[0])
            if best[0] < residual:
                kept_best, worst = kept_best + 1, max(worst, residual / max(best[0], 1e-12))
                z = best[1]
        x = z
        if callback:
            callback(i)
    x = x.clone()
    x.notes = ([f"ReNoise: the fixed-point iterations stopped contracting at {kept_best} of {len(timesteps)} "
                f"steps; those kept their best iterate, not the final estimate (whose residual was up to "
                f"{worst:.2f}x the best)"] if kept_best else [])
    return x


reconstruct = ddim.reconstruct


def _cost(s):
    r = s.get("renoise_steps", 1)
    regularising = s.get("lambda_ac", 20.0) or s.get("lambda_kl", 0.065)
    return 2 + r + (1 if regularising else 0) + (1 if r and s.get("keep_best", True) else 0)


_TURBO = "sdxl-turbo"
SPEC = Spec(
    "renoise", family="epsilon", label="ReNoise", order=10, cost=_cost,
    help="ReNoise: each inversion step refined by fixed-point iterations (Garibi et al. 2024), as the "
         "official code runs them; a step whose iterations stop contracting keeps its best iterate",
    options=(
        Option("renoise_steps", 1, 0, 20, "renoised predictions per inversion step (each one UNet call)",
               kind="int", step=1, per_preset={_TURBO: 9}),
        Option("average", (8, 10), kind="fixed",
               help="window of iterations averaged for t ≥ early_t (the official RunConfig's 8–9; "
                    "with 1 renoise step it catches none and the last iterate is taken)"),
        Option("average_early", (0, 5), kind="fixed", help="the window below early_t (official: 0–4)"),
        Option("early_t", 250, kind="fixed", help="timestep below which average_early applies"),
        Option("lambda_ac", 20.0, 0.0, 100.0, "noise regularisation: auto-correlation weight (0: off; "
               "the official 20)", step=1.0),
        Option("lambda_kl", 0.065, 0.0, 1.0, "noise regularisation: KL weight (0: off; the official 0.065)",
               step=0.005),
        Option("noise_correction", False, kind="fixed", per_preset={_TURBO: True},
               help="the stochastic Euler sampler's noise correction (no sampled noise in the DDIM steps "
                    "used here, so nothing to correct)"),
        Option("keep_best", True, kind="bool",
               help="measure the final estimate's fixed-point residual (one more UNet call per step) and keep "
                    "the best iterate when the iterations stopped contracting (not in the official code: "
                    "issue 39 reported the last iterate at 14.5 dB where DDIM gave 28.1 on a plain photo)"),
    ))
