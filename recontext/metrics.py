"""Reconstruction and editing metrics, always computed from the images themselves.

Images are compared as float arrays in [0, 1] (never uint8: differences would wrap).
LPIPS is used when the optional `lpips` package imports; otherwise it is None and the
UI says it is unavailable.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def as_float(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def l2(a: Image.Image, b: Image.Image) -> float:
    """Mean squared error between two images in [0, 1]."""
    return float(np.mean((as_float(a) - as_float(b)) ** 2))


def psnr(a: Image.Image, b: Image.Image) -> float:
    if l2(a, b) == 0.0:
        return math.inf
    return float(peak_signal_noise_ratio(as_float(a), as_float(b), data_range=1.0))


def ssim(a: Image.Image, b: Image.Image) -> float:
    x, y = as_float(a), as_float(b)
    side = min(x.shape[:2])
    win = 7 if side >= 7 else side - (1 - side % 2)  # largest odd window that fits
    return float(structural_similarity(x, y, channel_axis=2, data_range=1.0, win_size=win))


def masked_ssim(a: Image.Image, b: Image.Image, mask) -> float:
    """SSIM averaged over the pixels where `mask` (H×W, bool) is true: how well a region
    (a scene's background) is kept."""
    x, y = as_float(a), as_float(b)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask is {mask.shape[::-1]}, the images {x.shape[1::-1]}")
    if not mask.any():
        raise ValueError("mask is empty")
    side = min(x.shape[:2])
    win = 7 if side >= 7 else side - (1 - side % 2)
    _, full = structural_similarity(x, y, channel_axis=2, data_range=1.0, win_size=win, full=True)
    return float(full.mean(axis=2)[mask].mean())


def colour_distance(img: Image.Image, mask, rgb) -> float:
    """Distance of the mean colour inside `mask` to `rgb` (0–255 triple), in [0, 1]."""
    x = as_float(img)[np.asarray(mask, dtype=bool)]
    if not len(x):
        raise ValueError("mask is empty")
    return float(np.linalg.norm(x.mean(0) - np.asarray(rgb, dtype=float) / 255) / np.sqrt(3))


def latent_error(z, z_rec) -> float:
    """Relative error ||z_rec - z|| / ||z|| of reconstructed latents."""
    return float((z_rec.float() - z.float()).norm() / z.float().norm())


@functools.cache
def _lpips_model():
    try:
        import lpips  # optional: pulls torchvision, absent from the default install
    except Exception:
        return None
    return lpips.LPIPS(net="alex", verbose=False).eval()


def lpips_available() -> bool:
    return _lpips_model() is not None


def lpips_distance(a: Image.Image, b: Image.Image) -> float | None:
    model = _lpips_model()
    if model is None:
        return None
    import torch

    def t(img):
        return torch.from_numpy(as_float(img)).permute(2, 0, 1)[None].float() * 2 - 1

    with torch.no_grad():
        return float(model(t(a), t(b)).item())


def reconstruction(source: Image.Image, output: Image.Image, z, z_rec,
                   vae_roundtrip: Image.Image | None = None) -> dict:
    """Metrics of a reconstruction against its source photo. With `vae_roundtrip`
    (decode(encode(source))) also `vae_psnr`, the autoencoder's own PSNR (the ceiling
    every inversion method shares), and `inversion_psnr`, the reconstruction against
    that round trip: the inversion's error with the autoencoder's factored out."""
    out = {"psnr": psnr(source, output), "ssim": ssim(source, output), "l2": l2(source, output),
           "latent_error": latent_error(z, z_rec), "lpips": lpips_distance(source, output)}
    if vae_roundtrip is not None:
        out["vae_psnr"] = psnr(source, vae_roundtrip)
        out["inversion_psnr"] = psnr(vae_roundtrip, output)
    return out
