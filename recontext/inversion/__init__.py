"""Inversion methods. Each is a module with two plain functions:

    invert(unet_call, latents, timesteps, alphas, cond, generator=None, callback=None) -> state
    reconstruct(unet_call, state, timesteps, alphas, cond, callback=None) -> latents

`unet_call(x, t, cond)` returns the predicted noise; `state` is whatever the method
needs to come back (the noise latents, plus stored noise maps for edit-friendly).
"""

from . import ddim, defaults, edit_friendly, renoise
from .schedule import ddim_step, levels

METHODS = {"ddim": ddim, "renoise": renoise, "edit-friendly": edit_friendly}

# UNet calls per step, inverting + reconstructing (for progress bars and benchmarks)
COST = {"ddim": 2, "renoise": 2 + renoise.ITERATIONS, "edit-friendly": 2}


def get(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "COST", "defaults", "get", "levels", "ddim_step"]
