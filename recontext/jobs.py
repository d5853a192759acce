"""Jobs: one plain dataclass per task, the request every front end builds.

A job is data: its inputs (images by content hash plus where to read them), prompts,
methods, one `variants` field (plain and / or tight), the shared settings declared once in
`SHARED` (one default, one range, one help text each) and each method's own options
({method: {option: value}}, checked against its spec when it runs). `Studio.run(job)`
executes it, `zerogpu.work(job)` prices it, `runs` saves it as `job.json` and
`python -m recontext run job.json` replays it. `to_dict` / `from_dict` round-trip through
JSON; `check()` refuses a bad field by name with its range. Imports neither torch nor gradio.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .methods import Option

MAX_PROMPT = 2000     # characters; a longer prompt is refused before it is tokenized
MAX_SCALES = 12       # image scales of one sweep (a run holds at most 12 outputs)
VARIANTS = ("plain", "tight")  # plain: text alone; tight: the photo also through IP-Adapter
SWEEP_SCALES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

# the settings every job shares, each declared once: the page's sliders, the CLI's flags,
# the API's docs and the checks read them from here (None: the preset's or the method's own)
SHARED = {o.name: o for o in (
    Option("steps", None, 1, 200, "denoising steps (inversions take as many); default: the preset's",
           kind="int", step=1),
    Option("guidance", None, 1.0, 20.0, "classifier-free guidance of the generated branch; default: the "
           "preset's (a reconstruction inverts and rebuilds unguided: 1)", step=0.5),
    Option("image_scale", 0.4, 0.0, 1.5, "IP-Adapter scale of the tight runs, the same for inversion and "
           "reconstruction or edit: 0 = the text alone … 1 = the photo, most strongly (up to 1.5)", step=0.05),
    Option("seed", 0, 0, 2**32 - 1, "random seed", kind="int", step=1),
    # an edit's inversion: the default where neither the inversion's nor the editing method's spec
    # gives its own (`Spec.edit_defaults`); a job's None takes the methods' own
    Option("skip", 0.0, 0.0, 0.9, "fraction of the step grid's noisiest steps neither inverted nor edited, "
           "counted on the full grid: steps 50, skip 0.2 runs the 40 least noisy (diffusers' LEDITS++ counts "
           "from the kept steps: its num_inversion_steps 40 with skip 0.25 is the same run)", step=0.01),
    Option("source_guidance", 1.0, 1.0, 20.0, "classifier-free guidance while inverting under the source "
           "prompt", step=0.5),
)}


class Cancelled(Exception):
    """The job's cancel signal was set: the work stopped, nothing was saved."""


def check_shared(name: str, value, keep_none: bool = False):
    """A shared setting checked: None is its default (kept as None with `keep_none`: the
    preset's or the methods' own, resolved when the job runs); a non-finite number or one out
    of range is a ValueError naming it and its range."""
    o = SHARED[name]
    if value is None:
        if keep_none or o.default is None:
            return None
        value = o.default
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, (int, float)) and not math.isfinite(value) or (
            isinstance(value, str) and value.strip().lower().lstrip("+-") in ("inf", "infinity", "nan")):
        raise ValueError(f"{name} must be a finite number between {o.lo:g} and {o.hi:g}, got {value!r}")
    return o.check(value)


def check_prompt(value, what: str, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    if len(value) > MAX_PROMPT:
        raise ValueError(f"{what} is {len(value)} characters long; at most {MAX_PROMPT} are accepted "
                         "(the text encoder reads only its first 77 tokens)")
    if required and not value.strip():
        raise ValueError(f"{what} is empty: say what the image should show")
    return value


def check_variants(value, what: str = "variants") -> tuple[str, ...]:
    """One encoding of plain / tight: a subset of `VARIANTS`, in that order. Accepts a list
    or a comma-separated text ("plain", "tight", "plain,tight"; "both" for both)."""
    if isinstance(value, str):
        value = VARIANTS if value.strip().lower() == "both" else [v for v in value.split(",") if v.strip()]
    if value is None or isinstance(value, bool):
        raise ValueError(f"{what}: give plain, tight or both, got {value!r}")
    given = [str(v).strip().lower() for v in value]
    unknown = [v for v in given if v not in VARIANTS]
    if unknown:
        raise ValueError(f"{what}: {', '.join(unknown)} is not a variant; the variants are plain and tight")
    out = tuple(v for v in VARIANTS if v in given)
    if not out:
        raise ValueError(f"{what}: choose plain, tight or both")
    return out


def tight_variants(tight: bool) -> tuple[str, ...]:
    """The variants of a call that says tight or not (the Studio's one-run calls, the CLI's flag)."""
    return ("tight",) if tight else ("plain",)


# -- inputs -----------------------------------------------------------------------------------
@dataclass
class Input:
    """An image a job reads: `path` (where to read it; relative paths are read from the job
    file's folder) and `sha256` of its bytes. At run time `image` may hold it in memory
    (a PIL image or an array handed to the Studio): then `path` is None until it is saved."""

    path: str | None = None
    sha256: str | None = None
    image: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, value) -> "Input":
        """An input from what a front end holds: a path, a PIL image, an Input, a dict."""
        if isinstance(value, Input):
            return value
        if isinstance(value, dict):
            return cls(path=value.get("path"), sha256=value.get("sha256"))
        if isinstance(value, (str, os.PathLike)):
            return cls(path=os.fspath(value))
        if value is None:
            return cls()
        return cls(image=value)  # hashed when the job is written (`to_dict`)

    def read(self):
        """What the Studio loads (the in-memory image, else the path)."""
        if self.image is not None:
            return self.image
        return self.path

    def png_bytes(self) -> bytes:
        return _png(self.image)

    def digest(self) -> str | None:
        """sha256 of the bytes read (the file's, or the in-memory image's PNG), computed once."""
        if self.sha256 is None:
            self.sha256 = image_hash(self.image) if self.image is not None else (
                file_hash(self.path) if self.path else None)
        return self.sha256

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.digest()}


def file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None  # the run says why it cannot read it


def _png(image) -> bytes:
    from PIL import Image
    import numpy as np

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def image_hash(image) -> str | None:
    try:
        return hashlib.sha256(_png(image)).hexdigest()
    except Exception:
        return None  # not an image: the Studio says so when it loads it


# -- the jobs -----------------------------------------------------------------------------
@dataclass
class _Job:
    def check(self):
        """This job with every field checked and normalised (ValueError naming the field)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in SHARED:
            if name in defaults:
                setattr(self, name, check_shared(name, getattr(self, name), keep_none=defaults[name] is None))
        if hasattr(self, "variants"):
            self.variants = check_variants(self.variants)
        if not isinstance(self.options, dict) or not all(isinstance(v, dict) for v in self.options.values()):
            raise ValueError("options must be {method: {option: value}}")
        return self

    def to_dict(self) -> dict:
        out = {"task": TASK_OF[type(self)]}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Input):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def inputs(self) -> dict[str, Input]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), Input)}


@dataclass
class Reconstruct(_Job):
    """Invert a photo and rebuild it with each method, plain and / or tight."""

    image: Input = field(default_factory=Input)
    prompt: str = ""
    methods: list[str] | None = None      # None: the preset's first
    variants: tuple[str, ...] = ("plain",)
    image_scale: float = SHARED["image_scale"].default
    steps: int | None = None
    guidance: float | None = None         # None: unguided (1), as inversion runs
    seed: int = 0
    options: dict = field(default_factory=dict)

    def check(self):
        super().check()
        self.prompt = check_prompt(self.prompt, "prompt")
        self.methods = _names(self.methods, "methods")
        return self


KINDS = ("one", "sweep", "compare")


@dataclass
class Edit(_Job):
    """Invert under `source`, edit toward `target`: one edit per variant (`kind` "one"),
    tight edits at each of `scales` ("sweep"), or every editing method per variant
    ("compare")."""

    image: Input = field(default_factory=Input)
    source: str = ""
    target: str = ""
    kind: str = "one"
    method: str | None = None             # the inversion; None: the preset's first
    edit_method: str | None = None        # None: the preset's first (compare: all)
    variants: tuple[str, ...] = ("tight",)
    image_scale: float = SHARED["image_scale"].default
    scales: tuple[float, ...] = SWEEP_SCALES
    guidance: float | None = None
    steps: int | None = None
    seed: int = 0
    skip: float | None = None
    source_guidance: float | None = None
    options: dict = field(default_factory=dict)

    def check(self):
        super().check()
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        self.source = check_prompt(self.source, "source prompt")
        self.target = check_prompt(self.target, "target prompt", required=True)
        if self.kind == "sweep":
            if isinstance(self.scales, (int, float, str)):
                self.scales = [self.scales]
            scales = list(self.scales or ())
            if not scales:
                raise ValueError("scales: give at least one image scale")
            if len(scales) > MAX_SCALES:
                raise ValueError(f"scales: at most {MAX_SCALES} values, got {len(scales)}")
            self.scales = tuple(check_shared("image_scale", s) for s in scales)
            if self.variants != ("tight",):
                raise ValueError("variants: a sweep runs tight edits only (its scales are the IP-Adapter's)")
        else:
            self.scales = tuple(self.scales or ())
        return self


@dataclass
class Dress(_Job):
    """Generate `prompt` wearing the garment with each method."""

    garment: Input = field(default_factory=Input)
    prompt: str = ""
    methods: list[str] | None = None      # None: the preset's first
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)

    def check(self):
        super().check()
        self.prompt = check_prompt(self.prompt, "prompt", required=True)
        self.methods = _names(self.methods, "methods")
        return self


@dataclass
class Generate(_Job):
    """Plain text to image on the shared pipeline."""

    prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)

    def check(self):
        super().check()
        self.prompt = check_prompt(self.prompt, "prompt", required=True)
        return self


def edit_runs(job: Edit, method: str, edit_methods, inversion_for) -> list[tuple[Edit, str]]:
    """The one-edit jobs an edit job runs, with a label each: a sweep's one per scale; a
    comparison's one per editing method (on `inversion_for(edit_method, method)`) × variant,
    tight first; one per variant otherwise. What `Studio.run` runs and `zerogpu.calls` prices."""
    if job.kind == "sweep":
        return [(replace(job, kind="one", image_scale=s, scales=()), f"scale {s:g}: ") for s in job.scales]
    if job.kind == "compare":
        order = sorted(job.variants, key=lambda v: v != "tight")
        return [(replace(job, kind="one", method=inversion_for(m, method), edit_method=m, variants=(v,), scales=()),
                 f"{m}{' + tight' if v == 'tight' else ''}: ") for m in edit_methods for v in order]
    return [(replace(job, variants=(v,)), f"{v}: ") for v in job.variants]


TASKS = {"reconstruct": Reconstruct, "edit": Edit, "dress": Dress, "generate": Generate}
TASK_OF = {v: k for k, v in TASKS.items()}
Job = Reconstruct | Edit | Dress | Generate


def _names(value, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of method names")
    if not value:
        raise ValueError(f"{what}: choose at least one method")
    return list(dict.fromkeys(value))


def from_dict(data: dict, base: str | None = None):
    """The job a dict (`to_dict`'s, or parsed JSON) describes, checked. `base`: the folder
    relative input paths are read from (the job file's)."""
    if not isinstance(data, dict):
        raise ValueError("a job is a JSON object with a \"task\"")
    task = data.get("task")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    cls = TASKS[task]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - {"task", "preset"})  # preset: where it ran (`preset_in`)
    if unknown:
        raise ValueError(f"a {task} job has no field {', '.join(unknown)}; its fields: {', '.join(sorted(names))}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.default_factory is Input:
            ref = Input.of(value if isinstance(value, dict) else {"path": value})
            if ref.path and base and not os.path.isabs(ref.path):
                ref.path = os.path.join(base, ref.path)
            value = ref
        values[f.name] = value
    return cls(**values).check()


def load(path: str):
    """The job in the JSON file `path` (inputs read relative to its folder); each input's
    bytes checked against its sha256."""
    with open(path) as f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path} is not JSON ({e})") from None
    job = from_dict(data, base=os.path.dirname(os.path.abspath(path)))
    for name, ref in job.inputs().items():
        if ref.sha256 and ref.path and file_hash(ref.path) not in (None, ref.sha256):
            raise ValueError(f"{name}: {ref.path} is not the image the job was made with (its sha256 differs)")
    return job


def preset_in(path: str) -> str | None:
    """The preset a job file says it ran on (None: not said)."""
    with open(path) as f:
        data = json.load(f)
    return data.get("preset") if isinstance(data, dict) else None


def replace(job, **changes):
    """A copy of `job` with `changes` (inputs shared, not copied)."""
    return dataclasses.replace(job, **changes)
