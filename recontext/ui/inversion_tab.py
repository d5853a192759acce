"""Inversion tab: reconstruct a photo with every method, with and without Tight Inversion."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .. import zerogpu
from ..inversion import METHODS
from ..progress import segment
from ..runs import save_reconstructions
from .common import (Choices, Slider, asset, fmt, mcp_tool, on_gpu, photo_input, progress_fn, save_run,
                     seed_number, steps_slider, user_errors)

VARIANTS = {"plain": False, "tight": True}
SLOTS = [(m, v) for m in METHODS for v in VARIANTS]  # one slider per method × variant (tiny, sdxl…)


def slots(methods) -> list[tuple[str, str]]:
    """One slider per method × variant, for the methods that fit the running preset."""
    return [(m, v) for m in methods for v in VARIANTS]
COLUMNS = ["method", "tight", "PSNR ↑", "SSIM ↑", "L2 ↓", "LPIPS ↓", "latent error ↓",
           "inversion PSNR ↑", "seconds"]
KEYS = ("psnr", "ssim", "l2", "lpips", "latent_error", "inversion_psnr")

EXAMPLES = [
    [asset("scenes", "red-circle-on-blue.png"), "a red circle on a blue background"],
    [asset("scenes", "white-triangle-on-green.png"), "a white triangle on a green background"],
    [asset("photos", "chelsea.png"), "a photo of a cat"],
    [asset("photos", "astronaut.png"), "a portrait of an astronaut"],
    [asset("photos", "coffee.png"), "a cup of coffee on a table"],
    [asset("photos", "rocket.png"), "a rocket launching"],
]

ABOUT = """Invert a photo into the model's noise and rebuild it. **DDIM** runs the sampler
backwards; **ReNoise** refines each inversion step by fixed-point iterations
([Garibi et al. 2024](https://arxiv.org/abs/2403.14602)); **edit-friendly DDPM** stores the
noise of every step, so it rebuilds the latents exactly
([Huberman-Spiegelglas et al. 2024](https://arxiv.org/abs/2304.06140)). **Tight** runs also
show the photo itself to the model through IP-Adapter, for inversion and reconstruction
alike ([Tight Inversion, 2025](https://arxiv.org/abs/2502.20376)). Drag each slider to compare
the reconstruction with the original. On flow-matching presets (FLUX) the methods are
**flow-Euler**, the flow ODE run backwards and forwards, and **RF-Inversion**, whose
controllers steer the inversion toward noise and the reconstruction back toward the photo
([Rout et al. 2024](https://arxiv.org/abs/2410.10792))."""


def reconstruct(studio, photo, prompt, methods, variants, image_scale, steps, seed,
                progress=gr.Progress(), runs=None):
    """Run every chosen method × variant; return one slider value per slot, the metrics
    table and notes. Saved as a run in `runs` when given. A plain function: tests call it
    without a browser."""
    for m in methods or []:
        studio.method(m)  # a method that does not fit this preset: ValueError naming the ones that do
    methods = [m for m in studio.methods if m in (methods or [])]
    variants = [v for v in VARIANTS if v in (variants or [])]
    if not methods:
        raise ValueError("choose at least one method")
    if not variants:
        raise ValueError("choose plain, tight or both")
    if photo is None:
        raise ValueError("no image given: upload a photo or pick an example below (a file the browser could not show as an image is not uploaded)")
    update = progress_fn(progress)
    jobs = [(m, v) for m in methods for v in variants]
    results, rows, notes = {}, [], []
    for i, (m, v) in enumerate(jobs):
        r = studio.reconstruct(
            photo, prompt=prompt or "", method=m, tight=VARIANTS[v], image_scale=image_scale,
            steps=steps, seed=seed, progress=segment(update, i, len(jobs)))
        results[(m, v)] = r
        rows.append([m, "yes" if r.tight else "no"]
                    + [fmt(r.metrics[k]) for k in KEYS]
                    + [round(r.seconds, 2)])
        notes = notes or r.notes
    first = next(iter(results.values()))
    text = [f"The VAE's own round trip reaches PSNR {fmt(first.metrics['vae_psnr'])} dB on this photo: "
            "the ceiling for every method. *Inversion PSNR* compares each reconstruction with that "
            "round trip, so it measures the inversion alone."]
    if first.metrics["lpips"] is None:
        text.append("LPIPS: unavailable (install the optional `lpips` package).")
    text += notes
    if runs is not None:
        text.append(save_run(lambda: save_reconstructions(
            runs, studio.preset.name, list(results.values()), prompt or "", steps, seed, image_scale),
            len(results)))
    sliders = []
    for slot in slots(studio.methods):
        r = results.get(slot)
        label = f"{slot[0]}{' + tight' if slot[1] == 'tight' else ''}"
        if r is None:
            sliders.append(gr.ImageSlider(value=None, visible=False))
        else:
            sliders.append(gr.ImageSlider(value=(r.source, r.output), visible=True,
                                          label=f"{label}: PSNR {fmt(r.metrics['psnr'])} dB, "
                                                f"inversion PSNR {fmt(r.metrics['inversion_psnr'])} dB"))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return (*sliders, table, "\n".join(f"- {t}" for t in text))


def build(studio, runs=None):
    gr.Markdown(ABOUT)
    with gr.Row():
        with gr.Column(scale=1):
            photo = photo_input(label="Photo", sources=["upload", "clipboard"], height=280)
            prompt = gr.Textbox("", label="Caption (optional)", placeholder="describe the photo",
                                max_lines=2)
            methods = Choices(studio.methods, value=studio.methods, label="Methods")
            variants = Choices(
                [("without image conditioning", "plain"), ("with Tight Inversion", "tight")],
                value=list(VARIANTS), label="Run each method")
            scale = Slider(0.0, 1.0, value=0.4, step=0.05, label="Tight: image scale",
                           info="IP-Adapter scale, the same for inversion and reconstruction")
            with gr.Row():
                steps = steps_slider(studio)
                seed = seed_number()
            run = gr.Button("Invert and reconstruct", variant="primary")
        with gr.Column(scale=2):
            table = gr.Dataframe(value=pd.DataFrame(columns=COLUMNS), wrap=True, interactive=False,
                                 label="Metrics (against the photo at the model's size)")
            notes = gr.Markdown()
            sliders = []
            shown = slots(studio.methods)
            for rows in (shown[i:i + 2] for i in range(0, len(shown), 2)):
                with gr.Row():
                    for m, v in rows:
                        sliders.append(gr.ImageSlider(
                            label=f"{m}{' + tight' if v == 'tight' else ''}", type="pil",
                            format="png", visible=False, interactive=False, height=260,
                            elem_classes="whole-image"))
    gr.Examples(EXAMPLES, inputs=[photo, prompt], label="Examples (tiny-world scenes with their captions; scikit-image photos)")

    @mcp_tool("reconstruct")
    @user_errors
    def handler(photo, prompt, methods, variants, image_scale, steps, seed, progress=gr.Progress()):
        """Invert a photo and reconstruct it with each chosen method, with and without
        Tight Inversion; returns the reconstructions, a metrics table and notes.

        Args:
            photo: the photo (a file)
            prompt: an optional caption of the photo
            methods: the preset's methods: ddim, renoise, edit-friendly (epsilon presets) or
                flow-euler, rf-inversion (flow presets)
            variants: plain (no image conditioning), tight (Tight Inversion), or both
            image_scale: IP-Adapter scale for the tight runs, 0-1
            steps: inversion steps (default: the preset's)
            seed: random seed
        """
        return reconstruct(studio, photo, prompt, methods, variants, image_scale, steps, seed, progress,
                           runs)

    def work(photo, prompt, methods, variants, image_scale, steps, *_):
        return zerogpu.reconstruct(studio.preset, methods or [], variants or [], int(steps))

    run.click(on_gpu(handler, work, studio.preset, lambda: studio.models.loaded), [photo, prompt, methods, variants, scale, steps, seed],
              [*sliders, table, notes], api_name="reconstruct")
