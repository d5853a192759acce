"""The web page: a header and one tab per task. Only this package imports gradio."""

from __future__ import annotations

import gradio as gr

from . import edit_tab, garment_tab, inversion_tab, review_tab, served
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
    enlarged pixel for pixel. `studio` None: a review-only page (no preset)."""
    return CSS + (PIXELATED if studio is not None and studio.preset.resolution < 256 else "")


CACHE_DELETE = (3600, 24 * 3600)  # Gradio's delete_cache: hourly, files older than a day
REVIEW_CACHE_DELETE = (600, served.VIEW_TTL)  # a review-only deployment: every 10 min, older than an hour


def build_review_demo(data=None) -> gr.Blocks:
    """A review-only page (`RECONTEXT_APP=review`), for public rating campaigns: the Review
    tab and its endpoints only. No generation endpoint and no model: a visitor who could
    run a method on the served photo and prompt would reproduce the outputs pixel for
    pixel and see which method made which, so blind public rating needs this."""
    data = data or open_data()
    with gr.Blocks(title="recontext review", delete_cache=REVIEW_CACHE_DELETE) as demo:
        gr.Markdown("# recontext review\nRate image outputs blind. The methods are named after you rate.")
        gr.Markdown(review_tab.saving_note(data))
        rater = review_tab.remembered_rater()
        review_tab.build(None, data, demo, rater)
    return demo


def build_demo(studio, data=None) -> gr.Blocks:
    """The studio page. `data` is the data folder (runs and ratings; default: open it
    from `RECONTEXT_DATA_DIR`)."""
    data = data or open_data()
    with gr.Blocks(title="recontext studio", delete_cache=CACHE_DELETE) as demo:
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
