"""Small helpers every tab shares: errors as messages, progress, the page header."""

from __future__ import annotations

import functools
import math
import os

import gradio as gr

from .. import jobs
from ..errors import StorageError
from .running import _runners, cancel_session, execute, on_gpu, run_job  # noqa: F401  (the tabs' plumbing)

def user_errors(fn):
    """Turn a core `ValueError` (bad input) or `StorageError` (the data folder failed)
    into a message on the page / API error, logged without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, StorageError) as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


def mcp_tool(name: str):
    """Name an endpoint's function as the MCP server lists it (Gradio names tools after
    the function; its docstring is the tool's description)."""

    def name_it(fn):
        fn.__name__ = name
        return fn

    return name_it


def not_mcp_tool(fn):
    """Keep an endpoint in the HTTP API but out of the MCP server's tools: Gradio lists
    only functions without an MCP type, or of type "tool"."""
    fn._mcp_type = "http-api-only"
    return fn


def progress_fn(progress: gr.Progress):
    """Adapt a `gr.Progress` to the core's `progress(done, total, desc)` callback."""

    def update(done: int, total: int, desc: str):
        if total:
            progress((done, total), desc=desc, unit="steps")
        else:  # work of unknown length (one-off setup): its text, at 0 (Gradio draws no text for None)
            progress(0.0, desc=desc)

    return update


def fmt(value, digits: int = 4):
    """A metric for display: `digits` significant digits, ∞ and n/a spelled out (also for
    `number`'s "inf" / "-inf", as the plain results carry infinities)."""
    if value is None:
        return "n/a"
    if value in ("inf", "-inf"):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return "∞" if math.isinf(value) else f"{value:.{digits}g}"
    return value


def saved_note(run_id: str, outputs: int) -> str:
    return f"Saved as run `{run_id}`" + (": rate it blind in the Review tab." if outputs > 1 else ".")


def saved(save, outputs: int) -> tuple[str | None, str]:
    """Save a computed result with `save()` (returns the run id) and say so: (the run id,
    the note). When the data folder fails, the result is still shown, the run id is None
    and the note says it was not saved."""
    try:
        run_id = save()
    except StorageError as e:
        return None, f"**Not saved**: {e}. The result is shown all the same; download what you need."
    return run_id, saved_note(run_id, outputs)


def _number(label: str, payload, whole: bool):
    """A number from the page or an API call, or a message naming the field."""
    if payload is None:
        return None
    try:
        if isinstance(payload, bool):
            raise TypeError
        value = float(payload)
    except (TypeError, ValueError):
        raise gr.Error(f"{label} must be a number, got {payload!r}", print_exception=False) from None
    if value != value:
        raise gr.Error(f"{label} must be a number, got {payload!r}", print_exception=False)
    if whole and value != int(value):
        raise gr.Error(f"{label} must be a whole number, got {payload!r}", print_exception=False)
    return value


def _named(label: str, preprocess, payload):
    """Gradio's own check of an API value (`preprocess`: range, choices) with its message
    prefixed by the field's label and logged without a traceback: a bad value is the
    client's error, not the server's (Gradio's own errors print one)."""
    try:
        return preprocess(payload)
    except gr.Error as e:
        if not e.print_exception:
            raise
        raise gr.Error(f"{label}: {e.message}", print_exception=False) from None


class Slider(gr.Slider):
    """A slider whose API value is checked first: "abc" or 1.5 for a whole-number slider
    get a message naming the field (not Gradio's generic error or silent rounding).
    `precision=0` makes the API type an integer."""

    def get_block_name(self) -> str:
        return "slider"

    def preprocess(self, payload):
        value = _number(self.label, payload, self.precision == 0)
        if value is None:
            raise gr.Error(f"{self.label}: give a number", print_exception=False)
        return _named(self.label, super().preprocess, value)


class Choices(gr.CheckboxGroup):
    """A checkbox group whose API value may also be left out (None: nothing chosen, which
    the handler names) and is otherwise checked to be a list of its choices."""

    def get_block_name(self) -> str:
        return "checkboxgroup"

    def preprocess(self, payload):
        if payload is None:
            return []
        if isinstance(payload, str):
            payload = [payload]
        if not isinstance(payload, (list, tuple)):
            raise gr.Error(f"{self.label}: give a list of choices, got {payload!r}",
                           print_exception=False)
        return _named(self.label, super().preprocess, list(payload))


class Choice(gr.Dropdown):
    """A dropdown whose API value must be one of its choices; anything else gets a
    message naming the field and the choices."""

    def get_block_name(self) -> str:
        return "dropdown"

    def preprocess(self, payload):
        return _named(self.label, super().preprocess, payload)


class Flag(gr.Checkbox):
    """A checkbox whose API value must be true or false ("abc" is refused, not read as
    true)."""

    def get_block_name(self) -> str:
        return "checkbox"

    def preprocess(self, payload):
        if payload is not None and not isinstance(payload, bool):
            raise gr.Error(f"{self.label}: give true or false, got {payload!r}", print_exception=False)
        return bool(payload)


class WholeNumber(gr.Number):
    """A whole-number field (a seed): 1.5 is refused like steps 1.5, not rounded."""

    def get_block_name(self) -> str:
        return "number"

    def preprocess(self, payload):
        return _named(self.label, super().preprocess, _number(self.label, payload, True))


def steps_slider(studio) -> Slider:
    return shared_slider("steps", value=studio.preset.steps, label="Steps")


def seed_number() -> WholeNumber:
    o = jobs.SHARED["seed"]
    return WholeNumber(value=o.default, precision=0, label="Seed", minimum=o.lo, maximum=o.hi)


def header(studio) -> str:
    p = studio.preset
    tiny = (" Try the scene examples: prompts of that grammar are what this world understands."
            if p.name == "tiny" else "")
    tight = "each with and without [Tight Inversion](https://arxiv.org/abs/2502.20376)"
    from .. import editing, garment, inversion

    def titles(family):  # the preset's methods of a family, from their specs
        names = [s.title for s in family.REGISTRY.specs(p)]
        return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1] if names else ""

    if garment.names(p):
        garment_text = (f"a garment onto a generated person, side by side: {titles(garment)} (HyperLoRA: no "
                        "per-garment training, NeurIPS 2024).")
    else:
        garment_text = f"needs a UNet preset (tiny, sdxl); not on this {'flow ' if p.flow else ''}model."
    inversion_text = f"rebuild a photo with {titles(inversion)}, {tight}."
    editing_text = f"invert, then edit with {titles(editing)}; sweep the image scale."
    return (
        "# recontext — diffusion image recontextualization studio\n"
        "Try, compare and rate diffusion methods that put real images in new contexts. "
        f"Running preset **`{p.name}`**: {p.description}{tiny}\n\n"
        f"- **Garment → model**: {garment_text}\n"
        f"- **Inversion**: {inversion_text}\n"
        f"- **Text editing**: {editing_text}\n"
        "- **Review**: rate the outputs of every run above, blind; see the summary."
    )


class PhotoInput(gr.Image):
    """An image upload that hands the core a file path and turns a file PIL cannot even
    identify into a clear message (instead of Gradio's internal processing error).
    Decoding, conversion and resizing happen in `recontext.images`."""

    def get_block_name(self) -> str:
        return "image"  # rendered by Gradio's own image front end

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error("This file is not an image we can read (PNG, JPEG, WebP, …). "
                           "Please upload a photo.", print_exception=False) from None


def photo_input(**kwargs) -> PhotoInput:
    """A photo upload passed to the core as a file path, untouched (16-bit, RGBA and
    grayscale are converted by the core, which says so)."""
    return PhotoInput(type="filepath", image_mode=None, format="png", **kwargs)


def shared_slider(name: str, **kwargs) -> "Slider":
    """The page's slider of a shared setting (`jobs.SHARED`): its range, default and help."""
    o = jobs.SHARED[name]
    kwargs.setdefault("value", o.default)
    kwargs.setdefault("info", o.help)
    return Slider(o.lo, o.hi, step=o.step, **({"precision": 0} if o.kind == "int" else {}), **kwargs)


def reproduce_section():
    """The page's small "Reproduce" section: the command that replays the last result and its
    job.json to download. Returns (command, download), which `show_reproduce` fills."""
    with gr.Accordion("Reproduce", open=False):
        command = gr.Markdown("Run something first: its job appears here.")
        download = gr.File(label="job.json", interactive=False)
    return command, download


def show_reproduce(event, result, command, download) -> None:
    """After `event` succeeds, fill the Reproduce section from its plain result (its "job")."""
    event.success(reproduce_view, result, [command, download], api_visibility="private", queue=False)


def reproduce_view(result: dict):
    """(the command in words, a job.json file) for a plain result: the saved run's job when
    there is one (its inputs lie beside it), else the job itself to save beside its inputs."""
    import json
    import tempfile

    job = (result or {}).get("job")
    if not job:
        return "", None
    run_id = result.get("run_id")
    if run_id:
        where = f"data/runs/{run_id}/job.json"
        text = (f"Saved with run `{run_id}`: `python -m recontext run {where}` reproduces it (same pixels on "
                f"this preset and device), from the folder the studio runs in.")
    else:
        text = ("Not saved as a run: download the job, put its input image beside it under the name it "
                "gives, and run `python -m recontext run job.json`.")
    job = {k: {**v, "path": os.path.basename(v["path"] or "")} if isinstance(v, dict) and "sha256" in v else v
           for k, v in job.items()}  # inputs named as they lie beside the job (never a server path)
    folder = tempfile.mkdtemp(prefix="recontext-job-")
    path = os.path.join(folder, "job.json")
    with open(path, "w") as f:
        json.dump({**job, "preset": result.get("preset")}, f, indent=1)
    return text, path


# -- controls and API parameters built from the method specs ----------------------------------
def option_params(specs, shared=False) -> list[tuple[str, object, object]]:
    """(API parameter name, spec, option) for every setting a user may change, in the specs'
    order. A setting several methods share by name (`scale`) gets one parameter per method,
    named after it (`ip_adapter_scale`), unless `shared` (one parameter for all)."""
    counts = {}
    for spec in specs:
        for o in spec.options:
            if o.kind != "fixed" and o.page:
                counts[o.name] = counts.get(o.name, 0) + 1
    out, seen = [], set()
    for spec in specs:
        for o in spec.options:
            if o.kind == "fixed" or not o.page:
                continue
            if counts[o.name] > 1 and not shared:
                name = f"{spec.name.replace('-', '_').replace('+', '')}_{o.name}"
            else:
                name = o.name
            if name not in seen:
                seen.add(name)
                out.append((name, spec, o))
    return out


def option_control(o, preset: str):
    """The page's control of one option: a slider (its range, its default on `preset`,
    its help), a checkbox or a text box."""
    label = o.title
    default = o.default_for(preset)
    if o.kind == "bool":
        return Flag(value=bool(default), label=label, info=o.help)
    if o.kind == "text":
        return gr.Textbox(value="" if default is None else str(default), label=label, info=o.help, max_lines=1)
    step = o.step or (1 if o.kind == "int" else (o.hi - o.lo) / 100)
    return Slider(o.lo, o.hi, value=default, step=step, label=label, info=o.help,
                  **({"precision": 0} if o.kind == "int" else {}))


def option_controls(specs, preset: str, shared=False, shown=()) -> tuple[dict, dict]:
    """Controls for every option of `specs`, each method's in a group of its own (shown or
    hidden with the method; at first the methods in `shown`): ({parameter: control},
    {method: group})."""
    params = option_params(specs, shared)
    controls, groups = {}, {}
    for spec in specs:
        mine = [(n, o) for n, s, o in params if s is spec]
        if not mine:
            continue
        with gr.Group(visible=spec.name in shown) as group:
            gr.Markdown(f"**{spec.title}** settings")
            for name, o in mine:
                controls[name] = option_control(o, preset)
        groups[spec.name] = group
    return controls, groups


def show_chosen(methods, groups: dict) -> None:
    """Each method's settings group (`option_controls`) shown while `methods` (checkboxes)
    has it chosen."""
    if groups:
        methods.change(lambda chosen: [gr.update(visible=m in (chosen or [])) for m in groups], methods,
                       list(groups.values()), api_visibility="private", queue=False)


def settings_of(params, values: dict) -> dict[str, dict]:
    """{method: {option: value}} from the API parameters' values (empty text: unset)."""
    out = {}
    for name, spec, o in params:
        value = values.get(name)
        if o.kind == "text" and (value is None or not str(value).strip()):
            continue
        if value is not None:
            out.setdefault(spec.name, {})[o.name] = value
    return out


def option_docs(params) -> str:
    """The API docs' lines for the option parameters (Google style, as Gradio reads them)."""
    lines = []
    for name, spec, o in params:
        rng = f" ({o.lo:g}-{o.hi:g}; default: the method's own)" if o.lo is not None else " (optional)"
        lines.append(f"            {name}: {spec.name}: {o.help}{rng}")
    return "\n".join(lines)


def with_options(fn, fixed: list[str], params, doc: str, name: str):
    """`fn(values: dict, progress)` as an endpoint whose parameters are `fixed` (names, no
    default) then the option `params` (default None: the method's own), with `doc` (its
    `{options}` filled with the options' docs) for the API and MCP docs."""
    import inspect

    parameters = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in fixed]
    parameters += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
                   for n, _, _ in params]
    parameters.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=gr.Progress()))
    parameters.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.Request))
    signature = inspect.Signature(parameters)

    def endpoint(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        progress, request = values.pop("progress"), values.pop("request")
        return fn(values, progress, request)

    endpoint.__signature__ = signature
    endpoint.__annotations__ = {"request": gr.Request}  # Gradio hands a gr.Request to it (the session)
    endpoint.__name__ = endpoint.__qualname__ = name
    endpoint.__doc__ = doc.replace("{options}", option_docs(params))
    return endpoint

# -- plain API results, cancelling, clearing old errors, own photos at their size ----------

CLEAR_ERRORS = """() => { document.querySelectorAll('[data-testid="toast-close"]')
    .forEach((b) => b.click()); }"""  # closes the error pop-ups of earlier, failed requests


def number(value, digits: int = 4):
    """A metric as JSON takes it: a rounded float, "inf" for ∞ (identical images), None
    for n/a (NaN or unavailable). JSON has no NaN or Infinity."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(f"{value:.{digits}g}")


def bullets(lines) -> str:
    return "\n".join(f"- {t}" for t in lines)


def with_cancel(event, cancel: gr.Button):
    """`event`, which `cancel` stops; after a success, earlier error pop-ups are closed."""
    cancel.click(cancel_session, None, None, cancels=[event], api_visibility="private", queue=False)
    event.success(None, None, None, js=CLEAR_ERRORS, api_visibility="private", queue=False)
    return event


def cancel_button() -> gr.Button:
    return gr.Button("Cancel", variant="stop", size="sm", min_width=80, scale=0)


def uploaded_size(photo) -> tuple[int, int] | None:
    """The size of the photo as uploaded (EXIF orientation applied), read from the file's
    header alone; None when it cannot be read (the core then says why)."""
    from PIL import Image

    try:
        with Image.open(photo) as im:
            orientation = im.getexif().get(0x0112, 1)
            size = im.size
    except Exception:
        return None
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


SHOWN_MAX = 2048  # px on the longer side: a huge upload is not sent back at 36 megapixels


def shown_size(working: tuple[int, int], uploaded: tuple[int, int] | None) -> tuple[int, int]:
    """The size results are shown at: the uploaded photo's (at most `SHOWN_MAX` px on the
    longer side, aspect kept), never below the working size."""
    if not uploaded or max(uploaded) < max(working):
        return tuple(working)
    k = min(1.0, SHOWN_MAX / max(uploaded))
    shown = (max(1, round(uploaded[0] * k)), max(1, round(uploaded[1] * k)))
    if shown[0] < working[0] or shown[1] < working[1]:  # a thin upload (8000×8): not below the working size
        return tuple(working)
    return shown


LPIPS_MISSING = ("LPIPS: unavailable (install the optional `lpips` package), so the table leaves "
                 "its column out.")


def size_note(working: tuple[int, int], shown: tuple[int, int]) -> str:
    """What the page says about sizes: the working size, and the upscaling when shown larger."""
    w, h = working
    if tuple(shown) == tuple(working):
        return f"The model works at {w}×{h} pixels; results are shown at that size."
    capped = f" (your photo's size, at most {SHOWN_MAX} px)" if max(shown) == SHOWN_MAX else " (your photo's size)"
    return (f"The model works at {w}×{h} pixels (metrics are computed there); results are shown "
            f"upscaled to {shown[0]}×{shown[1]}{capped}, so they look softer than the photo.")


def legend(lines: dict) -> None:
    """A closed accordion under a table: one line per column, with its unit and which way
    is better (issue 38: numbers the page does not explain)."""
    with gr.Accordion("What the columns mean (units; ↑ higher is better, ↓ lower is better)", open=False):
        gr.Markdown("\n".join(f"- **{name}**: {text}" for name, text in lines.items()))
