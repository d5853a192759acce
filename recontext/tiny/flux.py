"""The offline `tiny-flux` preset: FLUX.1's architecture at the tiny world's size.

The same classes and Hub folder layout as `black-forest-labs/FLUX.1-dev` plus
`XLabs-AI/flux-ip-adapter`, so `FluxPipeline.from_pretrained` and
`FluxPipeline.load_ip_adapter` load it exactly as they load the real ones:

- `transformer`: a `FluxTransformer2DModel` with 2 double- and 2 single-stream blocks,
  4 heads of 32 (inner width 128), rotary axes (8, 12, 12), 64 input channels (16 latent
  channels packed 2x2). Unlike FLUX.1-dev it has no guidance embedding: guidance
  distillation needs a guided teacher, so the tiny model is guided by true classifier-free
  guidance instead (FluxPipeline's `true_cfg_scale` path);
- `text_encoder` / `tokenizer`: the tiny world's CLIP text tower (its pooled output is
  FLUX's pooled projection) and tokenizer;
- `text_encoder_2` / `tokenizer_2`: a tiny `T5EncoderModel` (width 64, 2 layers) with a
  unigram `T5Tokenizer` whose pieces are the world's words, trained with the transformer;
- `vae`: the tiny world's AutoencoderKL (16 latent channels, x4 downsampling), with a
  scaling and shift factor as FLUX's VAE has;
- `scheduler`: FLUX.1-dev's FlowMatchEulerDiscreteScheduler config;
- IP-Adapter: a file in the XLabs key layout (`ip_adapter_proj_model.*`,
  `double_blocks.{i}.processor.ip_adapter_double_stream_{k,v}_proj.*`), its image encoder
  a `CLIPVisionModelWithProjection` (XLabs uses openai/clip-vit-large-patch14): the tiny
  CLIP's vision tower, trained further with the adapter (the CLIP, trained on captions
  alone, encodes little more than the caption says; a general encoder like ViT-L carries
  far more of the image, which is what Tight Inversion relies on).

`flux_weights/` holds everything the preset needs (the VAE and CLIP it was trained with
included), so retraining the epsilon world does not disturb it; `flux_train.py` writes it.
"""

from __future__ import annotations

import json
import os

import torch

from .. import safety
from . import arch

WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flux_weights")
T5_LENGTH = 32            # the tiny T5's max_sequence_length (FLUX.1-dev: 512)
HEADS, HEAD_DIM = 4, 32
IP_TOKENS = 4             # image tokens of the XLabs projection
IP_WEIGHT = "ip_adapter.safetensors"   # XLabs-AI/flux-ip-adapter's file name


def t5_tokenizer():
    """A unigram T5 tokenizer built in memory: the world's words as whole pieces (scored
    high), single characters as the fallback, no sentinel ids."""
    from transformers import T5Tokenizer

    chars = "abcdefghijklmnopqrstuvwxyz0123456789-'.,"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -1.0) for w in arch.WORDS]
    vocab += [(c, -5.0) for c in chars] + [("\u2581" + c, -5.0) for c in chars if c not in arch.WORDS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=T5_LENGTH)


def t5(tok):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tok), d_model=arch.TEXT_HIDDEN, d_kv=16, d_ff=128,
                                   num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                   decoder_start_token_id=tok.pad_token_id))


def transformer():
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1, in_channels=4 * arch.LATENT_CHANNELS, num_layers=2, num_single_layers=2,
        attention_head_dim=HEAD_DIM, num_attention_heads=HEADS, joint_attention_dim=arch.TEXT_HIDDEN,
        pooled_projection_dim=arch.TEXT_HIDDEN, guidance_embeds=False, axes_dims_rope=(8, 12, 12))


def scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # black-forest-labs/FLUX.1-dev scheduler/scheduler_config.json
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                           base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                           max_image_seq_len=4096)


def ip_adapter_xlabs(model, embed_dim: int, generator) -> dict[str, torch.Tensor]:
    """A fresh IP-Adapter in the XLabs-AI/flux-ip-adapter key layout: the image projection
    (CLIP image embedding -> IP_TOKENS tokens of the joint attention width) and, per
    double-stream block, biased key / value projections of those tokens (values start at
    zero: the adapter starts as a no-op)."""
    cross, inner = model.config.joint_attention_dim, model.inner_dim
    sd = {"ip_adapter_proj_model.proj.weight": torch.randn(IP_TOKENS * cross, embed_dim, generator=generator)
          * embed_dim ** -0.5,
          "ip_adapter_proj_model.proj.bias": torch.zeros(IP_TOKENS * cross),
          "ip_adapter_proj_model.norm.weight": torch.ones(cross),
          "ip_adapter_proj_model.norm.bias": torch.zeros(cross)}
    for i in range(model.config.num_layers):
        p = f"double_blocks.{i}.processor.ip_adapter_double_stream_"
        sd[p + "k_proj.weight"] = torch.randn(inner, cross, generator=generator) * cross ** -0.5
        sd[p + "k_proj.bias"] = torch.zeros(inner)
        sd[p + "v_proj.weight"] = torch.zeros(inner, cross)
        sd[p + "v_proj.bias"] = torch.zeros(inner)
    return sd


def ip_adapter_state(model) -> dict[str, torch.Tensor]:
    """The adapter loaded into `model` (after `load_ip_adapter`), back in the XLabs layout."""
    proj = model.encoder_hid_proj.image_projection_layers[0]
    sd = {"ip_adapter_proj_model.proj.weight": proj.image_embeds.weight,
          "ip_adapter_proj_model.proj.bias": proj.image_embeds.bias,
          "ip_adapter_proj_model.norm.weight": proj.norm.weight,
          "ip_adapter_proj_model.norm.bias": proj.norm.bias}
    i = 0
    for name, proc in model.attn_processors.items():
        if name.startswith("single_transformer_blocks"):
            continue
        p = f"double_blocks.{i}.processor.ip_adapter_double_stream_"
        for kv in ("k", "v"):
            layer = getattr(proc, f"to_{kv}_ip")[0]
            sd[p + f"{kv}_proj.weight"], sd[p + f"{kv}_proj.bias"] = layer.weight, layer.bias
        i += 1
    return {k: v.detach().float().contiguous() for k, v in sd.items()}


def version() -> str:
    from . import weights_version

    return "flux-v2-" + weights_version(WEIGHTS)  # v2: the tiny safety checker


TRAINED = ("transformer.safetensors", "text_encoder_2.safetensors", "image_encoder.safetensors", IP_WEIGHT)


def weight_file(weights: str, name: str, fresh: bool = False) -> str | None:
    """The path of file `name` in `weights`, or None when it is missing (or, with `fresh`,
    is one of the trained files: how training starts)."""
    path = os.path.join(weights, name)
    return path if os.path.exists(path) and not (fresh and name in TRAINED) else None


def parts(weights: str = WEIGHTS, fresh: bool = False) -> dict:
    """The pipeline's components from `weights` (a component without its file stays freshly
    initialised; with `fresh`, every trained one does: how training starts). The image
    encoder is `image_encoder.safetensors`, else the CLIP's vision tower it starts from."""
    from transformers import CLIPVisionModelWithProjection

    from . import image_encoder, text_encoders

    def file(name):
        return weight_file(weights, name, fresh)

    tok, tok2 = arch.tokenizer(), t5_tokenizer()
    clip = arch.clip(tok)
    if file("clip.safetensors"):
        arch.load_weights(clip, file("clip.safetensors"))
    vae = arch.vae()
    if file("vae.safetensors"):
        arch.load_weights(vae, file("vae.safetensors"))
    info = {}
    if file("world.json"):
        with open(file("world.json")) as f:
            info = json.load(f)
    vae.register_to_config(scaling_factor=info.get("vae_scaling_factor", 1.0),
                           shift_factor=info.get("vae_shift_factor", 0.0))
    text_encoder = text_encoders(clip)[0]
    t5_model = t5(tok2)
    if file("text_encoder_2.safetensors"):
        arch.load_weights(t5_model, file("text_encoder_2.safetensors"))
    model = transformer()
    if file("transformer.safetensors"):
        arch.load_weights(model, file("transformer.safetensors"))
    encoder = image_encoder(clip)
    if file("image_encoder.safetensors"):
        encoder = arch.load_weights(CLIPVisionModelWithProjection(clip.config.vision_config), file("image_encoder.safetensors"))
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tok, text_encoder_2=t5_model.eval(),
                tokenizer_2=tok2, transformer=model.eval(), scheduler=scheduler(), clip=clip,
                image_encoder=encoder, info=info)


def assemble(root: str, weights: str = WEIGHTS, components: dict | None = None,
             ip_adapter: dict | None = None, fresh: bool = False) -> None:
    """Write `root/pipeline` (the FLUX.1-dev repo layout), `root/ip_adapter` (the XLabs repo:
    `ip_adapter.safetensors` at its root) and `root/image_encoder` (the CLIP ViT-L repo's
    place) and `root/clip` (edit-alignment scores)."""
    from diffusers import FluxPipeline
    from safetensors.torch import load_file, save_file

    c = components or parts(weights, fresh)
    pipe = FluxPipeline(**{k: c[k] for k in ("vae", "text_encoder", "tokenizer", "text_encoder_2",
                                             "tokenizer_2", "transformer", "scheduler")})
    pipe.save_pretrained(os.path.join(root, "pipeline"))
    enc = os.path.join(root, "image_encoder")
    c["image_encoder"].save_pretrained(enc)
    arch.image_processor().save_pretrained(enc)
    if ip_adapter is None:
        path = weight_file(weights, IP_WEIGHT, fresh)
        ip_adapter = ({k: v.float() for k, v in load_file(path).items()} if path else
                      ip_adapter_xlabs(c["transformer"], c["image_encoder"].config.projection_dim,
                                       torch.Generator().manual_seed(1)))
    os.makedirs(os.path.join(root, "ip_adapter"), exist_ok=True)
    save_file({k: v.contiguous() for k, v in ip_adapter.items()}, os.path.join(root, "ip_adapter", IP_WEIGHT))
    c["clip"].save_pretrained(os.path.join(root, "clip"))
    c["tokenizer"].save_pretrained(os.path.join(root, "clip"))
    arch.image_processor().save_pretrained(os.path.join(root, "clip"))
    safety.write_tiny(c["clip"], arch.image_processor(), os.path.join(root, "safety_checker"))


def build(root: str, weights: str = WEIGHTS) -> str:
    """Write the tiny-flux preset into `root` once (safe across processes); return `root`."""
    from . import build_once

    if not os.path.exists(os.path.join(root, "BUILT")) and \
            not os.path.exists(os.path.join(weights, "transformer.safetensors")):
        raise RuntimeError(f"the tiny-flux weights are missing from {weights}: "
                           "train them with `python -m recontext train-tiny-flux`")
    return build_once(root, lambda tmp: assemble(tmp, weights), version())
