"""The web page: a header and one tab per task. Only this package imports gradio."""

from __future__ import annotations

import gradio as gr

from . import edit_tab, garment_tab, inversion_tab, review_tab
from ..data import open_data
from .common import header


def theme() -> gr.themes.Base:
    """Gradio's default look with every weight the page uses served from Gradio's own
    files (the default declares 400 and 600 only, so bold text fell back to another
    font), and system fonts behind it: nothing is fetched from outside."""
    sans = gr.themes.LocalFont("Source Sans Pro", weights=(400, 600, 700))
    mono = gr.themes.LocalFont("IBM Plex Mono", weights=(400, 600, 700))
    return gr.themes.Default(font=[sans, "ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=[mono, "ui-monospace", "monospace"])


CSS = """
/* tables: long headers wrap between words instead of running off the right edge, and never
   inside a word (Gradio's wrapped cells break anywhere: "tigh t", "second s") */
.table-wrap th, .table-wrap td { white-space: normal !important; }
.table-wrap th *, .table-wrap td *, .cell-wrap * { word-break: normal !important; overflow-wrap: normal !important; }
/* before/after sliders: the whole image, letterboxed in the box, not a zoomed crop (Gradio
   sizes the picture by the box's width, so a square image overflowed a wide box's height) */
.whole-image img { object-fit: contain !important; width: 100% !important; height: 100% !important;
                   max-height: 100% !important; }
/* result images fill their box, letterboxed: a small model's 128-px output is shown
   enlarged, not as a thumbnail in the middle of an empty frame (Gradio's scale-down) */
.result-image img { object-fit: contain !important; }
"""
PIXELATED = """
/* a low-resolution preset: enlarge pixel for pixel instead of blurring */
.whole-image img, .result-image img, .result-gallery img { image-rendering: pixelated; }
"""


def css(studio) -> str:
    """The page's CSS; for presets below 256 px (the tiny world's 128 px) results are
    enlarged pixel for pixel."""
    return CSS + (PIXELATED if studio.preset.resolution < 256 else "")


def build_demo(studio, data=None) -> gr.Blocks:
    """The studio page. `data` is the data folder (runs and ratings; default: open it
    from `RECONTEXT_DATA_DIR`)."""
    data = data or open_data()
    with gr.Blocks(title="recontext studio") as demo:
        title, _, about = header(studio).partition("\n")
        gr.Markdown(f"{title}\nRunning preset **`{studio.preset.name}`**. Every long button shows its progress "
                    "over the results; a result that looks wrong says so in its notes.")
        with gr.Accordion("About this studio, its tabs and the running preset", open=False):
            gr.Markdown(about)
        gr.Markdown(review_tab.saving_note(data))
        rater = review_tab.remembered_rater()
        with gr.Tabs():
            with gr.Tab("Garment → model", id="garment"):
                garment_tab.build(studio, data.runs)
            with gr.Tab("Inversion", id="inversion"):
                inversion_tab.build(studio, data.runs)
            with gr.Tab("Text editing", id="edit"):
                edit_tab.build(studio, data.runs)
            with gr.Tab("Review", id="review"):
                review_tab.build(studio, data, demo, rater)
    return demo
