"""The web page: a header and one tab per task. Only this package imports gradio."""

from __future__ import annotations

import gradio as gr

from . import edit_tab, garment_tab, inversion_tab, review_tab
from ..data import open_data
from .common import header


def build_demo(studio, data=None) -> gr.Blocks:
    """The studio page. `data` is the data folder (runs and ratings; default: open it
    from `RECONTEXT_DATA_DIR`)."""
    data = data or open_data()
    with gr.Blocks(title="recontext studio") as demo:
        gr.Markdown(header(studio))
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
