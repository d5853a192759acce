"""Text editing tab: invert, edit with a chosen editing method, sweep the image scale,
compare every editing method tight and plain."""

from __future__ import annotations


import gradio as gr
import pandas as pd

from .. import editing, inversion, jobs, verdicts
from .. import examples as core_examples
from ..tiny import typical
from ..editing import SWEEP_SCALES, sweep_plot
from ..runs import save_edits
from .. import images
from .common import (Choice, Flag, LPIPS_MISSING, bullets, cancel_button, fmt, legend, mcp_tool,
                    not_mcp_tool, number, option_controls, option_params, photo_input, progress_fn,
                    reproduce_section, run_job, saved, seed_number, settings_of, shared_slider, show_reproduce,
                    shown_size, size_note, steps_slider, uploaded_size, user_errors, with_cancel, with_options)

ABOUT = """Invert the photo under its **source prompt**, then edit it from that noise toward
the **target prompt**. With **Tight** on, the photo also conditions both passes through
IP-Adapter at the same scale ([Tight Inversion](https://arxiv.org/abs/2502.20376)). The paper
finds that a higher scale keeps more of the photo and lets the edit land less; **Sweep** runs
the edit at several scales, plots what it did on your photo and says which way each moved. Changing only the target prompt or guidance reuses the
cached inversion. The **editing method** decides how the target prompt enters; **Compare**
runs the edit with every editing method, tight and plain."""


def about(preset) -> str:
    """The tab's text, with each editing method of the preset (from its spec)."""
    return ABOUT + "\n\n" + "\n".join(f"- **{s.title}**: {s.help}" for s in editing.REGISTRY.specs(preset))


def specs(preset) -> list:
    """The specs whose options the tab offers: the inversion methods', then the editing methods'."""
    return [*inversion.REGISTRY.specs(preset), *editing.REGISTRY.specs(preset)]


def flat(settings: dict) -> dict:
    """{method: {option: value}} -> {option: value}: each method takes its own (Studio)."""
    return {k: v for own in settings.values() for k, v in own.items()}


METRIC_NAMES = {"preservation_ssim": "preservation: SSIM to photo ↑",
                "preservation_lpips": "preservation: LPIPS ↓",
                "clip_target": "edit alignment: CLIP(output, target) ↑"}


def examples() -> list[list]:
    return core_examples.edits()  # recontext/examples.py


TABLE_COLUMNS = ["image scale", *METRIC_NAMES.values(), "inverted", "seconds"]
LEGEND = {
    "image scale": "IP-Adapter scale of the tight edit, 0 to 1 (0: the prompt alone)",
    METRIC_NAMES["preservation_ssim"]: "structural similarity of the edit to the photo, 0 to 1: how much of "
                                       "the photo the edit kept",
    METRIC_NAMES["preservation_lpips"]: "learned perceptual distance of the edit to the photo, 0 = identical "
                                        "(with the optional lpips package)",
    METRIC_NAMES["clip_target"]: "CLIP cosine similarity between the edit and the target prompt, −1 to 1 (higher: "
                                 "the edit shows more of what was asked; compare rows, not absolute values)",
    "inverted": "yes: the photo was inverted for this edit; cached: an earlier inversion was reused (same photo, "
                "source prompt and settings), so only the edit ran",
    "seconds": "wall time of that edit",
}
# the endpoints' own parameters, then every method's options (from the specs)
EDIT = ["photo", "source", "target", "method", "tight", "image_scale", "guidance", "steps", "seed", "edit_method"]
SWEEP = ["photo", "source", "target", "method", "scales", "guidance", "steps", "seed", "edit_method"]
COMPARE = ["photo", "source", "target", "method", "image_scale", "guidance", "steps", "seed"]


def _rows(edits) -> list[dict]:
    """One plain row per edit: numbers, null for n/a."""
    return [{"edit_method": e.edit_method, "inversion_method": e.method, "tight": bool(e.tight),
             "image_scale": e.scale, **{k: number(v) for k, v in e.metrics.items()},
             "inverted": bool(e.inverted), "seconds": round(e.seconds, 2)} for e in edits]


def _table(rows) -> pd.DataFrame:
    """The page's metrics table of plain rows (`_rows`)."""
    return pd.DataFrame([{"editing method": r["edit_method"],
                          "inversion": r["inversion_method"] + (" + tight" if r["tight"] else ""),
                          "image scale": r["image_scale"],
                          **{name: fmt(r[k])
                             for k, name in METRIC_NAMES.items() if k in r},
                          "inverted": "yes" if r["inverted"] else "cached", "seconds": r["seconds"]}
                         for r in rows])


def _notes(edits) -> list[str]:
    notes = list(dict.fromkeys(n for e in edits for n in e.notes))
    if edits and edits[0].metrics["preservation_lpips"] is None:
        notes.append(LPIPS_MISSING)
    return notes


def _result(studio, kind, edits, notes, target, shown, run_id, images, job=None) -> dict:
    """The plain result of an edit endpoint: {"preset", "kind" (edit, sweep or compare),
    "target", "images" (what the images after the dict are, in order), "runs" (`_rows`),
    "working_size", "shown_size", "notes", "run_id" (None when not saved), "job" (the job
    that ran, as `python -m recontext run` takes it)}."""
    if typical.holds("edit", studio.preset.name) is False:  # said beside the result, with the figure
        notes = [*notes, typical.note("edit", studio.preset.name, short=True)]
    return {"preset": studio.preset.name, "kind": kind, "target": target or "", "images": images,
            "runs": _rows(edits), "working_size": list(edits[0].output.size) if edits else None,
            "shown_size": list(shown), "notes": list(notes), "run_id": run_id,
            "job": job.to_dict() if job is not None else None}


def _shown(photo, edits):
    """The size results are shown at (the upload's, read from the file's header), with the note."""
    working = edits[0].output.size
    shown = shown_size(working, uploaded_size(photo))
    return shown, size_note(working, shown)


def page(result: dict):
    """The page's view of an edit endpoint's plain result: the metrics table (the LPIPS
    column left out when no edit has it), the notes, and for a sweep its plot."""
    table = _table(result["runs"])
    if all(r.get("preservation_lpips") is None for r in result["runs"]):
        table = table.drop(columns=[METRIC_NAMES["preservation_lpips"]], errors="ignore")
    plot = None
    if result["kind"] == "sweep":
        from types import SimpleNamespace

        plot = sweep_plot([SimpleNamespace(scale=r["image_scale"], metrics={
            "preservation_ssim": r["preservation_ssim"], "clip_target": r["clip_target"]})
            for r in result["runs"]], result["target"])
    return table, bullets(result["notes"]), plot


def job_of(studio, photo, source, target, kind, method, tight=True, image_scale=None, scales=None,
           guidance=None, steps=None, seed=0, edit_method=None, options=None) -> jobs.Edit:
    """The page's and the API's arguments as the edit job they ask for (checked); `options`:
    flat ({option: value}: each method takes its own)."""
    if photo is None:
        raise ValueError("no image given: upload a photo or pick an example below (a file the browser "
                         "could not show as an image is not uploaded)")
    extra = {"scales": _parse_scales(scales)} if kind == "sweep" else {}
    if image_scale is not None:
        extra["image_scale"] = image_scale
    return studio.edit_job(photo, source or "", target or "", kind, method, tight,
                           guidance=guidance, steps=steps, seed=seed, edit_method=edit_method,
                           variants=jobs.VARIANTS if kind == "compare" else None,
                           **extra, **dict(options or {})).check()


def edit(studio, photo, source, target, method, tight, image_scale, guidance, steps, seed,
         edit_method=None, options=None, progress=gr.Progress(), runs=None, request=None):
    """One edit; `options`: the methods' own settings ({option: value}; each method takes
    its own). Returns the plain result (`_result`), then the (photo, reconstruction) and
    (photo, edit) pairs, at the uploaded photo's size."""
    job = job_of(studio, photo, source, target, "one", method, tight, image_scale, None, guidance, steps, seed,
                 edit_method, options)
    e = run_job(studio, job, progress_fn(progress), request).results[0]
    shown, note = _shown(photo, [e])
    original = images.to_size(images.load_image(photo)[0], shown)
    notes, run_id = _notes([e]) + [note], None
    if runs is not None:
        run_id, said = saved(lambda: save_edits(runs, studio.preset.name, [e], source or "", target,
                                                e.method, tight, guidance, steps, seed, sweep=False,
                                                settings=e.settings, job=job), 1)
        notes.append(said)
    return (_result(studio, "edit", [e], notes, target, shown, run_id,
                    ["photo, reconstruction", "photo, edit"], job),
            (original, images.to_size(e.reconstruction_working, shown)), (original, images.to_size(e.output, shown)))


def edit_sweep(studio, photo, source, target, method, scales, guidance, steps, seed,
               edit_method=None, options=None, progress=gr.Progress(), runs=None, request=None):
    """Tight edits at several scales. Returns the plain result (`_result`), then the
    gallery of edits, one per scale in the order given, at the uploaded photo's size."""
    job = job_of(studio, photo, source, target, "sweep", method, True, None, scales, guidance, steps, seed,
                 edit_method, options)
    edits = run_job(studio, job, progress_fn(progress), request).results
    shown, note = _shown(photo, edits)
    measured = verdicts.sweep([(e.scale, e.metrics["preservation_ssim"], e.metrics["clip_target"]) for e in edits])
    notes, run_id = ([measured] if measured else []) + _notes(edits) + [note], None
    if runs is not None and len({e.scale for e in edits}) == len(edits):
        run_id, said = saved(lambda: save_edits(runs, studio.preset.name, edits, source or "",
                                                target, edits[0].method, True, guidance, steps, seed,
                                                sweep=True, settings=edits[0].settings, job=job), len(edits))
        notes.append(said)
    gallery = [(images.to_size(e.output, shown), f"scale {e.scale:g}") for e in edits]
    return (_result(studio, "sweep", edits, notes, target, shown, run_id,
                    [f"scale {e.scale:g}" for e in edits], job), gallery)


def edit_compare(studio, photo, source, target, method, image_scale, guidance, steps, seed,
                 options=None, progress=gr.Progress(), runs=None, request=None):
    """Every editing method, tight and plain, side by side; saved as one review item.
    Returns the plain result (`_result`), then the gallery of edits in the order of its
    "images" names."""
    job = job_of(studio, photo, source, target, "compare", method, True, image_scale, None, guidance, steps,
                 seed, None, options)
    edits = run_job(studio, job, progress_fn(progress), request).results
    shown, note = _shown(photo, edits)
    notes, run_id = _notes(edits) + [note], None
    if runs is not None:
        run_id, said = saved(lambda: save_edits(runs, studio.preset.name, edits, source or "", target,
                                                method, True, guidance, steps, seed, sweep=False,
                                                settings=dict(options or {}), job=job), len(edits))
        notes.append(said)
    names = [f"{e.edit_method} · {e.method}{' + tight' if e.tight else ''}" for e in edits]
    gallery = [(images.to_size(e.output, shown), name) for e, name in zip(edits, names)]
    return _result(studio, "compare", edits, notes, target, shown, run_id, names, job), gallery


def defaults_note(preset: str, method: str, edit_method: str) -> str:
    """What the chosen editing method does and what the inversion runs with for the edit,
    in words (the authors' settings, from the specs)."""
    own = editing.spec(edit_method)
    d = editing.inversion_settings(method, edit_method)
    text = (f"{own.help}.  \nInversion for this edit: source guidance {d['source_guidance']:g}, skip "
            f"{d['skip']:g} of the noisiest steps (the authors' settings for this pair)")
    if own.pairs_with and own.pairs_with != method:
        text += f"; its paper pairs it with **{own.pairs_with}** inversion (Compare runs it there)"
    return text + "."


def _parse_scales(text) -> list[float]:
    try:
        values = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"image scales must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError("image scales: give at least one value, e.g. 0, 0.4, 0.8")
    if len(values) > jobs.MAX_SCALES:
        raise ValueError(f"image scales: at most {jobs.MAX_SCALES} values")
    return values


def build(studio, runs=None):
    gr.Markdown(about(studio.preset))
    first_edit = studio.edit_methods[0]
    with gr.Row():
        with gr.Column(scale=1):
            photo = photo_input(label="Photo", sources=["upload", "clipboard"], height=260)
            source = gr.Textbox("", label="Source prompt", placeholder="what the photo shows", max_lines=2)
            target = gr.Textbox(label="Target prompt", placeholder="what the edit should show", max_lines=2)
            with gr.Row():
                method = Choice(inversion.REGISTRY.choices(studio.preset),
                                value=studio.methods[0], label="Inversion method")
                tight = Flag(value=True, label="Tight Inversion")
            edit_method = Choice(editing.REGISTRY.choices(studio.preset),
                                 value=first_edit, label="Editing method")
            method_help = gr.Markdown(defaults_note(studio.preset.name, studio.methods[0], first_edit))
            controls, groups = option_controls(specs(studio.preset), studio.preset.name,
                                               shown=[studio.methods[0], first_edit])
            scale = shared_slider("image_scale", label="Image scale")
            guidance = shared_slider("guidance", value=studio.preset.guidance, label="Guidance")
            with gr.Row():
                steps = steps_slider(studio)
                seed = seed_number()
            with gr.Row():
                run = gr.Button("Edit", variant="primary")
                cancel = cancel_button()
            with gr.Accordion("Scale sweep", open=True):
                scales = gr.Textbox(value=", ".join(f"{s:g}" for s in SWEEP_SCALES),
                                    label="Image scales", max_lines=1)
                with gr.Row():
                    sweep = gr.Button("Sweep scales")
                    cancel_sweep = cancel_button()
            with gr.Row():
                compare = gr.Button("Compare editing methods (tight and plain)")
                cancel_compare = cancel_button()
        with gr.Column(scale=2):
            with gr.Row():
                rec = gr.ImageSlider(label="Reconstruction (source prompt) · left: photo, right: reconstruction", type="pil",
                                     format="png", interactive=False, height=280,
                                     elem_classes="whole-image")
                out = gr.ImageSlider(label="Edit (target prompt) · left: photo, right: edit", type="pil",
                                     format="png", interactive=False, height=280,
                                     elem_classes="whole-image")
            table = gr.Dataframe(value=pd.DataFrame(columns=TABLE_COLUMNS), label="Metrics",
                                 interactive=False, wrap=True)
            legend(LEGEND)
            notes = gr.Markdown()
            # the sweep's and the comparison's results: shown once there are some
            gallery = gr.Gallery(label="Sweep: edits by image scale", format="png", columns=3, visible=False,
                                 height=560, object_fit="contain", elem_classes="result-gallery")
            plot = gr.Plot(label="Fidelity–editability trade-off", show_label=False, visible=False)
            compared = gr.Gallery(label="Compare: every editing method, tight and plain", format="png",
                                  columns=3, height=560, object_fit="contain", visible=False,
                                  elem_classes="result-gallery")
            with gr.Accordion("Result as the API returns it (JSON)", open=False):
                plain = gr.JSON(label="Result", show_label=False)
            command, download = reproduce_section()
    gr.Examples(typical.order("edit", examples(), studio.preset.name), inputs=[photo, source, target],
                label="Examples (tiny-world scenes: a colour word edited; scikit-image photos)")
    if typical.note("edit", studio.preset.name):  # long: closed until asked for
        with gr.Accordion("How typical are these examples? (measured on held-out inputs)", open=False):
            gr.Markdown(typical.note("edit", studio.preset.name))

    params = option_params(specs(studio.preset), shared=True)
    methods_doc = f"""method: inversion method, one of: {", ".join(studio.methods)}"""
    editing_doc = f"""edit_method: editing method, one of: {", ".join(studio.edit_methods)}"""

    def on_edit(v, progress, request=None):
        return edit(studio, v["photo"], v["source"], v["target"], v["method"], v["tight"], v["image_scale"],
                    v["guidance"], v["steps"], v["seed"], v["edit_method"], flat(settings_of(params, v)),
                    progress=progress, runs=runs, request=request)

    on_edit = mcp_tool("edit")(user_errors(with_options(on_edit, EDIT, params, f"""Edit a photo by
        inversion: invert it under the source prompt, edit it toward the target prompt. Returns,
        in this order: a dict {{"preset", "kind": "edit", "target", "images", "runs" (one row:
        edit_method, inversion_method, tight, image_scale, preservation_ssim, preservation_lpips
        (null if unavailable), clip_target, inverted, seconds), "working_size", "shown_size",
        "notes", "run_id"}}; then the (photo, reconstruction) pair and the (photo, edit) pair, at
        the uploaded photo's size.

        Args:
            photo: the photo (a file)
            source: what the photo shows (optional)
            target: what the edit should show
            {methods_doc}
            tight: condition both passes on the photo through IP-Adapter (Tight Inversion)
            image_scale: {jobs.SHARED["image_scale"].help} ({jobs.SHARED["image_scale"].lo:g}-{jobs.SHARED["image_scale"].hi:g})
            guidance: classifier-free guidance of the edit
            steps: inversion steps (default: the preset's)
            seed: random seed
            {editing_doc}
{{options}}
        """, "edit")))

    def on_sweep(v, progress, request=None):
        return edit_sweep(studio, v["photo"], v["source"], v["target"], v["method"], v["scales"], v["guidance"],
                          v["steps"], v["seed"], v["edit_method"], flat(settings_of(params, v)),
                          progress=progress, runs=runs, request=request)

    on_sweep = not_mcp_tool(user_errors(with_options(on_sweep, SWEEP, params, f"""Tight edits of one
        photo at several image scales. Returns, in this order: a dict {{"preset", "kind": "sweep",
        "target", "images" (one caption per scale), "runs" (one row per scale: image_scale,
        preservation_ssim, clip_target, ... as /edit), "working_size", "shown_size", "notes",
        "run_id"}}; then the gallery of edits, one per scale in the order given. The page draws
        the fidelity-editability plot from the rows.

        Args:
            photo: the photo (a file)
            source: what the photo shows (optional)
            target: what the edit should show
            {methods_doc}
            scales: image scales separated by commas, e.g. "0, 0.4, 0.8"
            guidance: classifier-free guidance of the edits
            steps: inversion steps (default: the preset's)
            seed: random seed
            {editing_doc}
{{options}}
        """, "edit_sweep")))

    def on_compare(v, progress, request=None):
        return edit_compare(studio, v["photo"], v["source"], v["target"], v["method"], v["image_scale"],
                            v["guidance"], v["steps"], v["seed"], flat(settings_of(params, v)),
                            progress=progress, runs=runs, request=request)

    on_compare = not_mcp_tool(user_errors(with_options(on_compare, COMPARE, params, f"""The same edit
        with every editing method, tight and plain, side by side (each on the inversion its paper
        pairs it with, else the one given); saved as one review item. Returns, in this order: a
        dict {{"preset", "kind": "compare", "target", "images" (one caption per edit), "runs" (one
        row per edit, as /edit), "working_size", "shown_size", "notes", "run_id"}}; then the
        gallery of edits in the order of "images".

        Args:
            photo: the photo (a file)
            source: what the photo shows (optional)
            target: what the edit should show
            {methods_doc}
            image_scale: IP-Adapter scale of the tight runs, 0-1
            guidance: classifier-free guidance of the edits
            steps: inversion steps (default: the preset's)
            seed: random seed
{{options}}
        """, "edit_compare")))

    def on_method(method, edit_method):
        return (defaults_note(studio.preset.name, method, edit_method),
                *[gr.update(visible=m in (method, edit_method)) for m in groups])

    for control in (method, edit_method):
        control.change(on_method, [method, edit_method], [method_help, *groups.values()], api_name=False)
    own = list(controls.values())
    edited = run.click(on_edit,  # each job runs on ZeroGPU priced by itself (common.execute)
                       [photo, source, target, method, tight, scale, guidance, steps, seed, edit_method, *own],
                       [plain, rec, out], api_name="edit", show_progress_on=[table, rec, out])
    swept = sweep.click(on_sweep,  # each scale's edit is a GPU call of its own (common.execute)
                        [photo, source, target, method, scales, guidance, steps, seed, edit_method, *own],
                        [plain, gallery], api_name="edit_sweep", show_progress_on=[table, gallery])
    compared_event = compare.click(on_compare,  # each method's edit is a GPU call of its own
                                   [photo, source, target, method, scale, guidance, steps, seed, *own],
                                   [plain, compared], api_name="edit_compare",
                                   show_progress_on=[table, compared])
    for event, button in ((edited, cancel), (swept, cancel_sweep), (compared_event, cancel_compare)):
        with_cancel(event, button)
        show_reproduce(event, plain, command, download)
    edited.success(lambda r: page(r)[:2], plain, [table, notes], api_visibility="private", queue=False)
    def swept_page(r):
        table_, notes_, figure = page(r)
        return table_, notes_, gr.update(value=figure, visible=True), gr.update(visible=True)

    swept.success(swept_page, plain, [table, notes, plot, gallery], api_visibility="private", queue=False)
    compared_event.success(lambda r: (*page(r)[:2], gr.update(visible=True)), plain, [table, notes, compared],
                           api_visibility="private", queue=False)
