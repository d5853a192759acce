"""Stage 2 of the tiny world (`train.py`): CLIP, contrastive on captioned scenes, garments
and figures."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from . import arch, world
from .arch import save_weights
from .trainer import Stage, garment_sample, rng_for
from .world import HELD_OUT_SEED


def clip_bank(seed: int, proc, scenes_per_caption: int = 24, garments: int = 1500):
    """Pixels and captions for contrastive training, rendered once: every caption of the
    grammar in `scenes_per_caption` random geometries, garments on white and figures."""
    rng = np.random.default_rng([seed, 98])
    images, caps = [], []
    for cap in world.captions():
        colour, shape, background = _parse(cap)
        for _ in range(scenes_per_caption):
            g = world.describe(int(rng.integers(1 << 30)))
            images.append(world.draw(colour, shape, background, g["size"], g["cx"], g["cy"])[0])
            caps.append(cap)
    for _ in range(garments):
        img, cap = garment_sample(rng)
        images.append(img)
        caps.append(cap)
    pixels = torch.cat([proc(images[i:i + 500], return_tensors="pt").pixel_values
                        for i in range(0, len(images), 500)])
    return pixels, caps


def clip_batch(rng, caps: list[str], scenes: int = 48, others: int = 16) -> list[int]:
    """Indices of bank items whose captions are all different: `scenes` of the grammar
    and `others` garments or figures."""
    by_caption: dict[str, list[int]] = {}
    for i, c in enumerate(caps):
        by_caption.setdefault(c, []).append(i)
    grammar = set(world.captions())
    picked = []
    for names, n in ((sorted(grammar), scenes), (sorted(set(by_caption) - grammar), others)):
        for c in rng.choice(len(names), n, replace=False):
            items = by_caption[names[c]]
            picked.append(items[rng.integers(len(items))])
    return picked


def _parse(cap: str) -> tuple[str, str, str]:
    w = cap.split()
    return w[1], w[2], w[5]


def train_clip(out: str, work: str, seed: int, steps: int, device: torch.device = torch.device("cpu")) -> dict:
    """CLIP, contrastive, on batches of 64 distinct captions (`clip_batch`) on every device."""
    torch.manual_seed(seed)
    tok, proc = arch.tokenizer(), arch.image_processor()
    clip = arch.clip(tok).to(device).train()
    stage = Stage("clip", work, {"clip": clip}, clip.parameters(), lr=1e-3, steps=steps, device=device)
    pixels_all, caps_all = clip_bank(seed, proc)
    pixels_all = pixels_all.to(device)

    def loss_fn(step):
        idx = clip_batch(rng_for(seed, "clip", step), caps_all)
        pixels = pixels_all[idx]
        ids = tok([caps_all[i] for i in idx], padding=True, return_tensors="pt").to(device)
        out_ = clip(input_ids=ids.input_ids, attention_mask=ids.attention_mask, pixel_values=pixels,
                    return_loss=True)
        return out_.loss

    summary = stage.run(loss_fn, save_every=250)
    clip.eval()
    summary["retrieval_top1_held_out"] = clip_retrieval(clip, tok, proc)
    save_weights(clip, os.path.join(out, "clip.safetensors"))
    return summary


@torch.no_grad()
def clip_retrieval(clip, tok, proc, n: int = 200) -> float:
    """Fraction of held-out scenes whose own caption ranks first among all 90."""
    caps = world.captions()
    ids = tok(caps, padding=True, return_tensors="pt").to(clip.device)
    text = F.normalize(clip.get_text_features(**ids).pooler_output, dim=-1)
    scenes = [world.scene(HELD_OUT_SEED + i) for i in range(n)]
    pixels = proc([s[0] for s in scenes], return_tensors="pt").pixel_values.to(clip.device)
    image = F.normalize(clip.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    best = (image @ text.T).argmax(1)
    return float(np.mean([caps[int(b)] == s[1] for b, s in zip(best, scenes)]))
