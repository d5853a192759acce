"""HyperLoRA (Tooploox & eBay, NeurIPS 2024): the hypernetwork reads the garment and
predicts LoRA weights for the UNet in one pass; no fine-tuning per garment."""

from __future__ import annotations

import os

import torch

from ...methods import Option, Spec
from ...models import image_key
from .. import train
from ..adapted import Adapted, scaled
from ..hyperlora import HyperLoRA, peft_state, resolve

GET_ONE = ("set RECONTEXT_HYPERLORA to a checkpoint folder or Hub repo, or train one: "
           "python -m recontext train-hyperlora --preset {preset} --data MANIFEST.csv --out CKPT_DIR")

SPEC = Spec("hyperlora", family="epsilon", label="HyperLoRA", order=0, cost=2, needs=("unet", "checkpoint"),
            help="a hypernetwork predicts LoRA weights from the garment photo: one pass, no fine-tuning",
            options=(Option("scale", 1.0, 0.0, 2.0, "0 = the prompt alone … 1 = the garment as trained … 2 = stronger",
                            step=0.05, label="LoRA scale"),
                     Option("checkpoint", None, kind="text", label="Checkpoint", page=False,
                            help="a HyperLoRA checkpoint folder or Hub repo (default: the preset's)")))


def source(preset) -> str | None:
    """The checkpoint this server uses: `RECONTEXT_HYPERLORA`, else the preset's (the tiny
    preset's is trained with the tiny world); None where neither names one."""
    return os.environ.get("RECONTEXT_HYPERLORA") or preset.hyperlora


def find_checkpoint(bench) -> str:
    """Where the HyperLoRA checkpoint lives (`source`, resolved to a folder). ValueError
    saying how to get one where none is configured."""
    where = source(bench.preset)
    if not where:
        raise ValueError("HyperLoRA is unavailable for this preset: " + GET_ONE.format(preset=bench.preset.name))
    if bench.preset.local and where == bench.preset.hyperlora:
        bench.models.pipe  # the tiny preset's checkpoint is assembled with the preset
    return resolve(where)  # a folder, or a Hub repo id (the models mirror, the Hub cache)


def model(bench, path: str | None = None) -> HyperLoRA:
    """The hypernetwork at `path` (default: `find_checkpoint(bench)`), loaded once and kept."""
    path = resolve(path) if path else find_checkpoint(bench)

    def make():
        models = bench.models
        return HyperLoRA.load(path, models.pipe.unet, models.pipe.image_encoder.config.hidden_size).to(models.device)

    return bench.cached(("hyperlora", os.path.abspath(path)), make)[0]


def predict(bench, garment, checkpoint: str | None = None) -> tuple[dict, bool]:
    """HyperLoRA's LoRA weights for a garment (peft state dict at scale 1), cached by image."""
    hyper = model(bench, checkpoint)

    def make():
        with torch.no_grad():
            return peft_state(hyper(bench.models.vision_tokens(garment)))

    return bench.cached(("weights", id(hyper), image_key(garment)), make)


def checkpoint(bench, settings) -> HyperLoRA:
    """The hypernetwork of the checkpoint `settings` name (default: the preset's)."""
    return model(bench, settings.get("checkpoint"))


COMPONENTS = {"checkpoint": checkpoint}  # what SPEC.needs beyond the shared model, and how to load it


def adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted:
    hyper = model(bench, settings.get("checkpoint"))
    state, cached = predict(bench, garment, settings.get("checkpoint"))
    adapter = bench.models.lora(train.ADAPTER, [m[0] for m in hyper.config.modules], hyper.config.rank,
                                scaled(state, settings["scale"]))
    return Adapted(prompt, adapter=adapter, cached=cached)
