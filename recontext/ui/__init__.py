"""The web page: a header and one tab per task. Only this package imports gradio."""

from __future__ import annotations

import gradio as gr

from . import edit_tab, inversion_tab
from .common import header


def build_demo(studio) -> gr.Blocks:
    with gr.Blocks(title="recontext studio") as demo:
        gr.Markdown(header(studio))
        with gr.Tabs():
            with gr.Tab("Inversion", id="inversion"):
                inversion_tab.build(studio)
            with gr.Tab("Text editing", id="edit"):
                edit_tab.build(studio)
    return demo
