"""Garment → model: put a garment onto a generated person or scene from a text prompt.

Each method is a module of `garment/methods/` with a `SPEC` and an `adapt` function (see
that package), found by walking the folder. Each result times adapting to the garment
apart from generating the image. Every adapter is disabled again before the call returns,
so the other tabs see the base model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PIL import Image

from .. import images
from ..methods import Registry
from ..progress import Progress, ticker

REGISTRY = Registry(__name__ + ".methods", "garment method")


# the methods (those that run on a preset, given one), a method's module, its spec
names, get, spec = REGISTRY.names, REGISTRY.get, REGISTRY.spec


def page_methods(preset=None) -> list[str]:
    """The methods checked on the page at first: all but the slow ones."""
    return [m for m in names(preset) if not spec(m).slow]


def work(method: str, settings: dict | None = None) -> dict:
    """A method's adapting work for the ZeroGPU estimate, at its settings (defaults filled)."""
    module = get(method)
    full = module.SPEC.settings(None, **module.SPEC.own(settings or {}))
    return module.work(full) if hasattr(module, "work") else {}


def __getattr__(attr):  # the method names, built from the specs when asked for
    if attr == "METHODS":
        return tuple(names())
    if attr == "PAGE_METHODS":
        return tuple(page_methods())
    raise AttributeError(attr)


@dataclass
class Dressed:
    image: Image.Image
    method: str
    adapt_seconds: float      # reading the garment: prediction, embeddings or fine-tuning
    generate_seconds: float   # sampling and decoding
    cached: bool | None       # the adaptation came from the cache (None: nothing to adapt)
    garment: Image.Image      # the garment as loaded
    notes: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0  # one-off work first (model load, checkpoint); not in the above
    settings: dict = field(default_factory=dict)  # the method's own settings


# -- the call ------------------------------------------------------------------------------
def dress(bench, garment, prompt: str, method: str, steps: int, seed: int, guidance: float,
          settings: dict, progress: Progress | None = None) -> Dressed:
    """Generate `prompt` wearing `garment` with `method` (its `settings` checked) on the
    workbench `bench`."""
    module = get(method, bench.preset)
    models = bench.models
    img, notes = images.load_image(garment)
    with models.lock:
        setup = bench.setup(progress)
        own = [need for need in module.SPEC.needs if need in getattr(module, "COMPONENTS", {})]
        if own:  # the method's own components (a checkpoint, an extra model): loaded once, kept, timed as setup
            start = time.perf_counter()
            if progress is not None:
                progress(0, 0, f"{method}: loading")
            for need in own:
                module.COMPONENTS[need](bench, settings)
            setup += time.perf_counter() - start
        start = time.perf_counter()
        todo = module.todo(bench, img, settings, seed) if hasattr(module, "todo") else 0
        tick = ticker(progress, todo + steps, f"{method}: {'adapting, then ' if todo else ''}generating")
        adapted = module.adapt(bench, img, prompt, settings, seed, tick=tick)
        with adapted.adapter:
            adapt = time.perf_counter() - start
            cond = bench.condition(adapted.prompt, img if adapted.image is None else adapted.image,
                                   adapted.image is not None, adapted.image_scale, guidance)
            if adapted.condition is not None:
                cond = adapted.condition(cond)
            gen_start = time.perf_counter()
            image = bench.generate(cond, steps, seed, tick, method)
        return Dressed(image, method, adapt, time.perf_counter() - gen_start, adapted.cached, img,
                       notes + adapted.notes, setup, dict(settings))
