"""MagicClothing (Chen et al. 2024, ShineChen1024/MagicClothing): a garment extractor, a copy
of the UNet, reads the garment's latents at t = 0 under the empty prompt; each of the
denoising UNet's self-attention layers then attends to the extractor's hidden states of the
same layer as well as to its own. Joint classifier-free guidance over three rows
(unconditional without the garment, the garment without the text, both):

    eps = eps_u + guidance * (eps_full - eps_garment) + garment_guidance * (eps_garment - eps_u)

as the authors' pipeline (pipelines/OmsDiffusionPipeline.py: the rows
[negative, negative, prompt] with the garment zeroed in the first,
`noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_cloth) +
cloth_guidance_scale * (noise_pred_cloth - noise_pred_uncond)`). Their demo: 20 steps,
guidance 5, garment guidance 2.5. The authors mask the garment photo with a segmentation
net first; here the garment is taken as given (a garment on a plain background).
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch

from ... import images
from ...methods import Option, Spec
from ...models import image_key
from ...tiny import EXTRACTOR, EXTRACTOR_FILE
from .. import extractor as garment_extractor
from ..adapted import Adapted

# the garment extractor of each preset it runs on: (a folder or Hub repo, the file), a UNet
# state dict in diffusers' key layout; a local preset's folder is inside the preset's own
EXTRACTORS = {
    "tiny": (EXTRACTOR, EXTRACTOR_FILE),  # trained by `python -m recontext.garment.train_extractor`
    "sd15": ("ShineChen1024/MagicClothing", "magic_clothing_768_vitonhd_joint.safetensors"),
}

SPEC = Spec("magicclothing", family="epsilon", label="MagicClothing", order=15, cost=3,
            presets=tuple(EXTRACTORS), needs=("unet", "garment-extractor"), guidance=("garment_guidance",),
            licence="non-commercial (the published MagicClothing weights)",
            help="a garment extractor (a UNet copy) feeds the garment into self-attention; joint "
                 "garment/text guidance. Non-commercial licence (the published weights)",
            options=(Option("garment_guidance", 2.5, 0.0, 10.0, "garment guidance: how strongly the "
                            "garment is followed (0: not at all; the authors' demo: 2.5)", step=0.1,
                            label="Garment guidance"),
                     Option("scale", 1.0, 0.0, 2.0, "the garment's hidden states times this in the "
                            "self-attention (1: as published)", step=0.05, label="Garment scale")))

ROWS = (0.0, 1.0, 1.0)  # which guidance rows see the garment: unconditional, garment, garment + text


def source(preset) -> tuple[str, str]:
    """The preset's extractor checkpoint (folder or Hub repo, file); ValueError where none."""
    if preset.name not in EXTRACTORS:
        raise ValueError(f"MagicClothing has no garment extractor for the {preset.name} preset")
    where, file = EXTRACTORS[preset.name]
    return (os.path.join(preset.folder, where) if preset.local else where), file


def extractor(bench, settings=None):
    """The preset's garment extractor (`garment.extractor.load`), loaded once and kept by
    the model owner. ValueError naming the file when it cannot be had, before the base
    model loads (a Hub preset)."""
    models, src = bench.models, source(bench.preset)

    def make():
        if bench.preset.local:
            models.pipe  # the tiny preset's extractor is assembled with the preset
        return garment_extractor.load(models, garment_extractor.find_file(*src, offline=bench.preset.offline))

    return models.component(("garment-extractor", *src), make)


COMPONENTS = {"garment-extractor": extractor}  # what SPEC.needs beyond the shared model, and how to load it


def work(settings) -> dict:
    return {"encodes": 1, "evaluations": 1}  # the garment's latents, one extractor pass


def extract(models, ref, garment) -> dict:
    """The extractor's self-attention inputs for `garment`: layer name -> (1, tokens, channels)."""
    img, _ = images.fit(garment.convert("RGB"), models.preset.resolution, models.size_multiple)
    latents = models.encode(img)
    empty = models.text_cond("", img.size, 1.0)
    t = torch.zeros(latents.shape[0], device=models.device, dtype=torch.long)
    with torch.no_grad():
        ref(latents.to(models.dtype), t, encoder_hidden_states=empty.text.to(models.dtype),
                  added_cond_kwargs=empty.added, return_dict=False)
    models.count_evaluations(latents.shape[0])
    return garment_extractor.recorded(ref)


def joint(cond, garment_guidance: float):
    """`cond` (two rows: negative, prompt) as the three rows of joint guidance."""
    pick = lambda t: t[[0, 0, 1]] if torch.is_tensor(t) and t.shape[0] == 2 else t  # noqa: E731
    added = {k: [pick(e) for e in v] if isinstance(v, list) else pick(v) for k, v in cond.added.items()}
    g, gg = cond.guidance, float(garment_guidance)
    return replace(cond, text=pick(cond.text), added=added,
                   mix=lambda eps: eps[0] + g * (eps[2] - eps[1]) + gg * (eps[1] - eps[0]))


def adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted:
    models, ref = bench.models, extractor(bench)
    states, cached = bench.cached((SPEC.name, id(ref), image_key(garment)), lambda: extract(models, ref, garment))
    present = list(ROWS)

    def condition(cond):
        if not cond.guided:  # one row, which sees the garment: no garment guidance
            present[:] = [1.0]
            return cond
        return joint(cond, settings["garment_guidance"])

    adapter = garment_extractor.reading(models, states, present, settings["scale"])
    return Adapted(prompt, adapter=adapter, cached=cached, condition=condition)
