"""HyperLoRA: a garment photo in, LoRA weights for the UNet's attention out, in one pass.

garment → the CLIP vision encoder IP-Adapter already uses (its penultimate hidden states,
as IP-Adapter *plus* reads them) → a Perceiver-style resampler whose latents are one query
per target module → per module, coefficients over K learned low-rank bases for LoRA A and
B. Everything stays differentiable, so it trains through the frozen UNet.
Saved as `hyperlora.safetensors` + `config.json`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
WEIGHTS, CONFIG = "hyperlora.safetensors", "config.json"


def target_modules(unet, targets=TARGETS) -> list[tuple[str, int, int]]:
    """(name, in_features, out_features) of the UNet's attention projections named by
    `targets` (the transformer blocks' self- and cross-attention; not IP-Adapter's own)."""
    pattern = re.compile(r"\.attn[12]\.(" + "|".join(re.escape(t) for t in targets) + r")$")
    found = []
    for name, m in unet.named_modules():
        base = getattr(m, "base_layer", m)  # a peft LoRA layer wraps the original Linear
        if isinstance(base, nn.Linear) and pattern.search(name):
            found.append((name, base.in_features, base.out_features))
    return found


@dataclass
class HyperLoRAConfig:
    modules: list                      # [name, in, out] per target module, UNet order
    vision_dim: int                    # hidden size of the image encoder
    preset: str                        # what it was built for (named in mismatch errors)
    rank: int = 4
    bases: int = 8                     # K learned low-rank bases per module
    dim: int = 128                     # resampler width
    depth: int = 2
    heads: int = 4
    targets: list = field(default_factory=lambda: list(TARGETS))
    trained_steps: int = 0
    note: str = ""


class PerceiverLayer(nn.Module):
    """The latents attend to [image tokens; latents], then a feed-forward step."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_x, self.norm_q = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(),
                                nn.Linear(4 * dim, dim))

    def forward(self, latents, tokens):
        q = self.norm_q(latents)
        kv = torch.cat([self.norm_x(tokens), q], dim=1)
        latents = latents + self.attn(q, kv, kv, need_weights=False)[0]
        return latents + self.ff(latents)


class HyperLoRA(nn.Module):
    def __init__(self, config: HyperLoRAConfig):
        super().__init__()
        self.config = c = config
        self.proj_in = nn.Linear(c.vision_dim, c.dim)
        self.queries = nn.Parameter(torch.randn(len(c.modules), c.dim) * 0.02)
        self.layers = nn.ModuleList(PerceiverLayer(c.dim, c.heads) for _ in range(c.depth))
        self.norm_out = nn.LayerNorm(c.dim)
        self.to_coeffs = nn.Linear(c.dim, 2 * c.bases)
        # A bases like a LoRA's A (scaled to the input width); B bases small, not zero, so an
        # untrained network already gives each garment its own (slight) change.
        self.bases_a = nn.ParameterList(
            nn.Parameter(torch.randn(c.bases, c.rank, i) / math.sqrt(i)) for _, i, _ in c.modules)
        self.bases_b = nn.ParameterList(
            nn.Parameter(torch.randn(c.bases, o, c.rank) * 1e-3) for _, _, o in c.modules)

    def forward(self, tokens: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Image-encoder tokens (1, T, vision_dim) → {module name: (A (rank, in), B (out, rank))}."""
        if tokens.shape[0] != 1:
            raise ValueError("HyperLoRA predicts one garment at a time")
        x = self.proj_in(tokens)
        latents = self.queries[None]
        for layer in self.layers:
            latents = layer(latents, x)
        coeffs = self.to_coeffs(self.norm_out(latents))[0]  # (modules, 2K)
        ca, cb = coeffs.chunk(2, dim=-1)
        out = {}
        for m, (name, _, _) in enumerate(self.config.modules):
            a = torch.einsum("k,kri->ri", ca[m], self.bases_a[m])
            b = torch.einsum("k,kor->or", cb[m], self.bases_b[m])
            out[name] = (a, b)
        return out

    # -- files -----------------------------------------------------------------------
    def save(self, folder: str) -> None:
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(folder, WEIGHTS + ".tmp"))
        os.replace(os.path.join(folder, WEIGHTS + ".tmp"), os.path.join(folder, WEIGHTS))
        with open(os.path.join(folder, CONFIG), "w") as f:
            json.dump(asdict(self.config), f, indent=1)

    @classmethod
    def load(cls, folder: str, unet=None, vision_dim: int | None = None) -> "HyperLoRA":
        """Load a checkpoint; with `unet` / `vision_dim`, refuse one made for other models."""
        from safetensors.torch import load_file

        try:
            with open(os.path.join(folder, CONFIG)) as f:
                config = HyperLoRAConfig(**json.load(f))
            state = load_file(os.path.join(folder, WEIGHTS))
        except FileNotFoundError as e:
            raise ValueError(f"HyperLoRA checkpoint {folder!r}: missing {os.path.basename(e.filename)}") from None
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"HyperLoRA checkpoint {folder!r}: unreadable config ({e})") from None
        config.modules = [list(m) for m in config.modules]
        if unet is not None:
            here = [list(m) for m in target_modules(unet, config.targets)]
            if here != config.modules or (vision_dim and vision_dim != config.vision_dim):
                raise ValueError(
                    f"HyperLoRA checkpoint {folder!r} was trained for preset {config.preset!r} "
                    f"({len(config.modules)} attention modules); the loaded model has {len(here)} "
                    "that differ. Train one for this preset with `python -m recontext train-hyperlora`.")
        model = cls(config)
        model.load_state_dict(state)
        return model.eval()

    @classmethod
    def from_pretrained(cls, source: str, unet=None, vision_dim: int | None = None,
                        local_files_only: bool | None = None) -> "HyperLoRA":
        """`load` from a folder or a Hub repo id (`resolve`: the models mirror, the Hub cache,
        a download unless offline)."""
        return cls.load(resolve(source, local_files_only), unet, vision_dim)


def peft_state(weights: dict, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Predicted weights as the state dict `peft.set_peft_model_state_dict` takes; `scale`
    multiplies the LoRA update (applied to B)."""
    out = {}
    for name, (a, b) in weights.items():
        out[f"{name}.lora_A.weight"] = a.detach()
        out[f"{name}.lora_B.weight"] = b.detach() * scale
    return out


def functional_params(weights: dict, adapter: str) -> dict[str, torch.Tensor]:
    """Predicted weights named as the adapter's parameters, for `torch.func.functional_call`."""
    out = {}
    for name, (a, b) in weights.items():
        out[f"{name}.lora_A.{adapter}.weight"] = a
        out[f"{name}.lora_B.{adapter}.weight"] = b
    return out


# -- the Hub: a model card, pushing, loading by repo id --------------------------------
CARD = "README.md"
HUB_FILES = [WEIGHTS, CONFIG, CARD]  # what a pushed checkpoint holds (not the optimiser state)


def base_model(preset) -> str:
    """The Hub repo of the preset's base model (never a local path: a mirror's or the tiny
    world's folder says nothing on the Hub)."""
    from ..presets import hub_repo

    return hub_repo(preset.name) or f"recontext's {preset.name} preset (built locally)"


def write_card(folder: str, preset, losses: list[float], data: str, pairs: int, lr: float,
               seed: int, repo: str = "REPO") -> str:
    """README.md beside the weights: the base model, the data (a file's name, never its
    folder), the steps and the losses; `repo` is named in its usage line."""
    with open(os.path.join(folder, CONFIG)) as f:
        config = json.load(f)
    base = base_model(preset)
    k = max(1, min(50, len(losses) // 5))
    first, last = sum(losses[:k]) / max(1, len(losses[:k])), sum(losses[-k:]) / max(1, len(losses[-k:]))
    chunk = max(1, len(losses) // 10)  # the loss curve as ten means
    curve = [(min(i + chunk, len(losses)), sum(losses[i:i + chunk]) / len(losses[i:i + chunk]))
             for i in range(0, len(losses), chunk)]
    front = ["---", "library_name: recontext", "tags:", "- hyperlora", "- lora", "- hypernetwork",
             "- virtual-try-on"]
    if "/" in base and " " not in base:
        front.append(f"base_model: {base}")
    lines = front + ["---", "", f"# HyperLoRA for {base}", "",
                     "A hypernetwork that reads a garment photo and predicts LoRA weights for the base "
                     "model's attention (trained with `python -m recontext train-hyperlora`).", "",
                     "| | |", "|---|---|",
                     f"| base model | {base} |",
                     f"| recontext preset | `{preset.name}`, {preset.resolution} px |",
                     f"| data | {os.path.basename(data)} ({pairs} garment → worn pairs) |",
                     f"| steps | {len(losses)} (learning rate {lr:g}, seed {seed}) |",
                     f"| loss, first {k} steps | {first:.4f} |", f"| loss, last {k} steps | {last:.4f} |",
                     f"| LoRA rank, bases | {config['rank']}, {config['bases']} |",
                     f"| attention modules | {len(config['modules'])} ({', '.join(config['targets'])}) |", "",
                     f"Loss, mean of each {chunk} steps (step: loss): "
                     + ", ".join(f"{end}: {v:.4f}" for end, v in curve), "",
                     "## Use", "", "```bash",
                     f"RECONTEXT_HYPERLORA={repo} python -m recontext dress GARMENT.png "
                     f"--prompt \"a person in a park\" --preset {preset.name}", "```", ""]
    path = os.path.join(folder, CARD)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def push_to_hub(folder: str, repo: str, private: bool = False) -> dict:
    """Upload the checkpoint (weights, config, model card) to the Hub model repo `repo`,
    creating it if needed. ValueError with the reason when the Hub refuses or is unreachable."""
    from huggingface_hub import HfApi

    missing = [f for f in HUB_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise ValueError(f"HyperLoRA checkpoint {folder!r}: missing {', '.join(missing)}; nothing pushed")
    api = HfApi()
    try:
        url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=folder, repo_id=repo, repo_type="model",
                                 allow_patterns=HUB_FILES, commit_message="HyperLoRA checkpoint (recontext)")
    except Exception as e:  # network, token, offline mode, a bad repo id: one clear line
        raise ValueError(f"pushing {folder!r} to the Hub repo {repo!r} failed ({type(e).__name__}: {e}); "
                         "the checkpoint is saved locally") from None
    return {"repo": repo, "url": str(url), "commit": getattr(info, "oid", None)}


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(flag or constants.HF_HUB_OFFLINE)


def resolve(source: str, local_files_only: bool | None = None) -> str:
    """The folder of a HyperLoRA checkpoint named by a folder or a Hub repo id: a folder as
    it is; a repo id from the models mirror (`RECONTEXT_MODELS_DIR/<org>/<name>`) when it
    lies there, else through the Hub's cache (`snapshot_download`; only the cache when
    offline: `HF_HUB_OFFLINE`, a models mirror, or `local_files_only`)."""
    from ..presets import mirrored, models_dir

    if os.path.isdir(source):
        return source
    mirror = models_dir()
    if mirror and os.path.isdir(mirrored(source, mirror)):
        return mirrored(source, mirror)
    if local_files_only is None:
        local_files_only = _offline() or bool(mirror)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(source, repo_type="model", allow_patterns=HUB_FILES,
                                 local_files_only=local_files_only)
    except Exception as e:
        why = ("offline, and not in the local Hub cache" if local_files_only
               else f"the Hub download failed: {type(e).__name__}")
        raise ValueError(f"HyperLoRA checkpoint {source!r}: not a folder, and {why}") from None

