"""Outputs checked for unsafe content before anyone sees them, on public deployments.

The checker is diffusers' `StableDiffusionSafetyChecker`, loaded with `from_pretrained`
from `CompVis/stable-diffusion-safety-checker` for every real preset (its CLIP ViT-L/14
image embedding compared with 17 concept and 3 special-care embeddings). The tiny presets
get a tiny one with the same interface and files, built with the preset from the tiny CLIP's
vision tower: it knows no concepts (every threshold at 1, the most a cosine can reach), so
it flags nothing unless a test lowers its thresholds. A flagged image is replaced by a
notice of the same size; nothing is shown, saved or rated.

On by default on Hugging Face Spaces (`SPACE_ID` set), off elsewhere;
`RECONTEXT_SAFETY_CHECKER=1` / `0` turns it on or off anywhere.
"""

from __future__ import annotations

import copy
import logging
import os
import textwrap

import torch
from PIL import Image, ImageDraw, ImageFont

REPO = "CompVis/stable-diffusion-safety-checker"
NOTICE = "Hidden: the safety checker flagged this picture."
log = logging.getLogger(__name__)


def enabled() -> bool:
    value = os.environ.get("RECONTEXT_SAFETY_CHECKER", "").strip().lower()
    if value:
        return value in ("1", "true", "yes", "on")
    return bool(os.environ.get("SPACE_ID"))


def load(source: str, device, dtype, offline: bool):
    """(checker, image processor) from a folder or Hub repo in the checker's layout."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    checker = StableDiffusionSafetyChecker.from_pretrained(source, dtype=dtype, local_files_only=offline,
                                                           attn_implementation="eager")  # its only one
    processor = CLIPImageProcessor.from_pretrained(source, local_files_only=offline)
    return checker.to(device).requires_grad_(False).eval(), processor


def flagged(checker, processor, dtype, image: Image.Image) -> bool:
    """Whether the checker flags `image` (its pixels given in `dtype`, the compute dtype)."""
    pixels = processor(images=image, return_tensors="pt").pixel_values
    pixels = pixels.to(checker.device, dtype)
    with torch.no_grad():
        _, bad = checker(clip_input=pixels, images=[torch.zeros(1)])
    return bool(bad[0])


def notice(size: tuple[int, int]) -> Image.Image:
    """What is shown instead of a flagged picture: grey, with the reason written on it."""
    img = Image.new("RGB", size, (96, 96, 96))
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(10, size[0] // 20))
    except (TypeError, OSError):  # a Pillow without FreeType: its fixed bitmap font
        font = ImageFont.load_default()
    chars = max(8, int((size[0] - 16) / max(1.0, draw.textlength("x", font=font))))
    text = "\n".join(textwrap.wrap(NOTICE, chars))
    draw.multiline_text((8, 8), text, fill=(255, 255, 255), font=font)
    return img


def write_tiny(clip, processor, folder: str) -> None:
    """A tiny checker in the Hub repo's layout, from a tiny `CLIPModel` and its image
    `processor`: its vision tower and projection, 17 + 3 concept embeddings (seeded), every
    threshold at 1 (flags nothing)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    config = copy.deepcopy(clip.config)
    config._attn_implementation = "eager"  # the checker's only one
    checker = StableDiffusionSafetyChecker(config)
    checker.vision_model.load_state_dict(clip.vision_model.state_dict())
    checker.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        checker.concept_embeds.copy_(torch.randn(checker.concept_embeds.shape, generator=g))
        checker.special_care_embeds.copy_(torch.randn(checker.special_care_embeds.shape, generator=g))
        checker.concept_embeds_weights.fill_(1.0)
        checker.special_care_embeds_weights.fill_(1.0)
    checker.save_pretrained(folder)
    processor.save_pretrained(folder)
