"""The offline `tiny` preset: a small *trained* world, assembled in the Hub folder layout.

The weights in `weights/` are the output of `python -m recontext train-tiny` (see
`train.py` and `weights/MODEL_CARD.md`): a VAE, a CLIP whose text tower serves as both
SDXL text encoders and whose vision tower is the IP-Adapter image encoder, an SDXL-shaped
UNet, an IP-Adapter *plus* and a HyperLoRA checkpoint. `build(root)` writes them out as
the Hub repositories are laid out (`save_pretrained`, the h94/IP-Adapter file layout), so
the preset is then loaded by exactly the code that loads the real ones (`from_pretrained`,
`load_ip_adapter`, peft). Building takes a few seconds and happens once per version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile

import torch
from filelock import FileLock

from .. import safety
from . import arch

SEED = 0
WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
# the garment extractor (python -m recontext.garment.train_extractor): a folder of `weights`,
# copied to the same name in the built preset
EXTRACTOR, EXTRACTOR_FILE = "magicclothing", "magic_clothing_tiny.safetensors"
log = logging.getLogger(__name__)


def weights_version(weights: str = WEIGHTS) -> str:
    """A short hash of the committed weights: a new training run builds a new folder."""
    h = hashlib.sha1()
    names = sorted(os.path.relpath(os.path.join(d, n), weights).replace(os.sep, "/")
                   for d, _, files in os.walk(weights) for n in files)  # subfolders too (hyperlora/)
    for name in names:
        if name.endswith((".safetensors", ".json")):
            h.update(name.encode())
            h.update(str(os.path.getsize(os.path.join(weights, name))).encode())
            with open(os.path.join(weights, name), "rb") as f:
                h.update(f.read(1 << 16))
    return h.hexdigest()[:10]


TINY_VERSION = "v4-" + weights_version()  # v4: the tiny safety checker


def build(root: str, weights: str = WEIGHTS) -> str:
    """Write the tiny preset into `root` once (safe across processes); return `root`."""
    if not os.path.exists(os.path.join(root, "BUILT")) and \
            not os.path.exists(os.path.join(weights, "unet.safetensors")):
        raise RuntimeError(f"the tiny world's weights are missing from {weights}: "
                           "train them with `python -m recontext train-tiny`")
    return build_once(root, lambda tmp: assemble(tmp, weights), TINY_VERSION)


def build_once(root: str, write, version: str) -> str:
    """Run `write(folder)` into a temporary folder beside `root` and move it into place,
    once: under a file lock, skipped when `root` is already built (its BUILT marker holds
    `version`). Shared by the tiny presets."""
    done = os.path.join(root, "BUILT")
    if os.path.exists(done):
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    with FileLock(os.path.abspath(root) + ".lock"):
        if os.path.exists(done):
            return root
        tmp = tempfile.mkdtemp(prefix=".tiny-", dir=parent)
        try:
            write(tmp)
            with open(os.path.join(tmp, "BUILT"), "w") as f:
                f.write(version + "\n")
            if os.path.exists(root):
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def text_encoders(clip):
    """SDXL's two text encoders, both the trained CLIP's text tower (the second with its
    projection, whose output is SDXL's pooled text embedding)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config = clip.config.text_config
    one, two = CLIPTextModel(config), CLIPTextModelWithProjection(config)
    one.load_state_dict(clip.text_model.state_dict())
    two.text_model.load_state_dict(clip.text_model.state_dict())
    two.text_projection.load_state_dict(clip.text_projection.state_dict())
    return one.eval(), two.eval()


def image_encoder(clip):
    """The IP-Adapter image encoder: the trained CLIP's vision tower and projection."""
    from transformers import CLIPVisionModelWithProjection

    enc = CLIPVisionModelWithProjection(clip.config.vision_config)
    enc.vision_model.load_state_dict(clip.vision_model.state_dict())
    enc.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    return enc.eval()


def assemble(root: str, weights: str = WEIGHTS, unet=None, ip_adapter: dict | None = None) -> None:
    """Write the preset's Hub-layout folders from `weights` (`unet` / `ip_adapter` given
    explicitly while training: the stage being trained is not in `weights` yet)."""
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    with open(os.path.join(weights, "world.json")) as f:
        info = json.load(f)
    tok = arch.tokenizer()
    clip = arch.load_weights(arch.clip(tok), os.path.join(weights, "clip.safetensors"))
    from .arch import PREDICTION, trained_vae

    vae = trained_vae(weights)  # widened, its wide decoder laid over it
    vae.register_to_config(scaling_factor=info["vae_scaling_factor"])
    if unet is None:
        unet = arch.load_weights(arch.unet(), os.path.join(weights, "unet.safetensors"))
    one, two = text_encoders(clip)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=one, text_encoder_2=two, tokenizer=tok,
                                     tokenizer_2=tok, unet=unet, scheduler=arch.scheduler(PREDICTION),
                                     image_encoder=None, feature_extractor=None)
    pipe.save_pretrained(os.path.join(root, "pipeline"))

    # IP-Adapter plus, in the h94/IP-Adapter layout; the encoder under models/image_encoder
    ip_root = os.path.join(root, "ip_adapter")
    image_encoder(clip).save_pretrained(os.path.join(ip_root, "models", "image_encoder"))
    arch.image_processor().save_pretrained(os.path.join(ip_root, "models", "image_encoder"))
    if ip_adapter is None:
        path = os.path.join(weights, "ip_adapter.safetensors")
        if os.path.exists(path):
            from safetensors.torch import load_file

            ip_adapter = {k: v.float() for k, v in load_file(path).items()}
        else:  # not trained yet (while the UNet stage runs): a fresh one
            ip_adapter = arch.ip_adapter_plus(unet, clip.config.vision_config.hidden_size,
                                              torch.Generator().manual_seed(SEED + 1))
    os.makedirs(os.path.join(ip_root, "sdxl_models"))
    save_file(ip_adapter, os.path.join(ip_root, "sdxl_models", "ip-adapter-plus_sdxl_vit-h.safetensors"))

    # the CLIP for edit-alignment scores, laid out like openai/clip-vit-*
    clip.save_pretrained(os.path.join(root, "clip"))
    tok.save_pretrained(os.path.join(root, "clip"))
    arch.image_processor().save_pretrained(os.path.join(root, "clip"))
    safety.write_tiny(clip, arch.image_processor(), os.path.join(root, "safety_checker"))

    if os.path.isdir(os.path.join(weights, "hyperlora")):
        shutil.copytree(os.path.join(weights, "hyperlora"), os.path.join(root, "hyperlora"))
    if os.path.isdir(os.path.join(weights, EXTRACTOR)):  # the garment extractor (its own layout)
        shutil.copytree(os.path.join(weights, EXTRACTOR), os.path.join(root, EXTRACTOR))
    with open(os.path.join(root, "README.json"), "w") as f:
        json.dump({"what": "recontext tiny preset: the tiny world's trained weights "
                   "(see recontext/tiny/weights/MODEL_CARD.md)", "version": TINY_VERSION, **info}, f,
                  indent=2)
