"""Inversion methods. Each is a module of this folder with two plain functions and a `SPEC`
(`recontext.methods.Spec`), found by walking the folder:

    invert(model_call, latents, timesteps, levels, cond, generator=None, callback=None, **options) -> state
    reconstruct(model_call, state, timesteps, levels, cond, callback=None, **options) -> latents

Epsilon methods take `unet_call(x, t, cond)`, the predicted noise, and `levels` =
alphas_cumprod (`levels()`); flow methods take `velocity(x, sigma, cond)` and `levels` =
sigmas (`flow_levels()`). `state` is whatever the method needs to come back (the noise
latents, plus stored noise maps or the image latents for some).
"""

from __future__ import annotations

import functools

from ..jobs import SHARED
from ..methods import Registry
from .schedule import ddim_step, flow_levels, levels

REGISTRY = Registry(__name__, "inversion method")

# the inversion settings every edit takes (declared once, in jobs.SHARED); each method's spec
# may give its own defaults
EDIT_OPTIONS = (SHARED["skip"], SHARED["source_guidance"])


# the methods (those that run on a preset, given one), a method's module, its spec
names, get, spec = REGISTRY.names, REGISTRY.get, REGISTRY.spec


def options(name: str, preset: str | None = None, **given) -> dict:
    """Method `name`'s own settings on `preset` (its authors' defaults unless given)."""
    return spec(name).settings(preset, **given)


def split(name: str, settings: dict) -> tuple[dict, dict]:
    """A method's settings split into what `invert` and what `reconstruct` take."""
    stages = {o.name: o.stage for o in spec(name).options}
    return ({k: v for k, v in settings.items() if stages[k] == "invert"},
            {k: v for k, v in settings.items() if stages[k] == "reconstruct"})


def reconstructor(module, settings: dict):
    """`module.reconstruct` with its own reconstruct-stage settings bound."""
    _, own = split(module.SPEC.name, settings)
    return functools.partial(module.reconstruct, **own) if own else module.reconstruct


def cost(name: str, settings: dict | None = None) -> int:
    """Model calls per step, inverting plus reconstructing."""
    return spec(name).calls_per_step(settings)


def edit_settings(name: str, **given) -> dict:
    """`skip` and `source_guidance` for an edit on inversion `name`: given, else its spec's."""
    defaults = {o.name: o.default for o in EDIT_OPTIONS} | spec(name).edit_defaults
    return {o.name: defaults[o.name] if given.get(o.name) is None else o.check(given[o.name])
            for o in EDIT_OPTIONS}


def __getattr__(attr):  # name -> module tables, built from the specs when asked for
    if attr == "ALL":
        return dict(REGISTRY.modules)
    if attr in ("METHODS", "FLOW_METHODS"):
        flow = attr == "FLOW_METHODS"
        return {n: m for n, m in REGISTRY.modules.items() if (m.SPEC.family == "flow") == flow}
    raise AttributeError(attr)


__all__ = ["REGISTRY", "EDIT_OPTIONS", "names", "get", "spec", "options", "split", "reconstructor",
           "cost", "edit_settings", "levels", "flow_levels", "ddim_step"]
