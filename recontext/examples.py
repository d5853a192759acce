"""The example inputs each tab offers, as data (no gradio): the inversion tab's scenes and
photos with their captions, the editing tab's edits (`assets/edits.json`), the garment
tab's garments with a scene prompt. The tabs show them; `tiny/typical.py` measures them
and orders them (`typical.order`)."""

from __future__ import annotations

import json
import os

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")


def asset(*parts: str) -> str:
    return os.path.join(ASSETS, *parts)


def relative(path: str) -> str:
    """An asset's path under `assets/`, with forward slashes (how examples are named)."""
    return os.path.relpath(path, ASSETS).replace(os.sep, "/")


# -- inversion tab: [photo, caption] -------------------------------------------------------
INVERSION = [
    ("scenes/red-circle-on-blue.png", "a red circle on a blue background"),
    ("scenes/white-triangle-on-green.png", "a white triangle on a green background"),
    ("photos/chelsea.png", "a photo of a cat"),
    ("photos/astronaut.png", "a portrait of an astronaut"),
    ("photos/coffee.png", "a cup of coffee on a table"),
    ("photos/rocket.png", "a rocket launching"),
]


def inversion() -> list[list]:
    return [[asset(*p.split("/")), caption] for p, caption in INVERSION]


# -- editing tab: [photo, source prompt, target prompt] ----------------------------------------
def edits() -> list[list]:
    with open(asset("edits.json")) as f:
        return [[asset(*e["photo"].split("/")), e["source"], e["target"]] for e in json.load(f)]


# -- garment tab: [garment, scene prompt] --------------------------------------------------------
GARMENT_SCENES = ["at the beach", "at the park", "at the street", "at the studio"]
GARMENT_KINDS = ("t-shirt", "dress", "trousers", "skirt")
# the synthetic seed each example garment was drawn from (`garment.synthetic.garment(seed, 256)`,
# assets/garments/SOURCES.md): where its kind sits on the figure and its colour as worn
GARMENT_SEEDS = {"blue-checked-trousers.png": 7, "green-dotted-dress.png": 1,
                 "green-plain-t-shirt.png": 2, "orange-plain-trousers.png": 5}


def garments() -> list[list]:
    """Each example garment with a scene prompt that names its kind, not its look (the
    garment photo carries the look): the tiny world's prompt grammar."""
    folder = asset("garments")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    out = []
    for i, f in enumerate(files):
        kind = next(k for k in GARMENT_KINDS if k in f)
        worn = kind if kind == "trousers" else f"a {kind}"
        out.append([os.path.join(folder, f), f"a person wearing {worn} {GARMENT_SCENES[i % len(GARMENT_SCENES)]}"])
    return out


def of(tab: str) -> list[list]:
    """The examples of `tab` ("inversion", "edit", "garment"), in their listed order."""
    return {"inversion": inversion, "edit": edits, "garment": garments}[tab]()
