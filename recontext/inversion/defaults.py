"""Each inversion method's settings at its authors' defaults, per preset.

Sources (summarised in the project's design notes):
- ReNoise, official code (garibida/ReNoise-Inversion): its RunConfig defaults are the
  SDXL-Turbo setting — 9 renoise steps (10 UNet calls per step), the late iterations 8–9
  averaged for t ≥ 250 and 0–4 (at most 5 renoise steps) for t < 250, noise regularisation
  λ_ac 20 and λ_kl 0.065, noise correction for the stochastic Euler scheduler. Its SD / SDXL
  examples with DDIM use 1 renoise step and 50 steps.
- Edit-friendly DDPM, official code (inbarhub/DDPM_inversion): eta 1, source guidance 3.5
  when inverting for an edit, T_skip 36 of 100 steps in its editing examples.
- LEDITS++ (diffusers' LEditsPP pipelines, the authors' port): edit-friendly inversion with
  source guidance 3.5 and skip 0.15; the Tight Inversion Space uses skip 0.15–0.2.

Iterations are numbered as in the official loop: 0 is the prediction at the current
latents (the plain DDIM step), 1.. the renoised ones; `average` is a half-open window
over them (None: the last one alone).
"""

from __future__ import annotations

_RENOISE_DDIM = dict(renoise_steps=1, average=None, average_early=None, early_t=250,
                     lambda_ac=0.0, lambda_kl=0.0, noise_correction=False)
_RENOISE_TURBO = dict(renoise_steps=9, average=(8, 10), average_early=(0, 5), early_t=250,
                      lambda_ac=20.0, lambda_kl=0.065, noise_correction=True)

RENOISE = {"tiny": _RENOISE_DDIM, "sd15": _RENOISE_DDIM, "sdxl": _RENOISE_DDIM,
           "sdxl-turbo": _RENOISE_TURBO}

EDIT_FRIENDLY = {"source_guidance": 3.5, "skip": 0.36}   # DDPM_inversion's editing examples
LEDITS_SKIP = 0.15                                         # LEDITS++ / diffusers default


def renoise(preset: str) -> dict:
    return dict(RENOISE.get(preset, _RENOISE_DDIM))


def for_edit(preset: str, method: str, edit_method: str) -> dict:
    """Inversion settings for an edit: `skip` (fraction of the noisiest steps dropped) and
    `source_guidance` (classifier-free guidance while inverting under the source prompt)."""
    if method == "edit-friendly":
        skip = LEDITS_SKIP if edit_method == "ledits++" else EDIT_FRIENDLY["skip"]
        return {"skip": skip, "source_guidance": EDIT_FRIENDLY["source_guidance"]}
    return {"skip": 0.0, "source_guidance": 1.0}  # Tight Inversion Space: DDIM, guidance 1.0
