"""The papers' claims, measured in the tiny world: one function per claim, used by the
tests (which assert thresholds) and by `bench/tiny_world.py` / `bench/garment_fidelity.py`
(which print the numbers). Every input here is held out of training: scene seeds from
`world.HELD_OUT_SEED` on, garments from 10 000 on, and the photos named by the caller.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from PIL import Image

from ..jobs import SHARED, VARIANTS
from .. import metrics
from ..garment import synthetic
from ..inversion.schedule import ddim_step
from . import world
from .world import HELD_OUT_SEED

NAMES = list(world.COLOURS)
PALETTE = np.array([world.COLOURS[n] for n in NAMES], np.float32) / 255
GARMENT_SEED = 10_000  # HyperLoRA trains on pairs 0..255
SCALES = {"ip-adapter": 0.6}  # the garment tab's default scales (LoRA scales: 1.0)
MISMATCHED = "hyperlora, next garment"


def as_float(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), np.float32) / 255


def colour_names(pixels: np.ndarray) -> np.ndarray:
    """Index into NAMES of the nearest named colour, per pixel (pixels: (..., 3) in 0-1)."""
    d = ((pixels[..., None, :] - PALETTE) ** 2).sum(-1)
    return d.argmin(-1)


def held_out_scenes(n: int, offset: int = 0) -> list[tuple[Image.Image, str, np.ndarray]]:
    return [world.scene(HELD_OUT_SEED + offset + i) for i in range(n)]


# -- the autoencoder ------------------------------------------------------------------------
def vae_psnr(studio, paths: list[str]) -> list[float]:
    """Round-trip PSNR of each photo at the preset's working size, as the studio encodes."""
    out = []
    for p in paths:
        photo = studio.prepare(world.load_photo(p))
        out.append(metrics.psnr(photo.image, photo.vae_roundtrip))
    return out


# -- generation follows the prompt -----------------------------------------------------------
COMBOS = [("red", "circle", "blue"), ("green", "square", "yellow"), ("blue", "triangle", "white"),
          ("yellow", "circle", "black"), ("white", "square", "red"), ("black", "triangle", "green"),
          ("red", "square", "white"), ("blue", "circle", "yellow")]


def follows_prompt(image: Image.Image, colour: str, background: str) -> bool:
    """The border is mostly the named background colour, and the commonest other named
    colour in the image is the shape's."""
    names = colour_names(as_float(image))
    border = Counter(names[world.border(names.shape[0])].tolist()).most_common(1)[0][0]
    rest = Counter(names[names != NAMES.index(background)].tolist()).most_common(1)
    return NAMES[border] == background and bool(rest) and NAMES[rest[0][0]] == colour


def prompt_following(studio, combos=COMBOS, seeds=(0, 1), steps=None, guidance=None) -> tuple[float, list]:
    results = []
    for colour, shape, background in combos:
        for seed in seeds:
            img = studio.generate(world.caption(colour, shape, background), steps=steps, seed=seed,
                                  guidance=guidance)
            results.append(((colour, shape, background, seed), follows_prompt(img, colour, background)))
    return float(np.mean([ok for _, ok in results])), results


# -- Tight Inversion improves reconstruction ---------------------------------------------
def inversion_inputs(n_scenes: int = 6) -> list[tuple[Image.Image, str]]:
    """The example photos (no caption) and held-out scenes (their caption)."""
    photos = [(world.load_photo(p), "") for p in world.example_photos()]
    return photos + [(img, cap) for img, cap, _ in held_out_scenes(n_scenes)]


def tight_psnr(studio, method: str, inputs=None, steps=None, scale: float = SHARED["image_scale"].default) -> dict:
    """Per input, PSNR against the input of the plain and the tight (at `scale`)
    reconstruction, and of the VAE round trip: lists under "plain", "tight", "vae"."""
    inputs = inputs or inversion_inputs()
    psnr = {"plain": [], "tight": [], "vae": []}
    for img, prompt in inputs:
        for variant in VARIANTS:
            r = studio.reconstruct(img, prompt, method=method, tight=variant == "tight",
                                   image_scale=scale, steps=steps)
            psnr[variant].append(r.metrics["psnr"])
        psnr["vae"].append(r.metrics["vae_psnr"])
    return psnr


def tight_gain(studio, method: str, inputs=None, steps=None, scale: float = SHARED["image_scale"].default) -> dict:
    """Mean PSNR against the input, tight at `scale` and plain, and their difference;
    `ceiling`: the most any inversion could gain over plain (the VAE round trip's PSNR,
    which a perfect inversion reaches, minus plain's)."""
    psnr = tight_psnr(studio, method, inputs, steps, scale)
    plain, tight, vae = (float(np.mean(psnr[k])) for k in ("plain", "tight", "vae"))
    return {"plain": plain, "tight": tight, "gain": tight - plain, "ceiling": vae - plain}


def adapter_x0_error(studio, inputs=None, level=950, scale: float = 1.0, seed: int = 0) -> dict:
    """How much the image adapter tells the model: the RMS error (latent units) of its clean
    latent prediction from the input noised to `level` (a timestep; on flow presets a sigma),
    under the input's prompt with no image, with the input's own image at `scale`, and with
    the next input's image."""
    inputs = inputs or inversion_inputs()
    models, gen = studio.models, torch.Generator().manual_seed(seed)
    studio.setup()
    prepared = [(studio.prepare(img), prompt) for img, prompt in inputs]
    errors = {"none": [], "own": [], "other": []}
    with models.lock, torch.no_grad():
        for i, (photo, prompt) in enumerate(prepared):
            x0 = photo.latents
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            if models.flow:
                noisy = (1 - level) * x0 + level * noise
            else:
                noisy = models.pipe.scheduler.add_noise(x0, noise, torch.tensor([level]))
                a = models.pipe.scheduler.alphas_cumprod[level]
            for name, image in (("none", None), ("own", photo.image),
                                ("other", prepared[(i + 1) % len(prepared)][0].image)):
                models.set_image_scale(scale if image is not None else 0.0)
                cond = models.with_image(models.text_cond(prompt, photo.image.size), image)
                if models.flow:
                    pred = noisy - level * models.velocity(noisy, level, cond)
                else:
                    # the DDIM move to noise level 0 (alpha 1): the predicted clean latents
                    pred = ddim_step(noisy, models.unet_call(noisy, torch.tensor(level), cond), a, torch.tensor(1.0))
                errors[name].append(float((pred - x0).square().mean().sqrt()))
    return {k: float(np.mean(v)) for k, v in errors.items()}


def x0_error_text(errors: dict) -> str:
    """`adapter_x0_error`'s result as the benchmarks print it."""
    return (f"no image {errors['none']:.3f}, own image {errors['own']:.3f}, "
            f"another input's {errors['other']:.3f}")


# -- editing a colour word -----------------------------------------------------------------
def recolour(caption: str, background: str, avoid: str) -> str:
    """The caption with the shape's colour swapped for another (not the background's)."""
    words = caption.split()
    options = [c for c in NAMES if c not in (words[1], background, avoid)]
    words[1] = options[len(caption) % len(options)]
    return " ".join(words)


def colour_edit(studio, n: int = 6, steps=None, method: str = "ddim", tight: bool = False,
                edit_method: str | None = None) -> list[dict]:
    """Swap the shape's colour word of held-out scenes; per scene, the shape region's mean
    colour distance to the target colour before and after, and the border's mean colour.
    `edit_method` None: the preset's first (regenerate)."""
    out = []
    for img, cap, mask in held_out_scenes(n, offset=1000):
        target = recolour(cap, cap.split()[-2], "")
        out.append(edit_case(studio, img, cap, target, mask, steps=steps, method=method, tight=tight,
                             edit_method=edit_method))
    return out


def edit_case(studio, img: Image.Image, cap: str, target: str, mask: np.ndarray, steps=None,
              method: str = "ddim", tight: bool = False, edit_method: str | None = None,
              image_scale: float = SHARED["image_scale"].default) -> dict:
    """One colour-word edit of a scene (`cap` -> `target`, `mask` its shape) measured as
    `colour_edit` does, and the SSIM of the background (outside the shape) to the scene."""
    background = cap.split()[-2]
    e = studio.edit(img, cap, target, method=method, tight=tight, steps=steps, edit_method=edit_method,
                    image_scale=image_scale)
    before, after = as_float(img), as_float(e.output)
    goal = np.array(world.COLOURS[target.split()[1]], np.float32) / 255
    edge = world.border(mask.shape[0])
    return {
        "caption": cap, "target": target,
        "shape_distance_before": float(np.linalg.norm(before[mask].mean(0) - goal)),
        "shape_distance_after": float(np.linalg.norm(after[mask].mean(0) - goal)),
        "border_before": before[edge].mean(0), "border_after": after[edge].mean(0),
        "border_kept": NAMES[int(colour_names(after[edge].mean(0)))] == background,
        "background_ssim": metrics.masked_ssim(img, e.output, ~np.asarray(mask, bool)),
    }


def sweep_correlations(studio, n: int = 3, steps=None) -> dict:
    """Spearman correlation with the image scale of edit alignment (CLIP to the target)
    and of preservation (SSIM to the photo), averaged over held-out scene edits."""
    from scipy.stats import spearmanr

    from ..editing import SWEEP_SCALES

    align, keep = [], []
    for img, cap, _ in held_out_scenes(n, offset=2000):
        target = recolour(cap, cap.split()[-2], "")
        edits = studio.edit_sweep(img, cap, target, scales=SWEEP_SCALES, steps=steps)
        align.append(spearmanr(SWEEP_SCALES, [e.metrics["clip_target"] for e in edits])[0])
        keep.append(spearmanr(SWEEP_SCALES, [e.metrics["preservation_ssim"] for e in edits])[0])
    return {"alignment": float(np.mean(align)), "preservation": float(np.mean(keep))}


# -- CLIP ----------------------------------------------------------------------------------------
def clip_top1(studio, n: int = 200) -> float:
    """Held-out scenes whose own caption is CLIP's first choice among all 90 captions."""
    model, tok, proc = studio.models.clip
    caps = world.captions()
    scenes = held_out_scenes(n, offset=3000)
    with torch.no_grad():
        ids = tok(caps, padding=True, return_tensors="pt")
        text = torch.nn.functional.normalize(model.get_text_features(**ids).pooler_output, dim=-1)
        pixels = proc([s[0] for s in scenes], return_tensors="pt").pixel_values
        image = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    best = (image @ text.T).argmax(1)
    return float(np.mean([caps[int(b)] == s[1] for b, s in zip(best, scenes)]))


# -- garments ----------------------------------------------------------------------------------
def garment_colour_errors(studio, methods=("hyperlora", "ip-adapter", "prompt-only"), n: int = 8,
                          steps=None, first: int = GARMENT_SEED) -> dict:
    """`garment_colour_error` per garment: method -> list of the `n` errors."""
    errors = {m: [] for m in methods}
    for i in range(n):
        seed = first + i
        for m in methods:
            photo, method = (first + (i + 1) % n, "hyperlora") if m == MISMATCHED else (seed, m)
            errors[m].append(garment_error(studio, synthetic.garment(photo), synthetic.scene_prompt(seed),
                                           seed, method, seed=i, steps=steps))
    return errors


def garment_colour_error(studio, methods=("hyperlora", "ip-adapter", "prompt-only"), n: int = 8,
                         steps=None, first: int = GARMENT_SEED) -> dict:
    """Mean RGB distance (0-1 scale) between the garment region of the dressed figure and
    the garment as worn, over `n` held-out garments from seed `first`; the prompt names no
    colour. Method `MISMATCHED` is HyperLoRA given the next garment's photo: what the
    predicted weights do whatever the garment."""
    errors = garment_colour_errors(studio, methods, n, steps, first)
    return {m: float(np.mean(v)) for m, v in errors.items()}


def garment_error(studio, garment: Image.Image, prompt: str, look: int, method: str, seed: int = 0,
                  steps=None) -> float:
    """RGB distance (0-1 scale) between the mean colour of the garment region of the figure
    `method` dresses in `garment` under `prompt`, and the mean colour of garment `look`
    (a synthetic seed) as worn; the region is where that garment's kind sits on the figure."""
    worn, mask = synthetic.worn(look, studio.preset.resolution)
    goal = as_float(worn)[mask].mean(0)
    d = studio.dress(garment, prompt, method=method, scale=SCALES.get(method, 1.0), steps=steps, seed=seed)
    return float(np.linalg.norm(as_float(d.image)[mask].mean(0) - goal))


def hyperlora_matched_ratio(studio, n: int = 16, draws: int = 8, hyper=None, region: bool = False) -> dict:
    """Held-out diffusion loss with each garment's own predicted LoRA against the loss with
    the next garment's, on the same noise and timesteps (below 1: the garment conditions
    the output). `hyper`: a HyperLoRA model; default the preset's checkpoint. `region`: the
    loss over the garment's region of the figure only, not the whole picture."""
    from ..garment.methods.hyperlora import model as hyperlora_model
    from ..garment.hyperlora import functional_params
    from ..garment.train import ADAPTER, Examples, mask_area, synthetic_pairs

    models = studio.models
    hyper = hyper or hyperlora_model(studio.bench)
    held = Examples(models, synthetic_pairs(n, studio.preset.resolution, offset=GARMENT_SEED))
    totals = {"matched": 0.0, "mismatched": 0.0}
    with models.lock, models.lora(ADAPTER, [m[0] for m in hyper.config.modules], hyper.config.rank), \
            torch.no_grad():
        for i in range(len(held)):
            _, latents, cond, _ = held[i]
            own = functional_params(hyper(held[i][0]), ADAPTER)
            other = functional_params(hyper(held[(i + 1) % len(held)][0]), ADAPTER)
            pair = held.pairs[i]
            _add_same_noise_losses(totals, models, latents, {"matched": (cond, own), "mismatched": (cond, other)},
                                   i, draws, weight=mask_area(pair.mask, pair.image.size, latents) if region else None)
    out = {k: v / (len(held) * draws) for k, v in totals.items()}
    out["ratio"] = out["matched"] / out["mismatched"]
    return out


def named_look_ratio(studio, n: int = 16, draws: int = 8, region: bool = False) -> float:
    """The same ratio with no HyperLoRA, the prompt naming the garment's look instead: its
    own colour and pattern against the next garment's (kind and scene its own, as in the
    pairs' prompts). What the UNet's own text conditioning gains from knowing exactly what
    a HyperLoRA has to carry: a yardstick for any garment conditioning."""
    from ..garment.train import mask_area

    models, totals = studio.models, {"matched": 0.0, "mismatched": 0.0}
    with models.lock, torch.no_grad():
        models.set_image_scale(0.0)
        for i in range(n):
            seed = GARMENT_SEED + i
            image, mask = synthetic.worn(seed, studio.preset.resolution)
            latents = models.encode(image)
            cond = {name: (models.with_image(models.text_cond(synthetic.prompt(seed, look=s), image.size), None), None)
                    for name, s in (("matched", seed), ("mismatched", seed + 1))}
            _add_same_noise_losses(totals, models, latents, cond, i, draws,
                                   weight=mask_area(mask, image.size, latents) if region else None)
    return totals["matched"] / totals["mismatched"]


def _add_same_noise_losses(totals: dict, models, latents, variants: dict, seed: int, draws: int,
                           weight=None, low: int = 0) -> None:
    """Add to `totals[name]` the diffusion loss of each variant (name -> (cond, params)) over
    `draws` draws, every variant on the same noise and timesteps (drawn from `seed`, from
    `low` up); `weight`: the loss weight over the latents, as `diffusion_loss` takes it."""
    from ..garment.train import diffusion_loss

    for name, (cond, params) in variants.items():
        gen = torch.Generator().manual_seed(seed)
        for _ in range(draws):
            totals[name] += float(diffusion_loss(models, latents, cond, gen, params, low=low, weight=weight))
