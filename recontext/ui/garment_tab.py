"""Garment tab: a garment photo onto a generated person or scene, three methods side by side."""

from __future__ import annotations

import os

import gradio as gr
import pandas as pd

from .. import examples as core_examples
from .. import garment as garments
from ..tiny import typical
from .. import jobs
from ..progress import weighted  # noqa: F401  (the dress job's progress, moved to the core)
from ..runs import save_dressed
from .common import (Choice, Choices, bullets, cancel_button, legend, mcp_tool, option_controls, option_params,
                    photo_input, progress_fn, reproduce_section, run_job, saved, seed_number, settings_of,
                    show_chosen, show_reproduce, steps_slider, user_errors, with_cancel, with_options)

ABOUT = """Upload a garment and describe a scene: each method below puts the garment on a
generated person, side by side. Each result says how long adapting to the garment took,
apart from generating, and what the method needs."""


def about(preset) -> str:
    """The tab's text: each garment method of the preset, from its spec (with its licence)."""
    lines = [f"- **{s.title}**: {s.help}" + (f" *Licence: {s.licence}.*" if s.licence else "")
             for s in garments.REGISTRY.specs(preset)]
    return ABOUT + ("\n\n" + "\n".join(lines) if lines else "")


TIMING_COLUMNS = ["method", "adapt seconds", "cached", "generate seconds", "setup seconds (one-off)", "needs"]
LEGEND = {
    "adapt seconds": "time to adapt to this garment (HyperLoRA: one pass; fine-tuned LoRA: its training steps) ↓",
    "cached": "yes: this garment's adaptation was reused from an earlier run; n/a: the method reads no garment",
    "generate seconds": "time to generate the picture ↓",
    "setup seconds (one-off)": "loading the model or a checkpoint on the first run only; not part of the method's time",
    "needs": "what the method needs beyond the base model (a trained checkpoint, an extra model, fine-tuning)",
}
FIXED = ["garment", "prompt", "methods", "checkpoint", "steps", "seed"]  # then each method's options


def examples() -> list[list]:
    return core_examples.garments()  # recontext/examples.py


def hyperlora_note(studio) -> str:
    """What the page says about the HyperLoRA checkpoint this preset uses."""
    from ..garment.methods.hyperlora import GET_ONE

    if os.environ.get("RECONTEXT_HYPERLORA"):
        return f"HyperLoRA checkpoint: `{os.environ['RECONTEXT_HYPERLORA']}`."
    if studio.preset.local:
        return ("HyperLoRA checkpoint: the tiny world's, trained on 256 procedural garment → "
                "worn-figure pairs (see `recontext/tiny/weights/MODEL_CARD.md`). **Prompt only** "
                "is the floor: the same prompt with no garment information.")
    if studio.preset.hyperlora:
        return f"HyperLoRA checkpoint: `{studio.preset.hyperlora}`."
    return "**HyperLoRA is unavailable for this preset**: " + GET_ONE.format(preset=studio.preset.name)


def checkpoint_choices(studio) -> list[tuple[str, str]]:
    """The HyperLoRA checkpoints this server offers, as (label, key): only what its
    configuration names. A client picks a key; no path from a client is ever read."""
    from ..garment.methods.hyperlora import source as hyperlora_source

    source = hyperlora_source(studio.preset)
    if not source:
        return [("none configured for this preset", "none")]
    if os.environ.get("RECONTEXT_HYPERLORA"):
        name = os.path.basename(os.path.normpath(source)) or source
        return [(f"$RECONTEXT_HYPERLORA ({name})", "default")]
    return [(f"the {studio.preset.name} preset's", "default")]


def weights(methods, steps, settings: dict) -> list[int]:
    """Units of work per method: its sampling steps, plus its adapting steps (a fine-tune's)."""
    steps = int(steps or 0) or 1
    return [steps + int(garments.work(m, settings.get(m)).get("finetune_steps", 0)) for m in methods]


def job_of(studio, garment, prompt, methods, options, checkpoint, steps, seed) -> jobs.Dress:
    """The page's and the API's arguments as the job they ask for (checked)."""
    methods = [m for m in studio.garment_methods if m in (methods or [])]
    if not methods:
        raise ValueError("choose at least one method")
    if checkpoint not in ("default", "none", None):  # a key of checkpoint_choices, never a path
        raise ValueError("checkpoint: choose one of the checkpoints this server offers")
    if garment is None:
        raise ValueError("no image given: upload a garment photo or pick an example below (a file the browser could not show as an image is not uploaded)")
    return jobs.Dress(garment=jobs.Input.of(garment), prompt=prompt or "", methods=methods, steps=steps, seed=seed,
                      options={m: o for m, o in (options or {}).items() if m in methods}).check()


def dress(studio, garment, prompt, methods, options, checkpoint, steps, seed, progress=gr.Progress(),
          runs=None, request=None):
    """Run each chosen method with its `options` ({method: {option: value}}). Returns the
    plain result first, a dict (see `result`), then one image per method of the preset
    (`studio.garment_methods`), in that order, None for a method not run. Saved as a run
    when given `runs`."""
    job = job_of(studio, garment, prompt, methods, options, checkpoint, steps, seed)
    ran = run_job(studio, job, progress_fn(progress), request)
    results = {g.method: g for g in ran.results}
    notes = list(ran.notes)
    for g in results.values():
        notes += [n for n in g.notes if n not in notes]
    if any(g.setup_seconds >= 0.5 for g in results.values()):
        notes.append("**setup seconds** is one-off work of the first run (loading the model, "
                     "preparing the HyperLoRA checkpoint): it is not part of any method's time.")
    nothing = [m for m, g in results.items() if g.cached is None]
    if nothing:
        notes.append(f"**cached** is n/a for {', '.join(nothing)}: it reads no garment, so there is nothing "
                     "to adapt or cache.")
    run_id = None
    if runs is not None and results:
        run_id, note = saved(lambda: save_dressed(
            runs, studio.preset.name, results, prompt,
            {"settings": {m: g.settings for m, g in results.items()}, "steps": steps}, seed, job), len(results))
        notes.append(note)
    return (result(studio, results, notes, run_id, job),
            *[results[m].image if m in results else None for m in studio.garment_methods])


def result(studio, results, notes, run_id, job=None) -> dict:
    """The plain result: {"preset", "images" (the method names, in the order the images
    follow), "runs" (per method run: method, adapt_seconds, cached (null for a method that
    adapts nothing), generate_seconds, setup_seconds, needs, settings), "notes", "run_id"
    (None when not saved), "job" (the job that ran, as `python -m recontext run` takes it)}."""
    return {"preset": studio.preset.name, "images": list(studio.garment_methods),
            "runs": [{"method": m, "adapt_seconds": round(g.adapt_seconds, 3),
                      "cached": None if g.cached is None else bool(g.cached),
                      "generate_seconds": round(g.generate_seconds, 3),
                      "setup_seconds": round(g.setup_seconds, 2),
                      "needs": ", ".join(garments.spec(m).needs), "settings": g.settings}
                     for m, g in results.items()],
            "notes": list(notes), "run_id": run_id, "job": job.to_dict() if job is not None else None}


def page(result: dict):
    """The page's view of a plain result: each method's image shown or hidden, the timing
    table ("cached" n/a for a method that adapts nothing), the notes."""
    done = {r["method"] for r in result["runs"]}
    shown = [gr.update(visible=m in done, label=m) for m in result["images"]]  # timings are in the table
    rows = [[r["method"], r["adapt_seconds"],
             "n/a" if r["cached"] is None else "yes" if r["cached"] else "no",
             r["generate_seconds"], r["setup_seconds"], r["needs"]] for r in result["runs"]]
    return (*shown, pd.DataFrame(rows, columns=TIMING_COLUMNS), bullets(result["notes"]))


def build(studio, runs=None):
    gr.Markdown(about(studio.preset))
    specs = garments.REGISTRY.specs(studio.preset)
    if studio.preset.flow:
        gr.Markdown(f"**Not on this preset.** `{studio.preset.name}` is a flow-matching model; "
                    "the garment methods adapt a UNet. Start the studio with a UNet preset "
                    "(`--preset tiny`, or `sdxl` on a GPU) to dress garments.")
    with gr.Row():
        with gr.Column(scale=1):
            garment = photo_input(label="Garment", sources=["upload", "clipboard"], height=240)
            prompt = gr.Textbox(label="Scene prompt", placeholder="a person wearing a t-shirt at the beach",
                                max_lines=2)
            methods = Choices(garments.REGISTRY.choices(studio.preset), value=garments.page_methods(studio.preset),
                              label="Methods")
            with gr.Accordion("Method options", open=False):
                choices = checkpoint_choices(studio)
                checkpoint = Choice(choices, value=choices[0][1], label="HyperLoRA checkpoint",
                                    info="the checkpoints this server is configured with")
                controls, groups = option_controls(specs, studio.preset.name, shown=garments.page_methods(studio.preset))
            with gr.Row():
                steps = steps_slider(studio)
                seed = seed_number()
            with gr.Row():
                run = gr.Button("Dress", variant="primary", interactive=not studio.preset.flow)
                cancel = cancel_button()
            gr.Markdown(hyperlora_note(studio))
        with gr.Column(scale=2):
            images, names = [], studio.garment_methods
            for row in (names[i:i + 3] for i in range(0, len(names), 3)):  # at most three a row
                with gr.Row():
                    images += [gr.Image(label=m, type="pil", format="png", interactive=False,  # shown empty
                                        visible=m in garments.page_methods(studio.preset),  # for progress
                                        height=280, elem_classes="result-image") for m in row]
            table = gr.Dataframe(value=pd.DataFrame(columns=TIMING_COLUMNS), label="Timings (seconds)",
                                 interactive=False, wrap=True)
            legend(LEGEND)
            notes = gr.Markdown()
            with gr.Accordion("Result as the API returns it (JSON)", open=False):
                plain = gr.JSON(label="Result", show_label=False)
            command, download = reproduce_section()
    if typical.note("garment", studio.preset.name):  # long: closed until asked for
        with gr.Accordion("How typical are these examples? (measured on held-out inputs)", open=False):
            gr.Markdown(typical.note("garment", studio.preset.name))
    gr.Examples(typical.order("garment", examples(), studio.preset.name), inputs=[garment, prompt],
                label="Example garments (procedural drawings, see assets/garments/SOURCES.md)")

    params = option_params(specs)

    def handler(values, progress, request=None):
        return dress(studio, values["garment"], values["prompt"], values["methods"], settings_of(params, values),
                     values["checkpoint"], values["steps"], values["seed"], progress=progress, runs=runs,
                     request=request)

    handler = mcp_tool("dress")(user_errors(with_options(handler, FIXED, params, f"""Put a garment onto a
        generated person or scene with each chosen method. Returns, in this order: a dict
        {{"preset", "images" (method names in the order the images follow: {", ".join(studio.garment_methods)}),
        "runs" (per method run: method, adapt_seconds, cached (null for a method that adapts
        nothing), generate_seconds, setup_seconds, needs, settings), "notes", "run_id"}}; then one
        image per method in that order, null for a method not run.

        Args:
            garment: the garment photo (a file)
            prompt: the scene, e.g. "a person wearing a t-shirt at the beach"
            methods: any of {", ".join(studio.garment_methods)}
            checkpoint: which configured HyperLoRA checkpoint ("default")
            steps: sampling steps (default: the preset's)
            seed: random seed
{{options}}
        """, "dress")))

    event = run.click(handler,  # the job runs on ZeroGPU priced by itself (common.execute)
                      [garment, prompt, methods, checkpoint, steps, seed, *controls.values()],
                      [plain, *images], api_name="dress", show_progress_on=[table, *images])
    with_cancel(event, cancel)
    show_reproduce(event, plain, command, download)
    event.success(page, plain, [*images, table, notes], api_visibility="private", queue=False)
    show_chosen(methods, groups)
