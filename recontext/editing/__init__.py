"""Text editing by inversion: invert the photo under its source prompt, then edit toward
the target prompt with an editing method. Each editing method is a module of this folder
with a `SPEC` (`recontext.methods.Spec`) and one function,

    edit(unet_call, attention, state, timesteps, alphas, source, target, reconstruct,
         callback=None, **own) -> latents

plus, when it takes more than the shared arguments, `arguments(models, source_prompt,
target_prompt, settings) -> own`. `regenerate` is the baseline; the others keep what the
prompt does not mention.

Every method uses exactly the image conditioning of the inversion (the same IP-Adapter
scale and photo embeddings), as Tight Inversion prescribes; edit-friendly DDPM replays its
stored noise maps. Inversions are cached: a new target prompt, guidance, editing method
or (for inversions that draw no noise) seed edits without inverting again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import inversion, metrics, verdicts
from ..images import to_size
from ..methods import Registry
from ..models import image_key
from ..progress import ticker

REGISTRY = Registry(__name__, "editing method")
SWEEP_SCALES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


# the methods (those that run on a preset, given one), a method's module, its spec
names, get, spec = REGISTRY.names, REGISTRY.get, REGISTRY.spec


def inversion_for(edit_method: str, method: str) -> str:
    """The inversion an editing method runs on: the one its paper pairs it with, else `method`."""
    return spec(edit_method).pairs_with or method


def inversion_settings(method: str, edit_method: str, **given) -> dict:
    """`skip` and `source_guidance` of the inversion for an edit: those given, else the editing
    method's own (when it runs on the inversion it pairs with), else the inversion's."""
    own = spec(edit_method)
    if own.pairs_with == method:
        given = {k: own.edit_defaults.get(k) if given.get(k) is None else given[k]
                 for k in set(given) | set(own.edit_defaults)}
    return inversion.edit_settings(method, **given)


def own_settings(edit_method: str, **given) -> dict:
    """An editing method's own settings: given (checked), else its defaults."""
    return spec(edit_method).settings(None, **given)


def __getattr__(attr):  # name -> module table, built from the specs when asked for
    if attr == "EDIT_METHODS":
        return dict(REGISTRY.modules)
    raise AttributeError(attr)


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
    edit_method: str = ""
    method: str = ""              # the inversion method
    tight: bool = False
    settings: dict = field(default_factory=dict)  # the editing method's own settings


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


def clip_image_similarity(models, a: Image.Image, b: Image.Image) -> float:
    """Cosine similarity of two images' CLIP embeddings (CLIP-I)."""
    model, _, processor = models.clip
    with torch.no_grad():
        pixels = processor(images=[a, b], return_tensors="pt").pixel_values.to(models.device, models.dtype)
        emb = model.get_image_features(pixel_values=pixels)
        emb = getattr(emb, "pooler_output", emb).float()
    return float(torch.nn.functional.cosine_similarity(emb[:1], emb[1:]).item())


def edit(bench, image, source_prompt: str, target_prompt: str, method: str, tight: bool,
         image_scale: float, guidance: float, steps: int, seed: int, progress=None,
         edit_method: str | None = None, skip: float = 0.0, source_guidance: float = 1.0,
         inversion_options: dict | None = None, **settings) -> Edit:
    """Invert (or take the cached inversion) on the workbench `bench`, then edit toward
    `target_prompt` with `edit_method` (`settings`: its own options, checked)."""
    start = time.perf_counter()
    models = bench.models
    edit_method = edit_method or names(bench.preset)[0]
    module = inversion.get(method, bench.preset)
    editor = get(edit_method, bench.preset)
    own = inversion.options(method, bench.preset.name, **(inversion_options or {}))
    scale = image_scale if tight else 0.0
    with models.lock:
        photo = bench.prepare(image)
        notes = (photo.notes + bench.prompt_notes(source_prompt, "source prompt")
                 + bench.prompt_notes(target_prompt, "target prompt"))
        timesteps, alphas = models.levels(steps, photo.latents)
        kept = max(1, steps - round(skip * steps))  # skip: the noisiest steps are neither inverted nor edited
        timesteps, alphas = timesteps[:kept], alphas[:kept + 1]
        key = (image_key(photo.image), source_prompt, method, tuple(sorted(own.items())), steps, tight, scale,
               seed if module.SPEC.stochastic else None, kept, source_guidance)
        cached = bench.inversion_cache.get(key)
        inverted = cached is None
        tick = ticker(progress, kept * (3 if inverted else 1), f"{method} → {edit_method}")
        if inverted:
            state, z_rec = bench.invert(photo, source_prompt, module, tight, scale, timesteps,
                                        alphas, seed, guidance=source_guidance, tick=tick, options=own)
            cached = bench.inversion_cache.put(key, Inverted(state, models.decode(z_rec, f"{method} (reconstruction)")))
            bench.inversions += 1
        notes += list(getattr(cached.state, "notes", []))  # what the inversion says of its run
        source = bench.condition(source_prompt, photo.image, tight, scale, source_guidance)
        target = bench.condition(target_prompt, photo.image, tight, scale,
                                 guidance if editor.SPEC.target_guidance else 1.0)
        given = own_settings(edit_method, **editor.SPEC.own(settings))
        extra = editor.arguments(models, source_prompt, target_prompt, given) if hasattr(editor, "arguments") else {}
        if extra.get("null") is True:  # the method edits against the empty prompt (same image conditioning)
            extra["null"] = bench.condition("", photo.image, tight, scale, 1.0)
        elif "null" in extra:
            extra["null"] = None
        with torch.no_grad():
            z = editor.edit(models.model_call, models.attention, cached.state, timesteps, alphas,
                            source, target, inversion.reconstructor(module, own), callback=tick, **extra)
        output = models.decode(z, f"{edit_method} after {method}{' + tight' if tight else ''}")
        scores = {
            "preservation_ssim": metrics.ssim(photo.image, output),
            "preservation_lpips": metrics.lpips_distance(photo.image, output),
            "clip_target": clip_similarity(models, output, target_prompt),
        }
        notes = notes + verdicts.edit(f"{edit_method} after {method}{' + tight' if tight else ''}",
                                      scores["clip_target"], clip_similarity(models, photo.image, target_prompt))

    return Edit(image=to_size(output, photo.original_size),
                reconstruction=to_size(cached.reconstruction, photo.original_size), metrics=scores,
                scale=scale, seconds=time.perf_counter() - start, source=photo.image,
                output=output, reconstruction_working=cached.reconstruction,
                inverted=inverted, notes=notes, edit_method=edit_method, method=method, tight=tight,
                settings=given)


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

