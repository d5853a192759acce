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

from dataclasses import replace

import torch

from ... import images
from ...methods import Option, Spec
from ...models import image_key
from ...attention import GarmentAttention
from ..adapted import Adapted

SPEC = Spec("magicclothing", family="epsilon", label="MagicClothing", order=15, cost=3,
            presets=("tiny", "sd15"), needs=("unet", "garment-extractor"), guidance=("garment_guidance",),
            licence="non-commercial (the published MagicClothing weights)",
            help="a garment extractor (a UNet copy) feeds the garment into self-attention; joint "
                 "garment/text guidance. Non-commercial licence (the published weights)",
            options=(Option("garment_guidance", 2.5, 0.0, 10.0, "garment guidance: how strongly the "
                            "garment is followed (0: not at all; the authors' demo: 2.5)", step=0.1,
                            label="Garment guidance"),
                     Option("scale", 1.0, 0.0, 2.0, "the garment's hidden states times this in the "
                            "self-attention (1: as published)", step=0.05, label="Garment scale")))

ROWS = (0.0, 1.0, 1.0)  # which guidance rows see the garment: unconditional, garment, garment + text


def source(bench) -> tuple[str, str]:
    """The preset's extractor checkpoint (folder or Hub repo, file); ValueError where none."""
    src = bench.preset.garment_extractor
    if not src:
        raise ValueError(f"MagicClothing has no garment extractor for the {bench.preset.name} preset")
    if bench.preset.local:
        bench.models.pipe  # the tiny preset's extractor is assembled with the preset
    return src


def load(bench, settings) -> None:
    bench.models.garment_extractor(source(bench))


def work(settings) -> dict:
    return {"encodes": 1, "evaluations": 1}  # the garment's latents, one extractor pass


def extract(models, extractor, garment) -> dict:
    """The extractor's self-attention inputs for `garment`: layer name -> (1, tokens, channels)."""
    img, _ = images.fit(garment.convert("RGB"), models.preset.resolution, models.size_multiple)
    latents = models.encode(img)
    empty = models.text_cond("", img.size, 1.0)
    t = torch.zeros(latents.shape[0], device=models.device, dtype=torch.long)
    with torch.no_grad():
        extractor(latents.to(models.dtype), t, encoder_hidden_states=empty.text.to(models.dtype),
                  added_cond_kwargs=empty.added, return_dict=False)
    return {name: proc.recorded for name, proc in extractor.attn_processors.items()
            if isinstance(proc, GarmentAttention)}


def joint(cond, garment_guidance: float):
    """`cond` (two rows: negative, prompt) as the three rows of joint guidance."""
    pick = lambda t: t[[0, 0, 1]] if torch.is_tensor(t) and t.shape[0] == 2 else t  # noqa: E731
    added = {k: [pick(e) for e in v] if isinstance(v, list) else pick(v) for k, v in cond.added.items()}
    g, gg = cond.guidance, float(garment_guidance)
    return replace(cond, text=pick(cond.text), added=added,
                   mix=lambda eps: eps[0] + g * (eps[2] - eps[1]) + gg * (eps[1] - eps[0]))


def adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted:
    models = bench.models
    extractor = models.garment_extractor(source(bench))
    states, cached = bench.cached(("magicclothing", id(extractor), image_key(garment)),
                                  lambda: extract(models, extractor, garment))
    present = list(ROWS)

    def condition(cond):
        if not cond.guided:  # one row, which sees the garment: no garment guidance
            present[:] = [1.0]
            return cond
        return joint(cond, settings["garment_guidance"])

    adapter = models.garment_attention(states, present, settings["scale"])
    return Adapted(prompt, adapter=adapter, cached=cached, condition=condition)
