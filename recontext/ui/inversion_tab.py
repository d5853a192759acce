"""Inversion tab: reconstruct a photo with every method, with and without Tight Inversion."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .. import inversion, jobs, verdicts
from ..examples import inversion as core_examples
from ..tiny import typical
from ..runs import save_reconstructions
from .. import images
from .common import (Choices, LPIPS_MISSING, bullets, cancel_button, fmt, legend, mcp_tool, number,
                    option_controls, option_params, photo_input, progress_fn, reproduce_section, run_job, saved,
                    seed_number, settings_of, shared_slider, show_chosen, show_reproduce, shown_size, size_note,
                    steps_slider, uploaded_size, user_errors, with_cancel, with_options)

VARIANTS = jobs.VARIANTS  # the one encoding of plain / tight
FIXED = ["photo", "prompt", "methods", "variants", "image_scale", "steps", "seed"]  # then each method's options


def slots(methods) -> list[tuple[str, str]]:
    """One slider per method × variant, for the methods that fit the running preset."""
    return [(m, v) for m in methods for v in VARIANTS]


COLUMNS = ["method", "tight", "PSNR ↑", "SSIM ↑", "L2 ↓", "LPIPS ↓", "latent error ↓",
           "inversion PSNR ↑", "seconds"]
KEYS = ("psnr", "ssim", "l2", "lpips", "latent_error", "inversion_psnr")
LEGEND = {
    "tight": "yes: the photo also conditioned inversion and reconstruction through IP-Adapter (Tight Inversion)",
    "PSNR ↑": "peak signal-to-noise ratio of the reconstruction against the photo, in dB (30+ is close; "
              "the VAE's round trip, stated below the table, is the most any method reaches)",
    "SSIM ↑": "structural similarity to the photo, 0 to 1 (1: identical)",
    "L2 ↓": "mean squared difference of pixels on a 0–1 scale (0: identical)",
    "LPIPS ↓": "learned perceptual distance, 0 = identical (shown when the optional lpips package is installed)",
    "latent error ↓": "how far the reconstructed latents are from the photo's, relative to the photo's latents' size "
                      "(0: the same latents; unitless)",
    "inversion PSNR ↑": "the reconstruction against the VAE's round trip of the photo, in dB: the inversion's own "
                        "error, the autoencoder's left out (∞: bit-exact, as edit-friendly DDPM replays its noise)",
    "seconds": "wall time of that run (inversion + reconstruction)",
}

EXAMPLES = core_examples()  # recontext/examples.py

ABOUT = """Invert a photo into the model's noise and rebuild it, with each method below.
**Tight** runs also show the photo itself to the model through IP-Adapter, for inversion and
reconstruction alike ([Tight Inversion, 2025](https://arxiv.org/abs/2502.20376)). Drag each
slider to compare the reconstruction with the original."""


def about(preset) -> str:
    """The tab's text for the running preset: its own methods, its own size."""
    methods = "\n".join(f"- **{s.title}**: {s.help}" for s in inversion.REGISTRY.specs(preset))
    return (ABOUT + "\n\n" + methods + f"\n\nRunning preset **`{preset.name}`**: the model works at "
            f"{preset.resolution} pixels on the longer side; your photo's reconstructions are "
            "shown upscaled to the photo's own size.")


INFINITE = ("*inversion PSNR ∞*: that reconstruction equals the VAE round trip exactly (no "
            "error at all; edit-friendly DDPM stores every step's noise, so it can rebuild the "
            "latents bit for bit).")


def job_of(studio, photo, prompt, methods, variants, image_scale, steps, seed, options=None) -> jobs.Reconstruct:
    """The page's and the API's arguments as the job they ask for (checked)."""
    for m in methods or []:
        studio.method(m)  # a method that does not fit this preset: ValueError naming the ones that do
    methods = [m for m in studio.methods if m in (methods or [])]
    if not methods:
        raise ValueError("choose at least one method")
    if not variants:
        raise ValueError("choose plain, tight or both")
    if photo is None:
        raise ValueError("no image given: upload a photo or pick an example below (a file the browser could not show as an image is not uploaded)")
    return jobs.Reconstruct(image=jobs.Input.of(photo), prompt=prompt or "", methods=methods,
                            variants=jobs.check_variants(variants), image_scale=image_scale, steps=steps, seed=seed,
                            options={m: o for m, o in (options or {}).items() if m in methods}).check()


def reconstruct(studio, photo, prompt, methods, variants, image_scale, steps, seed,
                progress=gr.Progress(), runs=None, options=None, request=None):
    """Run every chosen method × variant. Returns the plain result first, a dict (see
    `result`), then one (photo, reconstruction) pair per slot of `slots(studio.methods)`
    in that order, None for a slot not run; both images of a pair at the uploaded photo's
    size. `options`: {method: {option: value}}, each method's own settings. Saved as a run
    in `runs` when given. A plain function: tests call it without a browser."""
    job = job_of(studio, photo, prompt, methods, variants, image_scale, steps, seed, options)
    ran = run_job(studio, job, progress_fn(progress), request)
    results = {(r.method, "tight" if r.tight else "plain"): r for r in ran.results}
    notes = next((r.notes for r in ran.results if r.notes), [])
    prompt, steps, seed, image_scale = job.prompt, job.steps, job.seed, job.image_scale
    first = next(iter(results.values()))
    text = [f"The VAE's own round trip reaches PSNR {fmt(first.metrics['vae_psnr'])} dB on this photo: "
            "the ceiling for every method. *Inversion PSNR* compares each reconstruction with that "
            "round trip, so it measures the inversion alone."]
    text[:0] = verdicts.reconstructions([(label(k), k[0], k[1] == "tight", r.metrics) for k, r in results.items()],
                                        baseline=studio.methods[0])  # the preset's plain baseline
    if any(r.metrics["inversion_psnr"] == float("inf") for r in results.values()):
        text.append(INFINITE)
    if first.metrics["lpips"] is None:
        text.append(LPIPS_MISSING)
    text.append(work_note(results))
    if typical.holds("inversion", studio.preset.name) is False:  # said beside the result, with the figure
        text.append(typical.note("inversion", studio.preset.name, short=True))
    working = first.output.size
    shown = shown_size(working, uploaded_size(photo))
    text.append(size_note(working, shown))
    text += notes
    run_id = None
    if runs is not None:
        run_id, note = saved(lambda: save_reconstructions(
            runs, studio.preset.name, list(results.values()), prompt or "", steps, seed, image_scale, job),
            len(results))
        text.append(note)
    original = images.to_size(images.load_image(photo)[0], shown)
    pairs = [(original, images.to_size(results[slot].output, shown)) if slot in results else None
             for slot in slots(studio.methods)]
    return (result(studio, results, text, working, shown, run_id, job), *pairs)


def work_note(results) -> str:
    """How much work the request was: the page runs every chosen method × variant (six runs
    by default), the CLI's `invert` one, so the page's request takes about that many times
    as long (issue 27's 82 s against 10 s)."""
    seconds = sum(r.seconds for r in results.values())
    if len(results) == 1:
        return f"1 run, {seconds:.1f} s."
    return (f"{len(results)} runs (each chosen method, plain and tight as chosen), {seconds:.1f} s in all: "
            "untick methods or variants for a quicker answer; `recontext invert` runs one at a time.")


def result(studio, results, notes, working, shown, run_id, job=None) -> dict:
    """The plain result: {"preset", "images" (the slot names, in the order the pairs
    follow), "runs" (per run: method, tight, each metric, seconds), "working_size",
    "shown_size", "notes", "run_id" (None when not saved), "job" (the job that ran, as
    `python -m recontext run` takes it)}. Metrics are numbers, "inf" for ∞ and None for n/a."""
    return {"preset": studio.preset.name,
            "images": [label(slot) for slot in slots(studio.methods)],
            "runs": [{"method": m, "tight": v == "tight",
                      **{k: number(r.metrics[k]) for k in (*KEYS, "vae_psnr")},
                      "seconds": round(r.seconds, 2)} for (m, v), r in results.items()],
            "working_size": list(working), "shown_size": list(shown), "notes": list(notes),
            "run_id": run_id, "job": job.to_dict() if job is not None else None}


def label(slot) -> str:
    return f"{slot[0]}{' + tight' if slot[1] == 'tight' else ''}"


def page(studio, result: dict):
    """The page's view of a plain result: each slider shown or hidden with its label, the
    metrics table (the LPIPS column left out when no run has it), the notes."""
    done = {label((r["method"], "tight" if r["tight"] else "plain")): r for r in result["runs"]}
    sliders = []
    for slot in slots(studio.methods):
        r = done.get(label(slot))
        sliders.append(gr.update(visible=False) if r is None else gr.update(
            visible=True, label=f"{label(slot)}: PSNR {fmt(r['psnr'])} dB, inversion PSNR "
                                f"{fmt(r['inversion_psnr'])} dB · left: photo, right: reconstruction"))
    rows = [[r["method"], "yes" if r["tight"] else "no", *[fmt(r[k]) for k in KEYS], r["seconds"]]
            for r in result["runs"]]
    table = pd.DataFrame(rows, columns=COLUMNS)
    if all(r["lpips"] is None for r in result["runs"]):
        table = table.drop(columns=["LPIPS ↓"])
    return (*sliders, table, bullets(result["notes"]))


def build(studio, runs=None):
    gr.Markdown(about(studio.preset))
    with gr.Row():
        with gr.Column(scale=1):
            photo = photo_input(label="Photo", sources=["upload", "clipboard"], height=280)
            prompt = gr.Textbox("", label="Caption (optional)", placeholder="describe the photo",
                                max_lines=2)
            methods = Choices(inversion.REGISTRY.choices(studio.preset),
                              value=studio.methods, label="Methods")
            variants = Choices(
                [("without image conditioning", "plain"), ("with Tight Inversion", "tight")],
                value=list(VARIANTS), label="Run each method")
            scale = shared_slider("image_scale", label="Tight: image scale")
            controls, groups = option_controls(inversion.REGISTRY.specs(studio.preset), studio.preset.name,
                                               shown=studio.methods)
            with gr.Row():
                steps = steps_slider(studio)
                seed = seed_number()
            with gr.Row():
                run = gr.Button("Invert and reconstruct", variant="primary")
                cancel = cancel_button()
        with gr.Column(scale=2):
            table = gr.Dataframe(value=pd.DataFrame(columns=COLUMNS), wrap=True, interactive=False,
                                 label="Metrics (against the photo at the model's size)")
            legend(LEGEND)
            notes = gr.Markdown()
            sliders = []
            shown = slots(studio.methods)
            for rows in (shown[i:i + 2] for i in range(0, len(shown), 2)):
                with gr.Row():
                    for m, v in rows:  # the first method's pair shown empty: progress is drawn there
                        sliders.append(gr.ImageSlider(
                            label=f"{m}{' + tight' if v == 'tight' else ''}", type="pil",
                            format="png", visible=m == shown[0][0], interactive=False, height=260,
                            elem_classes="whole-image"))
            with gr.Accordion("Result as the API returns it (JSON)", open=False):
                plain = gr.JSON(label="Result", show_label=False)
            command, download = reproduce_section()
    gr.Examples(typical.order("inversion", EXAMPLES, studio.preset.name), inputs=[photo, prompt],
                label="Examples (tiny-world scenes with their captions; scikit-image photos)")
    if typical.note("inversion", studio.preset.name):  # long: closed until asked for
        with gr.Accordion("How typical are these examples? (measured on held-out inputs)", open=False):
            gr.Markdown(typical.note("inversion", studio.preset.name))

    params = option_params(inversion.REGISTRY.specs(studio.preset))

    def handler(values, progress, request=None):
        return reconstruct(studio, values["photo"], values["prompt"], values["methods"], values["variants"],
                           values["image_scale"], values["steps"], values["seed"], progress, runs,
                           settings_of(params, values), request)

    handler = mcp_tool("reconstruct")(user_errors(with_options(handler, FIXED, params, f"""Invert a photo and
        reconstruct it with each chosen method, with and without Tight Inversion. Returns, in this
        order: a dict {{"preset", "images" (the slot names in the order the pairs follow, e.g.
        {", ".join(label(s) for s in slots(studio.methods)[:3])}, ...), "runs" (per run: method, tight, psnr,
        ssim, l2, lpips, latent_error, inversion_psnr, vae_psnr, seconds; "inf" for infinite, null
        for unavailable), "working_size", "shown_size", "notes", "run_id"}}; then one (photo,
        reconstruction) image pair per slot, at the uploaded photo's size, null for a slot not run.

        Args:
            photo: the photo (a file)
            prompt: an optional caption of the photo
            methods: one or more of the preset's methods: {", ".join(studio.methods)}
            variants: plain (no image conditioning), tight (Tight Inversion), or both
            image_scale: {jobs.SHARED["image_scale"].help} ({jobs.SHARED["image_scale"].lo:g}-{jobs.SHARED["image_scale"].hi:g})
            steps: inversion steps (default: the preset's)
            seed: random seed
{{options}}
        """, "reconstruct")))

    event = run.click(handler,  # the job runs on ZeroGPU priced by itself (common.execute)
                      [photo, prompt, methods, variants, scale, steps, seed, *controls.values()], [plain, *sliders],
                      api_name="reconstruct", show_progress_on=[table, *sliders])
    with_cancel(event, cancel)
    show_reproduce(event, plain, command, download)
    event.success(lambda r: page(studio, r), plain, [*sliders, table, notes], api_visibility="private",
                  queue=False)
    show_chosen(methods, groups)

