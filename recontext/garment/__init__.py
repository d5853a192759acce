"""Garment → model: put a garment onto a generated person or scene from a text prompt.

Three methods, each a short function over the shared models:
- `hyperlora`: the hypernetwork reads the garment and predicts LoRA weights (one pass);
- `ip-adapter`: the garment as IP-Adapter's image prompt;
- `finetune-lora`: a LoRA fitted to the garment photo for N steps (the slow baseline);
- `prompt-only`: the prompt alone, no garment information (the floor of every comparison).
Each result times adapting to the garment apart from generating the image. Every adapter
is disabled again before the call returns, so the other tabs see the base model.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import images
from ..models import image_key
from ..progress import Progress, ticker
from ..sampling import sample
from . import train
from .hyperlora import HyperLoRA, peft_state, resolve

METHODS = ("hyperlora", "ip-adapter", "finetune-lora", "prompt-only")
PAGE_METHODS = ("hyperlora", "ip-adapter", "prompt-only")  # checked on the page at first (the fine-tune is slow)
FINETUNE_STEPS = 200
IDENTIFIER = "sks garment"  # what the fine-tuned LoRA learned to call the garment
GET_ONE = ("set RECONTEXT_HYPERLORA to a checkpoint folder or Hub repo, or train one: "
           "python -m recontext train-hyperlora --preset {preset} --data MANIFEST.csv --out CKPT_DIR")


@dataclass
class Dressed:
    image: Image.Image
    method: str
    adapt_seconds: float      # reading the garment: prediction, embeddings or fine-tuning
    generate_seconds: float   # sampling and decoding
    cached: bool              # the adaptation came from the cache
    garment: Image.Image      # the garment as loaded
    notes: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0  # one-off work first (model load, checkpoint); not in the above


def get(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def generate(studio, cond, steps: int, seed: int, tick=None, what: str = "generation") -> Image.Image:
    return sample(studio.models, cond, studio.preset.resolution, steps, seed, tick, what)


# -- adapting to a garment ----------------------------------------------------------------
def hyperlora_checkpoint(studio) -> str:
    """Where the HyperLoRA checkpoint lives: `RECONTEXT_HYPERLORA`, else the preset's (the
    tiny preset's is trained with the tiny world). ValueError saying how to get one otherwise."""
    source = os.environ.get("RECONTEXT_HYPERLORA") or studio.preset.hyperlora
    if not source:
        raise ValueError("HyperLoRA is unavailable for this preset: "
                         + GET_ONE.format(preset=studio.preset.name))
    if studio.preset.local and source == studio.preset.hyperlora:
        studio.models.pipe  # the tiny preset's checkpoint is assembled with the preset
    return resolve(source)  # a folder, or a Hub repo id (the models mirror, the Hub cache)


def hyperlora_model(studio, checkpoint: str | None = None) -> HyperLoRA:
    path = resolve(checkpoint) if checkpoint else hyperlora_checkpoint(studio)
    key = ("hyperlora", os.path.abspath(path))
    if key not in studio.garment_cache:
        models = studio.models
        studio.garment_cache.put(key, HyperLoRA.load(
            path, models.pipe.unet, models.pipe.image_encoder.config.hidden_size).to(models.device))
    return studio.garment_cache.get(key)


def predict(studio, garment: Image.Image, checkpoint: str | None = None) -> tuple[dict, bool]:
    """HyperLoRA's LoRA weights for a garment (peft state dict at scale 1), cached by image."""
    hyper = hyperlora_model(studio, checkpoint)
    key = ("weights", id(hyper), image_key(garment))
    if key in studio.garment_cache:
        return studio.garment_cache.get(key), True
    with torch.no_grad():
        weights = hyper(studio.models.vision_tokens(garment))
    return studio.garment_cache.put(key, peft_state(weights)), False


def finetune_key(garment: Image.Image, steps: int, seed: int) -> tuple:
    return ("finetune", image_key(garment), steps, seed)


def finetuned(studio, garment: Image.Image, steps: int, seed: int, tick=None) -> tuple[dict, bool]:
    """The fine-tuned LoRA for a garment (peft state dict), cached per garment, steps, seed."""
    key = finetune_key(garment, steps, seed)
    if key in studio.garment_cache:
        return studio.garment_cache.get(key), True
    return studio.garment_cache.put(key, train.finetune_lora(studio.models, garment, steps, seed,
                                                             tick=tick)), False


def _scaled(state: dict, scale: float) -> dict:
    return {k: v * scale if ".lora_B." in k else v for k, v in state.items()}


# -- the call ------------------------------------------------------------------------------
def dress(studio, garment, prompt: str, method: str, scale: float, steps: int, seed: int,
          guidance: float, finetune_steps: int, checkpoint: str | None = None,
          progress: Progress | None = None) -> Dressed:
    models = studio.models
    img, notes = images.load_image(garment)
    with models.lock:
        setup = studio.setup(progress)
        if method == "hyperlora":  # loading the checkpoint: one-off, kept in the cache
            start = time.perf_counter()
            if progress is not None:
                progress(0, 0, "HyperLoRA: loading the checkpoint")
            hyperlora_model(studio, checkpoint)
            setup += time.perf_counter() - start
        start = time.perf_counter()
        if method == "prompt-only":  # nothing to adapt: the floor
            adapter, text, tight, cached = contextlib.nullcontext(), prompt, False, True
            tick = ticker(progress, steps, "prompt-only: generating")
        elif method == "ip-adapter":  # adapting = the garment's image embeddings
            cached = image_key(img) in models._embeds
            models.image_embeds(img)
            adapter, text, tight = contextlib.nullcontext(), prompt, True
            tick = ticker(progress, steps, "ip-adapter: generating")
        elif method == "hyperlora":
            hyper = hyperlora_model(studio, checkpoint)
            state, cached = predict(studio, img, checkpoint)
            adapter = models.lora(train.ADAPTER, [m[0] for m in hyper.config.modules],
                                  hyper.config.rank, _scaled(state, scale))
            text, tight = prompt, False
            tick = ticker(progress, steps, "hyperlora: generating")
        else:
            todo = 0 if finetune_key(img, finetune_steps, seed) in studio.garment_cache else finetune_steps
            tick = ticker(progress, todo + steps, "finetune-lora: fitting the LoRA, then generating")
            state, cached = finetuned(studio, img, finetune_steps, seed, tick)
            modules = [k.rsplit(".lora_", 1)[0] for k in state if ".lora_A." in k]
            rank = next(v for k, v in state.items() if ".lora_A." in k).shape[0]
            adapter = models.lora(train.FINETUNE_ADAPTER, modules, rank, _scaled(state, scale))
            text, tight = f"{prompt}, {IDENTIFIER}", False
        with adapter:
            adapt = time.perf_counter() - start
            cond = studio.condition(text, img, tight, scale if tight else 0.0, guidance)
            gen_start = time.perf_counter()
            image = generate(studio, cond, steps, seed, tick, method)
        return Dressed(image, method, adapt, time.perf_counter() - gen_start, cached, img, notes,
                       setup)
