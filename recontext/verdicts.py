"""Saying when a result is bad: one line per failing result, with the likely reason and
what to try (issue 38: an own photo reconstructed at 14.5 dB beside DDIM's 28.1 dB, and
nothing on the page said so).

Rules, from the metrics each result already carries:
- a reconstruction `CEILING_GAP` dB or more below the VAE's round trip of the same photo
  (the most any inversion can reach there);
- a reconstruction `BASELINE_GAP` dB or more below the baseline method's (the preset's
  first: DDIM on UNet presets), same photo, same variant (plain or tight), same request;
- an edit whose CLIP similarity to the target prompt is below the unedited photo's: the
  edit moved the picture away from what was asked.
No gradio, no torch: plain numbers in, sentences out."""

import math

from . import inversion

CEILING_GAP = 6.0   # dB below the VAE's round trip
BASELINE_GAP = 3.0  # dB below the baseline's reconstruction of the same photo


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _knobs(method: str) -> str:
    """The method's own settings, named as the page and the CLI name them."""
    try:
        names = [o.name for o in inversion.spec(method).options if o.kind != "fixed"]
    except (KeyError, ValueError):
        names = []
    return f", or its own settings ({', '.join(names)})" if names else ""


def _title(method: str) -> str:
    try:
        return inversion.spec(method).title
    except (KeyError, ValueError):
        return method


def reconstruction(label: str, method: str, metrics: dict, baseline_psnr: float | None = None,
                   baseline: str | None = None) -> list[str]:
    """The verdicts on one reconstruction (`metrics` as `metrics.reconstruction` gives them);
    `baseline_psnr`: the `baseline` method's PSNR on the same photo and variant, when it ran
    beside it."""
    psnr, vae = metrics.get("psnr"), metrics.get("vae_psnr")
    if psnr is None or not math.isfinite(psnr):
        return []
    out = []
    if baseline_psnr is not None and baseline and method != baseline and math.isfinite(baseline_psnr) \
            and baseline_psnr - psnr >= BASELINE_GAP:
        out.append(f"**{label} looks wrong here:** PSNR {_fmt(psnr)} dB, {_fmt(baseline_psnr - psnr)} dB below "
                   f"{_title(baseline)}'s {_fmt(baseline_psnr)} dB on the same photo. Likely reason: the method "
                   f"diverged on this photo. Try {_title(baseline)}{_knobs(method)}.")
    elif vae is not None and math.isfinite(vae) and vae - psnr >= CEILING_GAP:
        out.append(f"**{label} looks wrong here:** PSNR {_fmt(psnr)} dB, {_fmt(vae - psnr)} dB below the VAE's "
                   f"round trip ({_fmt(vae)} dB, the most any inversion reaches on this photo). Likely reason: "
                   f"the inversion diverged, or the photo lies outside what the preset's model knows. "
                   f"Try more steps, another method{_knobs(method)}.")
    return out


def reconstructions(runs, baseline: str | None = None) -> list[str]:
    """Verdicts on a request's reconstructions: `runs`, (label, method, tight, metrics)
    each; each compared with the `baseline` method's of the same variant when it ran."""
    psnr = {tight: m["psnr"] for _, method, tight, m in runs if method == baseline}
    return [line for label, method, tight, m in runs
            for line in reconstruction(label, method, m, psnr.get(tight), baseline)]


def edit(label: str, clip_after: float, clip_before: float) -> list[str]:
    """The verdict on one edit: `clip_after`, the edit's CLIP similarity to the target
    prompt; `clip_before`, the unedited photo's."""
    if any(x is None or not math.isfinite(x) for x in (clip_after, clip_before)) or clip_after >= clip_before:
        return []
    return [f"**{label} moved away from the target:** CLIP similarity to the target prompt "
            f"{clip_after:.3f}, below the unedited photo's {clip_before:.3f}. Likely reason: the inversion "
            "or the edit diverged, or the prompt asks for something the model does not know. Try more "
            "steps, a higher guidance, or another editing method."]


def sweep(points) -> str | None:
    """What a sweep measured, in words: `points`, (image scale, preservation SSIM, CLIP
    similarity to the target) per edit. Says which way each moved as the scale rose, from
    these figures alone (the paper's claim: a higher scale keeps more of the photo and lets
    the edit land less)."""
    points = sorted(points)
    if len(points) < 2:
        return None
    (s0, p0, c0), (s1, p1, c1) = points[0], points[-1]

    def way(a, b):
        return "rose" if b > a else "fell" if b < a else "stayed"

    chain = " → ".join(f"{p:.3f}" for _, p, _ in points)
    kept = "kept more of the photo" if p1 > p0 else "kept less of the photo" if p1 < p0 else "kept as much"
    return (f"On this photo, as the image scale rose from {s0:g} to {s1:g}, preservation SSIM went {chain} "
            f"({way(p0, p1)}) and edit alignment {way(c0, c1)} ({c0:.3f} → {c1:.3f}): a higher scale {kept} "
            f"here. The paper's claim is that a higher scale keeps more of the photo and lets the edit land less.")
