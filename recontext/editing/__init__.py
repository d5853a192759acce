"""Text editing by inversion: invert the photo under its source prompt, then edit toward
the target prompt with an editing method:

- `regenerate`: denoise the inverted noise under the target prompt alone (the baseline);
- `prompt-to-prompt`: source and target branches denoised together, the target borrowing
  the source's attention maps (`prompt_to_prompt.py`);
- `ledits++`: the inversion replayed plus masked semantic guidance (`ledits.py`).

Every method uses exactly the image conditioning of the inversion (the same IP-Adapter
scale and photo embeddings), as Tight Inversion prescribes; edit-friendly DDPM replays its
stored noise maps. Inversions are cached: a new target prompt, guidance, editing method
or (for deterministic inversions) seed edits without inverting again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import inversion, metrics
from ..images import to_size
from ..models import image_key
from ..progress import ticker
from . import ledits, prompt_to_prompt, regenerate, tokens

SWEEP_SCALES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# editing method -> its module (each: edit(unet_call, attention, state, timesteps, alphas,
# source, target, reconstruct, callback=None, **own options) -> latents) and one line of help
EDIT_METHODS = {"regenerate": regenerate, "prompt-to-prompt": prompt_to_prompt, "ledits++": ledits}
EDIT_HELP = {
    "regenerate": "denoise the inverted noise under the target prompt alone: the baseline; "
                  "the whole image is re-imagined",
    "prompt-to-prompt": "source and target denoised together; the target borrows the source's "
                        "cross-attention (and self-attention) maps early on, so layout and "
                        "background stay (Hertz et al. 2022)",
    "ledits++": "the inversion replayed, plus guidance toward the target only where the edited "
                "words attend and the edit direction is strong (Brack et al. 2024)",
}
STOCHASTIC = {"edit-friendly", "rf-inversion"}  # methods whose inversion draws noise (the seed matters)


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
    edit_method: str = "regenerate"
    method: str = "ddim"          # the inversion method
    tight: bool = False


@dataclass
class Inverted:
    state: object                 # what the method's reconstruct() takes
    reconstruction: Image.Image   # working size


FLOW_EDIT_METHODS = ("regenerate",)  # prompt-to-prompt and LEDITS++ steer a UNet's attention


def fitting(flow: bool) -> list[str]:
    """The editing methods that fit a model family (flow-matching or epsilon-prediction)."""
    return list(FLOW_EDIT_METHODS) if flow else list(EDIT_METHODS)


def get(edit_method: str, flow: bool | None = None):
    if edit_method not in EDIT_METHODS:
        raise ValueError(f"unknown editing method {edit_method!r}; valid editing methods: "
                         f"{', '.join(EDIT_METHODS)}")
    if flow and edit_method not in FLOW_EDIT_METHODS:
        raise ValueError(f"editing method {edit_method!r} does not fit this flow-matching model; use one "
                         f"of: {', '.join(fitting(True))}")
    return EDIT_METHODS[edit_method]


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


def clip_image_similarity(models, a: Image.Image, b: Image.Image) -> float:
    """Cosine similarity of two images' CLIP embeddings (CLIP-I)."""
    model, _, processor = models.clip
    with torch.no_grad():
        pixels = processor(images=[a, b], return_tensors="pt").pixel_values.to(models.device, models.dtype)
        emb = model.get_image_features(pixel_values=pixels)
        emb = getattr(emb, "pooler_output", emb).float()
    return float(torch.nn.functional.cosine_similarity(emb[:1], emb[1:]).item())


def _method_args(studio, edit_method, source_prompt, target_prompt, settings):
    """What an editing method needs beyond the shared arguments."""
    models = studio.models
    count = models.word_tokens
    if edit_method == "prompt-to-prompt":
        reweight = settings.get("reweight")
        if reweight:
            word, factor = reweight
            reweight = ([p for p in tokens.positions(target_prompt, word, count) if p < models.text_length],
                        float(factor))
        return dict(mapper=tokens.align(source_prompt, target_prompt, count, models.text_length),
                    cross_replace=settings["cross_replace"], self_replace=settings["self_replace"],
                    reweight=reweight or None)
    if edit_method == "ledits++":
        return dict(tokens=[p for p in tokens.changed(source_prompt, target_prompt, count)
                            if p < models.text_length],
                    edit_guidance=settings["edit_guidance"], threshold=settings["edit_threshold"])
    return {}


def edit(studio, image, source_prompt: str, target_prompt: str, method: str, tight: bool,
         image_scale: float, guidance: float, steps: int, seed: int, progress=None,
         edit_method: str = "regenerate", skip: float = 0.0, source_guidance: float = 1.0,
         **settings) -> Edit:
    """Invert (or take the cached inversion), then edit toward `target_prompt` with
    `edit_method` (see EDIT_METHODS; `settings` are its own options)."""
    start = time.perf_counter()
    models = studio.models
    module = inversion.get(method, models.flow)
    editor = get(edit_method, models.flow)
    scale = image_scale if tight else 0.0
    with models.lock:
        photo = studio.prepare(image)
        notes = (photo.notes + studio.prompt_notes(source_prompt, "source prompt")
                 + studio.prompt_notes(target_prompt, "target prompt"))
        timesteps, alphas = models.levels(steps, photo.latents)
        kept = max(1, steps - round(skip * steps))  # skip: the noisiest steps are neither inverted nor edited
        timesteps, alphas = timesteps[:kept], alphas[:kept + 1]
        key = (image_key(photo.image), source_prompt, method, steps, tight, scale,
               seed if method in STOCHASTIC else None, kept, source_guidance)
        cached = studio.inversion_cache.get(key)
        inverted = cached is None
        tick = ticker(progress, kept * (3 if inverted else 1), f"{method} → {edit_method}")
        if inverted:
            state, z_rec = studio.invert(photo, source_prompt, module, tight, scale, timesteps,
                                         alphas, seed, guidance=source_guidance, tick=tick,
                                         options=studio.inversion_options(method))
            cached = studio.inversion_cache.put(key, Inverted(state, models.decode(z_rec, f"{method} (reconstruction)")))
            studio.inversions += 1
        source = studio.condition(source_prompt, photo.image, tight, scale, source_guidance)
        target = studio.condition(target_prompt, photo.image, tight, scale,
                                  1.0 if edit_method == "ledits++" else guidance)
        extra = _method_args(studio, edit_method, source_prompt, target_prompt, settings)
        with torch.no_grad():
            z = editor.edit(models.model_call, models.attention, cached.state, timesteps, alphas,
                            source, target, module.reconstruct, callback=tick, **extra)
        output = models.decode(z, f"{edit_method} after {method}{' + tight' if tight else ''}")
        scores = {
            "preservation_ssim": metrics.ssim(photo.image, output),
            "preservation_lpips": metrics.lpips_distance(photo.image, output),
            "clip_target": clip_similarity(models, output, target_prompt),
        }

    return Edit(image=to_size(output, photo.original_size),
                reconstruction=to_size(cached.reconstruction, photo.original_size), metrics=scores,
                scale=scale, seconds=time.perf_counter() - start, source=photo.image,
                output=output, reconstruction_working=cached.reconstruction,
                inverted=inverted, notes=notes, edit_method=edit_method, method=method, tight=tight)


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

