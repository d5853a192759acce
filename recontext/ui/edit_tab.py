"""Text editing tab: invert, regenerate with an edited prompt, sweep the image scale."""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from ..editing import SWEEP_SCALES, sweep_plot
from ..inversion import COST, METHODS
from ..runs import save_edits
from .common import (Slider, asset, fmt, mcp_tool, not_mcp_tool, on_gpu, photo_input, progress_fn,
                     save_run, seed_number, steps_slider, user_errors)

ABOUT = """Invert the photo under its **source prompt**, then regenerate it from that noise
under the **target prompt**. With **Tight** on, the photo also conditions both passes through
IP-Adapter at the same scale ([Tight Inversion](https://arxiv.org/abs/2502.20376)): a higher
scale keeps more of the photo and lets the edit land less. **Sweep** runs the edit at several
scales and plots that trade-off. Changing only the target prompt or guidance reuses the
cached inversion."""

METRIC_NAMES = {"preservation_ssim": "preservation: SSIM to photo ↑",
                "preservation_lpips": "preservation: LPIPS ↓",
                "clip_target": "edit alignment: CLIP(output, target) ↑"}


def examples() -> list[list]:
    with open(asset("edits.json")) as f:
        return [[asset(e["photo"]), e["source"], e["target"]] for e in json.load(f)]


TABLE_COLUMNS = ["image scale", *METRIC_NAMES.values(), "inverted", "seconds"]


def _table(edits) -> pd.DataFrame:
    return pd.DataFrame([{"image scale": e.scale, **{METRIC_NAMES[k]: fmt(v) for k, v in e.metrics.items()},
                          "inverted": "yes" if e.inverted else "cached", "seconds": round(e.seconds, 2)}
                         for e in edits])


def _notes(edits) -> str:
    notes = list(dict.fromkeys(n for e in edits for n in e.notes))
    if edits and edits[0].metrics["preservation_lpips"] is None:
        notes.append("LPIPS: unavailable (install the optional `lpips` package).")
    return "\n".join(f"- {n}" for n in notes)


def edit(studio, photo, source, target, method, tight, image_scale, guidance, steps, seed,
         progress=gr.Progress(), runs=None):
    e = studio.edit(photo, source or "", target or "", method=method, tight=tight,
                    image_scale=image_scale, guidance=guidance, steps=steps, seed=seed,
                    progress=progress_fn(progress))
    notes = _notes([e])
    if runs is not None:
        notes += "\n- " + save_run(lambda: save_edits(runs, studio.preset.name, [e], source or "", target,
                                                    method, tight, guidance, steps, seed, sweep=False), 1)
    return (e.source, e.reconstruction_working), (e.source, e.output), _table([e]), notes


def edit_sweep(studio, photo, source, target, method, scales, guidance, steps, seed,
               progress=gr.Progress(), runs=None):
    values = _parse_scales(scales)
    edits = studio.edit_sweep(photo, source or "", target or "", scales=values, method=method,
                              guidance=guidance, steps=steps, seed=seed,
                              progress=progress_fn(progress))
    notes = _notes(edits)
    if runs is not None and len({e.scale for e in edits}) == len(edits):
        notes += "\n- " + save_run(lambda: save_edits(runs, studio.preset.name, edits, source or "",
                                                    target, method, True, guidance, steps, seed,
                                                    sweep=True), len(edits))
    gallery = [(e.output, f"scale {e.scale:g}") for e in edits]
    return gallery, sweep_plot(edits, target), _table(edits), notes


def _parse_scales(text) -> list[float]:
    try:
        values = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"image scales must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError("image scales: give at least one value, e.g. 0, 0.4, 0.8")
    if len(values) > 12:
        raise ValueError("image scales: at most 12 values")
    return values


def build(studio, runs=None):
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column(scale=1):
            photo = photo_input(label="Photo", sources=["upload", "clipboard"], height=260)
            source = gr.Textbox("", label="Source prompt", placeholder="what the photo shows", max_lines=2)
            target = gr.Textbox(label="Target prompt", placeholder="what the edit should show", max_lines=2)
            with gr.Row():
                method = gr.Dropdown(list(METHODS), value="ddim", label="Inversion method")
                tight = gr.Checkbox(value=True, label="Tight Inversion")
            scale = Slider(0.0, 1.0, value=0.4, step=0.05, label="Image scale",
                           info="IP-Adapter scale for inversion and edit alike")
            guidance = Slider(1.0, 15.0, value=7.5, step=0.5, label="Guidance")
            with gr.Row():
                steps = steps_slider(studio)
                seed = seed_number()
            run = gr.Button("Edit", variant="primary")
            with gr.Accordion("Scale sweep", open=True):
                scales = gr.Textbox(value=", ".join(f"{s:g}" for s in SWEEP_SCALES),
                                    label="Image scales", max_lines=1)
                sweep = gr.Button("Sweep scales")
        with gr.Column(scale=2):
            with gr.Row():
                rec = gr.ImageSlider(label="Reconstruction (source prompt) vs photo", type="pil",
                                     format="png", interactive=False, height=280,
                                     elem_classes="whole-image")
                out = gr.ImageSlider(label="Edit (target prompt) vs photo", type="pil",
                                     format="png", interactive=False, height=280,
                                     elem_classes="whole-image")
            table = gr.Dataframe(value=pd.DataFrame(columns=TABLE_COLUMNS), label="Metrics",
                                 interactive=False, wrap=True)
            notes = gr.Markdown()
            with gr.Row():
                gallery = gr.Gallery(label="Sweep: edits by image scale", format="png", columns=3,
                                     height=300)
                plot = gr.Plot(label="Fidelity–editability trade-off", show_label=False)
    gr.Examples(examples(), inputs=[photo, source, target],
                label="Examples (tiny-world scenes: a colour word edited; scikit-image photos)")

    @mcp_tool("edit")
    @user_errors
    def on_edit(photo, source, target, method, tight, image_scale, guidance, steps, seed,
                progress=gr.Progress()):
        """Edit a photo by inversion: invert it under the source prompt, regenerate it under
        the target prompt; returns reconstruction and edit (each beside the photo), metrics
        and notes.

        Args:
            photo: the photo (a file)
            source: what the photo shows (optional)
            target: what the edit should show
            method: inversion method: ddim, renoise or edit-friendly
            tight: condition both passes on the photo through IP-Adapter (Tight Inversion)
            image_scale: IP-Adapter scale for the tight edit, 0-1
            guidance: classifier-free guidance of the edit
            steps: inversion steps (default: the preset's)
            seed: random seed
        """
        return edit(studio, photo, source, target, method, tight, image_scale, guidance, steps,
                    seed, progress=progress, runs=runs)

    @not_mcp_tool
    @user_errors
    def on_sweep(photo, source, target, method, scales, guidance, steps, seed,
                 progress=gr.Progress()):
        """Tight edits of one photo at several image scales, with the fidelity-editability
        plot.

        Args:
            photo: the photo (a file)
            source: what the photo shows (optional)
            target: what the edit should show
            method: inversion method: ddim, renoise or edit-friendly
            scales: image scales separated by commas, e.g. "0, 0.4, 0.8"
            guidance: classifier-free guidance of the edits
            steps: inversion steps (default: the preset's)
            seed: random seed
        """
        return edit_sweep(studio, photo, source, target, method, scales, guidance, steps, seed,
                          progress=progress, runs=runs)

    def edit_calls(photo, source, target, method, tight, scale, guidance, steps, *_):
        return (COST[method] + 2) * int(steps)  # invert + rebuild, then a guided regeneration

    def sweep_calls(photo, source, target, method, scales, guidance, steps, *_):
        return (COST[method] + 2) * int(steps) * len(_parse_scales(scales))

    run.click(on_gpu(on_edit, edit_calls), [photo, source, target, method, tight, scale, guidance, steps, seed],
              [rec, out, table, notes], api_name="edit")
    sweep.click(on_gpu(on_sweep, sweep_calls), [photo, source, target, method, scales, guidance, steps, seed],
                [gallery, plot, table, notes], api_name="edit_sweep")
