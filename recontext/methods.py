"""Method specs: each inversion, editing and garment method is one module that declares
itself with a `SPEC`, and everything else (Studio's checks and defaults, cache keys,
ZeroGPU costs, CLI flags, tab controls, API docs, batch columns) is built from the specs.

A family's package finds its methods by walking its own folder (`Registry`): adding a
method is adding one file. The anchor is k-diffusion's samplers (one function each) and
diffusers' pipelines (which declare their components and options in one place).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable


# what the model owner (`models.ModelOwner`) gives every method: the pipeline and its model
# call, image prompts through its IP-Adapter, LoRA adapters fitted through the model. Any
# other need is a component the method's own module knows how to load (see `Spec.needs`).
SHARED = ("unet", "image-prompt", "fine-tuning")


@dataclass(frozen=True)
class Option:
    """One setting of a method: `kind` "float", "int" or "bool" (checked against `lo`..`hi`),
    "text" (read by `parse`; "" means unset) or "fixed" (the authors' value per preset, not a
    control). `per_preset` overrides `default` where the authors' defaults differ.
    `stage` says which of an inversion's two functions takes it ("invert" / "reconstruct")."""

    name: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    help: str = ""
    kind: str = "float"
    step: float | None = None
    per_preset: dict = field(default_factory=dict)
    parse: Callable | None = None
    stage: str = "invert"
    label: str = ""
    page: bool = True  # offered on the page and the API (False: a path, never read from a client)

    def default_for(self, preset: str | None = None):
        return self.per_preset.get(preset, self.default)

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def check(self, value, what: str = ""):
        """`value` checked and converted (ValueError naming the option and its range)."""
        name = what or self.name
        if self.kind == "text":
            if value is None or (isinstance(value, str) and not value.strip()):
                return None
            return self.parse(value) if self.parse else str(value)
        if self.kind == "fixed":
            return value
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.strip().lower() in ("true", "1", "yes")
            raise ValueError(f"{name} must be true or false, got {value!r}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if v != v or (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise ValueError(f"{name} must be between {self.lo} and {self.hi}, got {value!r}")
        if self.kind == "int":
            if v != int(v):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            return int(v)
        return v


@dataclass(frozen=True)
class Spec:
    """What a method is, what it costs, what it takes and what it needs.

    - `family`: "epsilon" (a UNet predicting noise), "flow" (a flow-matching model) or
      "any"; `presets`: the presets it runs on (None: every preset of its family).
    - `cost`: per step, an inversion's model calls inverting plus reconstructing; an editing
      method's branches (1: the target alone, 2: source and target); a garment method's
      rows per guided step (2: classifier-free guidance); or a function of the settings.
    - `stochastic`: it draws noise, so the seed enters the inversion cache key.
    - `options`: its own settings; `edit_defaults`: the inversion settings (`skip`,
      `source_guidance`) an edit takes with this method (an inversion's, or an editing
      method's override on the inversion it `pairs_with`).
    - `needs`: what must be loaded: what the model owner shares with every method (`SHARED`),
      or a component the method's own module loads (its `COMPONENTS` = {need: loader}, e.g.
      MagicClothing's "garment-extractor", HyperLoRA's "checkpoint"); `guidance`: the names of its extra guidance scales; `slow`: left unchecked at
      first on the page; `target_guidance`: an editing method's target branch runs at the
      edit's guidance (False: unguided, as LEDITS++'s concept branch).
    """

    name: str
    family: str = "epsilon"
    label: str = ""
    help: str = ""
    cost: int | Callable = 1
    stochastic: bool = False
    options: tuple[Option, ...] = ()
    edit_defaults: dict = field(default_factory=dict)
    pairs_with: str | None = None
    needs: tuple[str, ...] = ()
    guidance: tuple[str, ...] = ()
    presets: tuple[str, ...] | None = None
    order: int = 100
    slow: bool = False
    target_guidance: bool = True
    licence: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name

    def fits(self, preset) -> bool:
        """Whether it runs on `preset` (a `presets.Preset`)."""
        if self.presets is not None and preset.name not in self.presets:
            return False
        return self.family == "any" or (self.family == "flow") == bool(preset.flow)

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise KeyError(name)

    def own(self, given: dict) -> dict:
        """The settings in `given` that are this method's (one set can serve several methods)."""
        names = {o.name for o in self.options}
        return {k: v for k, v in given.items() if k in names}

    def settings(self, preset: str | None = None, **given) -> dict:
        """Every option's value: those given (checked; None means the default), the
        authors' defaults for `preset` otherwise. Unknown names are refused."""
        names = {o.name for o in self.options}
        unknown = sorted(set(given) - names)
        if unknown:
            valid = ", ".join(sorted(o.name for o in self.options if o.kind != "fixed")) or "none"
            raise ValueError(f"{self.name} takes no option {', '.join(unknown)}; its options: {valid}")
        out = {}
        for o in self.options:
            value = given.get(o.name)
            out[o.name] = o.default_for(preset) if value is None or o.kind == "fixed" else o.check(value)
        return out

    def calls_per_step(self, settings: dict | None = None) -> int:
        return self.cost(settings or {}) if callable(self.cost) else self.cost


class Registry:
    """The methods of one package, found by walking its folder for modules with a `SPEC`."""

    def __init__(self, package: str, what: str):
        self.package, self.what = package, what
        self._modules: dict | None = None

    @property
    def modules(self) -> dict:
        if self._modules is None:
            pkg = importlib.import_module(self.package)
            found = []
            for info in pkgutil.iter_modules(pkg.__path__):
                module = importlib.import_module(f"{self.package}.{info.name}")
                spec = getattr(module, "SPEC", None)
                if isinstance(spec, Spec):
                    unknown = [n for n in spec.needs if n not in SHARED and n not in getattr(module, "COMPONENTS", {})]
                    if unknown:
                        raise RuntimeError(f"{self.what} {spec.name} needs {', '.join(unknown)}, which neither the "
                                           f"model owner shares ({', '.join(SHARED)}) nor its module's COMPONENTS load")
                    found.append((spec.order, spec.name, module))
            names = [n for _, n, _ in found]
            dupes = {n for n in names if names.count(n) > 1}
            if dupes:
                raise RuntimeError(f"two {self.what}s are named {', '.join(sorted(dupes))}")
            self._modules = {n: m for _, n, m in sorted(found, key=lambda f: (f[0], f[1]))}
        return self._modules

    def names(self, preset=None) -> list[str]:
        """Every method's name, or those that run on `preset`, in menu order."""
        return [n for n, m in self.modules.items() if preset is None or m.SPEC.fits(preset)]

    def spec(self, name: str) -> Spec:
        return self.get(name).SPEC

    def specs(self, preset=None) -> list[Spec]:
        return [self.modules[n].SPEC for n in self.names(preset)]

    def choices(self, preset=None) -> list[tuple[str, str]]:
        """(label, name) of each method, in menu order: a menu's choices."""
        return [(s.title, s.name) for s in self.specs(preset)]

    def get(self, name: str, preset=None):
        """The module of method `name`; with `preset` given, it must run there (ValueError
        naming the ones that do)."""
        if name not in self.modules:
            raise ValueError(f"unknown {self.what} {name!r}; valid {self.what}s: {', '.join(self.names(preset))}")
        module = self.modules[name]
        if preset is not None and not module.SPEC.fits(preset):
            raise ValueError(f"{self.what} {name!r} does not run on the {preset.name} preset; use one of: "
                             f"{', '.join(self.names(preset))}")
        return module
