"""Text editing by inversion: invert the photo under its source prompt, then regenerate
from the inverted noise under the target prompt at the user's guidance.

The regeneration uses exactly the image conditioning of the inversion (the same
IP-Adapter scale and photo embeddings), as Tight Inversion prescribes; edit-friendly
DDPM replays its stored noise maps. Inversions are cached: a new target prompt, guidance
or (for deterministic methods) seed regenerates without inverting again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from . import inversion, metrics
from .images import to_size
from .models import image_key
from .progress import ticker

SWEEP_SCALES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
STOCHASTIC = {"edit-friendly"}  # methods whose inversion draws noise (the seed matters)


@dataclass
class Edit:
    image: Image.Image            # the edit, same size as the input
    reconstruction: Image.Image   # the inversion rebuilt under the source prompt, input size
    metrics: dict                 # preservation_ssim, preservation_lpips (or None), clip_target
    scale: float                  # IP-Adapter scale (0.0 when not tight)
    seconds: float
    source: Image.Image           # working-size input, output and reconstruction
    output: Image.Image
    reconstruction_working: Image.Image
    inverted: bool                # whether this call ran an inversion (False: cache hit)
    notes: list[str] = field(default_factory=list)


@dataclass
class Inverted:
    state: object                 # what the method's reconstruct() takes
    reconstruction: Image.Image   # working size


def clip_similarity(models, image: Image.Image, text: str) -> float:
    """Cosine similarity of CLIP's image and text embeddings (the model owner's CLIP)."""
    model, tokenizer, processor = models.clip
    with torch.no_grad():
        pixels = processor(images=image, return_tensors="pt").pixel_values.to(models.device, models.dtype)
        ids = tokenizer(text, padding=True, truncation=True, return_tensors="pt").to(models.device)
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(**ids)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
    return float(torch.nn.functional.cosine_similarity(img.float(), txt.float()).item())


def edit(studio, image, source_prompt: str, target_prompt: str, method: str, tight: bool,
         image_scale: float, guidance: float, steps: int, seed: int, progress=None) -> Edit:
    """Invert (or take the cached inversion), then regenerate under `target_prompt`."""
    start = time.perf_counter()
    module = inversion.get(method)
    models = studio.models
    scale = image_scale if tight else 0.0
    with models.lock:
        photo = studio.prepare(image)
        notes = (photo.notes + studio.prompt_notes(source_prompt, "source prompt")
                 + studio.prompt_notes(target_prompt, "target prompt"))
        timesteps, alphas = inversion.levels(models.pipe.scheduler, steps)
        key = (image_key(photo.image), source_prompt, method, steps, tight, scale,
               seed if method in STOCHASTIC else None)
        cached = studio.inversion_cache.get(key)
        inverted = cached is None
        tick = ticker(progress, steps * (3 if inverted else 1), method)
        if inverted:
            state, z_rec = studio.invert(photo, source_prompt, module, tight, scale, timesteps,
                                         alphas, seed, tick=tick)
            cached = studio.inversion_cache.put(key, Inverted(state, models.decode(z_rec)))
            studio.inversions += 1
        cond = studio.condition(target_prompt, photo.image, tight, scale, guidance)
        with torch.no_grad():
            z = module.reconstruct(models.unet_call, cached.state, timesteps, alphas, cond,
                                   callback=tick)
        output = models.decode(z)
        scores = {
            "preservation_ssim": metrics.ssim(photo.image, output),
            "preservation_lpips": metrics.lpips_distance(photo.image, output),
            "clip_target": clip_similarity(models, output, target_prompt),
        }

    return Edit(image=to_size(output, photo.original_size),
                reconstruction=to_size(cached.reconstruction, photo.original_size), metrics=scores,
                scale=scale, seconds=time.perf_counter() - start, source=photo.image,
                output=output, reconstruction_working=cached.reconstruction,
                inverted=inverted, notes=notes)


def sweep_plot(edits: list[Edit], target_prompt: str = ""):
    """Edit alignment against preservation, one labelled point per image scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5.5, 4.2), dpi=100, layout="constrained")  # nothing clipped at the edges
    ax = fig.add_subplot()
    x = [e.metrics["preservation_ssim"] for e in edits]
    y = [e.metrics["clip_target"] for e in edits]
    ax.plot(x, y, "-", color="#bbb", zorder=1)
    points = ax.scatter(x, y, c=[e.scale for e in edits], cmap="viridis", zorder=2, s=50)
    for e, xi, yi in zip(edits, x, y):
        ax.annotate(f"{e.scale:g}", (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=9)
    fig.colorbar(points, ax=ax, label="image scale")
    ax.set_xlabel("preservation: SSIM to the photo →")
    ax.set_ylabel("edit alignment: CLIP(output, target) →")
    ax.set_title("fidelity–editability trade-off" + (f"\n“{target_prompt[:50]}”" if target_prompt else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.18, y=0.12)  # room for the scale labels beside the outermost points
    for axis in (ax.xaxis, ax.yaxis):  # few ticks, short labels: close values never run together
        axis.set_major_locator(MaxNLocator(nbins=4))
    ax.ticklabel_format(useOffset=False)
    return fig

