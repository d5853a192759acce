"""Inversion methods. Each is a module with two plain functions:

    invert(model_call, latents, timesteps, levels, cond, generator=None, callback=None) -> state
    reconstruct(model_call, state, timesteps, levels, cond, callback=None) -> latents

Epsilon methods (ddim, renoise, edit-friendly) take `unet_call(x, t, cond)`, the predicted
noise, and `levels` = alphas_cumprod (`levels()`); flow methods (flow-euler, rf-inversion)
take `velocity(x, sigma, cond)` and `levels` = sigmas (`flow_levels()`). `state` is
whatever the method needs to come back (the noise latents, plus stored noise maps for
edit-friendly, plus the image latents for rf-inversion).
"""

from . import ddim, defaults, edit_friendly, flow_euler, renoise, rf_inversion
from .schedule import ddim_step, flow_levels, levels

METHODS = {"ddim": ddim, "renoise": renoise, "edit-friendly": edit_friendly}  # epsilon models
FLOW_METHODS = {"flow-euler": flow_euler, "rf-inversion": rf_inversion}       # flow-matching models
ALL = {**METHODS, **FLOW_METHODS}

# model calls per step, inverting + reconstructing (for progress bars and benchmarks)
COST = {"ddim": 2, "renoise": 2 + renoise.ITERATIONS, "edit-friendly": 2, "flow-euler": 2,
        "rf-inversion": 2}


def fitting(flow: bool) -> list[str]:
    """The methods that fit a model family: flow-matching (True) or epsilon-prediction."""
    return list(FLOW_METHODS if flow else METHODS)


def get(name: str, flow: bool | None = None):
    """The method `name`; with `flow` given, it must fit that model family."""
    if name not in ALL:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(ALL)}")
    if flow is not None and (name in FLOW_METHODS) != flow:
        kind = "flow-matching" if flow else "epsilon-prediction"
        raise ValueError(f"method {name!r} does not fit this {kind} model; use one of: "
                         f"{', '.join(fitting(flow))}")
    return ALL[name]


__all__ = ["METHODS", "FLOW_METHODS", "ALL", "COST", "defaults", "fitting", "get", "levels", "flow_levels", "ddim_step"]
