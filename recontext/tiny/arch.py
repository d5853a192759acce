"""The tiny world's architectures: the same diffusers / transformers classes as SDXL and
its IP-Adapter, at sizes that train on 2 CPU cores.

- tokenizer: byte-level CLIP BPE whose merges spell the world's words as single tokens
  (other text still tokenizes, byte by byte);
- one CLIP (text 64 wide, vision 64 px in 8 px patches), trained contrastively; its text
  tower is both SDXL text encoders, its vision tower the IP-Adapter image encoder;
- VAE: 4x downsampling to 16 latent channels (128 px -> 16x32x32); trained narrow, then
  widened (`widen_vae`) so that its decoder can grow without moving the latent space;
- UNet: SDXL-shaped (text_time embedding; like SDXL, no attention at the finest level);
- IP-Adapter *plus*: resampler width 64, 8 image tokens, in the h94 key layout.
"""

from __future__ import annotations

import os

import torch

PREDICTION = "v_prediction"  # what the tiny UNet predicts

RESOLUTION = 128
TEXT_HIDDEN = 64
LATENT_CHANNELS = 16
IP_DIM, IP_QUERIES, IP_FF_MULT = 64, 8, 4

WORDS = ("a an on the at of background photo person wearing red green blue yellow white black "
         "circle square triangle purple orange teal plain striped dotted checked t-shirt dress "
         "trousers skirt beach street park studio garment sks cat dog tiger with and in").split()


def tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())  # the 256 byte-level symbols
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    merges = []
    for word in sorted(WORDS, key=len, reverse=True):  # long words' merges rank first  # merge left to right until the word is one token
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts = [pair[0] + pair[1]] + parts[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def text_config(tok):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tok), hidden_size=TEXT_HIDDEN, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_HIDDEN,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )


def vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(image_size=64, patch_size=8, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=3, num_attention_heads=4, projection_dim=TEXT_HIDDEN)


def clip(tok):
    from transformers import CLIPConfig, CLIPModel

    return CLIPModel(CLIPConfig(text_config=text_config(tok).to_dict(),
                                vision_config=vision_config().to_dict(), projection_dim=TEXT_HIDDEN))


def image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})


def save_weights(module_or_sd, path: str, half: bool = True) -> None:
    """A module's (or a state dict's) tensors as safetensors on the CPU (whatever device they
    trained on), floats in fp16 unless `half` is False."""
    from safetensors.torch import save_file

    sd = module_or_sd if isinstance(module_or_sd, dict) else module_or_sd.state_dict()
    save_file({k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in sd.items()}, path)


def load_weights(module, path: str, strict: bool = True):
    """`module` with the safetensors file at `path` loaded (floats as float32), in eval mode."""
    from safetensors.torch import load_file

    sd = load_file(path)
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=strict)
    return module.eval()


VAE_WIDTH, VAE_LAYERS = 2, 2  # the shipped VAE; the "vae" stage trains width 1, 1 layer


def vae(width: int = VAE_WIDTH, layers: int = VAE_LAYERS):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        block_out_channels=tuple(c * width for c in (16, 32, 64)),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=layers, norm_num_groups=8 * width, sample_size=RESOLUTION,
    )


@torch.no_grad()
def widen_vae(small: dict[str, torch.Tensor], big) -> None:
    """Load a narrower, shallower VAE's weights `small` into `big` (built by `vae()` with
    more width and/or layers, groups of the same size) so that it computes the same
    function: each old tensor fills the leading slice of its new one, so old channels keep
    their GroupNorm groups. In the encoder every new weight is zero (new channels stay zero,
    new resnets are identities): latents are unchanged, and with them everything trained on
    them. In the decoder new channels and resnets start from `big`'s own initialisation but
    feed nothing yet (zero into old channels; a new resnet's conv2 zero), so training can
    grow them from the old decoder's output. Attention's scores scale by 1/sqrt(width): the
    old query is rescaled to keep them."""
    new = {}
    for key, init in big.state_dict().items():
        encoder = key.startswith(("encoder.", "quant_conv."))
        out = torch.zeros_like(init) if encoder or ".conv2." in key else init.clone()
        old = small.get(key)
        if old is not None:
            old = old.to(init.dtype)
            if not encoder and init.dim() >= 2:
                out[: old.shape[0]] = 0  # old outputs read no new input
            if not encoder and (".to_q." in key or ".to_k." in key):
                out[old.shape[0]:] = 0  # new query / key dims add nothing to the scores
            if ".to_q." in key:
                old = old * (init.shape[0] / old.shape[0]) ** 0.5
            out[tuple(slice(0, n) for n in old.shape)] = old
        new[key] = out
    big.load_state_dict(new)


def unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=RESOLUTION // 4, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, cross_attention_dim=2 * TEXT_HIDDEN,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + TEXT_HIDDEN, norm_num_groups=8,
    )


def scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    # SDXL's training schedule (scaled_linear 0.00085-0.012), as the DDIM of its pipelines
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         num_train_timesteps=1000, prediction_type=prediction_type)


def ip_adapter_plus(unet_model, vision_hidden: int, generator) -> dict[str, torch.Tensor]:
    """A freshly initialised IP-Adapter *plus* file in the original (Hub) key layout: the
    Perceiver resampler (`image_proj.*`) and, per cross-attention processor in
    `unet.attn_processors` order, `ip_adapter.{1,3,5,...}.to_{k,v}_ip.weight`."""
    cross, dim, inner = unet_model.config.cross_attention_dim, IP_DIM, 64  # heads = rows // 64

    def rand(*shape, scale=None):  # default: 1/sqrt(fan-in), so the resampler's signal starts at unit size
        return torch.randn(*shape, generator=generator) * (shape[-1] ** -0.5 if scale is None else scale)

    sd = {
        "image_proj.latents": rand(1, IP_QUERIES, dim, scale=dim**-0.5),
        "image_proj.proj_in.weight": rand(dim, vision_hidden), "image_proj.proj_in.bias": torch.zeros(dim),
        "image_proj.proj_out.weight": rand(cross, dim), "image_proj.proj_out.bias": torch.zeros(cross),
        "image_proj.norm_out.weight": torch.ones(cross), "image_proj.norm_out.bias": torch.zeros(cross),
    }
    for i in range(4):
        p = f"image_proj.layers.{i}."
        sd.update({
            p + "0.norm1.weight": torch.ones(dim), p + "0.norm1.bias": torch.zeros(dim),
            p + "0.norm2.weight": torch.ones(dim), p + "0.norm2.bias": torch.zeros(dim),
            p + "0.to_q.weight": rand(inner, dim), p + "0.to_kv.weight": rand(2 * inner, dim),
            p + "0.to_out.weight": rand(dim, inner),
            p + "1.0.weight": torch.ones(dim), p + "1.0.bias": torch.zeros(dim),
            p + "1.1.weight": rand(dim * IP_FF_MULT, dim), p + "1.3.weight": rand(dim, dim * IP_FF_MULT),
        })
    key_id = 1
    for name, hidden in cross_attention_widths(unet_model):
        sd[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross, scale=cross**-0.5)
        sd[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.zeros(hidden, cross)  # starts as no-op
        key_id += 2
    return {k: v.contiguous() for k, v in sd.items()}


def cross_attention_widths(unet_model) -> list[tuple[str, int]]:
    """(processor name, hidden width) of every cross-attention processor, in order."""
    channels = unet_model.config.block_out_channels
    out = []
    for name in unet_model.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        out.append((name, hidden))
    return out


def widened(small):
    """`small` (a trained narrow VAE) laid into `vae()` by `widen_vae`: the same
    latents, and until the widen stage trains it, the same decoded images."""
    big = vae()
    widen_vae(small.state_dict(), big)
    return big.eval()


def trained_vae(out: str, wide: bool = True):
    """The VAE as trained so far: `vae.safetensors`; `wide`: `widened`, with
    `wide_decoder.safetensors` laid over it. The presets ship the wide one."""
    small = load_weights(vae(width=1, layers=1), os.path.join(out, "vae.safetensors"))
    if not wide:
        return small
    wide_vae = widened(small)
    if os.path.exists(os.path.join(out, "wide_decoder.safetensors")):
        load_weights(wide_vae, os.path.join(out, "wide_decoder.safetensors"), strict=False)
    return wide_vae
