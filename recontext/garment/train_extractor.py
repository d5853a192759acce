"""Train the tiny preset's MagicClothing garment extractor on the synthetic garment pairs.

    python -m recontext.garment.train_extractor [--steps 300] [--pairs 64] [--seed 0]

The extractor starts as a copy of the tiny UNet and is the only thing trained: the
denoising UNet stays the frozen base model, as with the published extractor. At each step
the extractor reads the garments' latents at t = 0 under the empty prompt, the UNet's
self-attention attends to its hidden states (`extractor.reading`), and the usual
diffusion loss on the figure wearing the garment (the garment region weighted up) reaches
the extractor through the UNet. Garments and prompts are dropped at random (10 % each), as
joint garment/text guidance needs both unconditional branches. The weights are written in
float16 as a full UNet state dict in diffusers' key layout (the published checkpoint's
layout) to the tiny weights' extractor folder (`recontext.tiny.EXTRACTOR`), with training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from .. import images
from ..tiny import EXTRACTOR, EXTRACTOR_FILE, WEIGHTS
from .extractor import reading, recorded, recording
from .train import MASK_WEIGHT, diffusion_loss, mask_area, synthetic_pairs

FILE = EXTRACTOR_FILE
DROP = 0.1


def cat(conds):
    from dataclasses import replace

    first = conds[0]
    added = {k: [torch.cat([c.added[k][i] for c in conds]) for i in range(len(v))] if isinstance(v, list)
             else torch.cat([c.added[k] for c in conds]) for k, v in first.added.items()}
    return replace(first, text=torch.cat([c.text for c in conds]), added=added)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(WEIGHTS, EXTRACTOR))
    args = ap.parse_args(argv)

    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from .. import presets
    from ..models import ModelOwner

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    models = ModelOwner(presets.get("tiny"), device="cpu")
    unet = models.pipe.unet.requires_grad_(False)
    config = {**unet.config, "encoder_hid_dim_type": None, "encoder_hid_dim": None}
    ref = UNet2DConditionModel.from_config(config)
    ref.load_state_dict({k: v for k, v in unet.state_dict().items() if k in ref.state_dict()})
    ref = ref.float().train()
    recording(ref)

    res = models.preset.resolution
    data = []
    models.set_image_scale(0.0)
    empty = models.with_image(models.text_cond("", (res, res)), None)
    for p in synthetic_pairs(args.pairs, res):
        fig, _ = images.fit(images.load_image(p.image)[0], res, models.size_multiple)
        g, _ = images.fit(p.garment.convert("RGB"), res, models.size_multiple)
        lat = models.encode(fig)
        data.append((models.encode(g), lat, models.with_image(models.text_cond(p.prompt, fig.size), None),
                     1 + MASK_WEIGHT * mask_area(p.mask, fig.size, lat)))
    extractor_empty = models.text_cond("", (res, res))
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW([p for p in ref.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    losses = []
    for step in range(args.steps):
        idx = torch.randint(len(data), (args.batch,), generator=gen).tolist()
        present = [0.0 if torch.rand((), generator=gen) < DROP else 1.0 for _ in idx]
        conds = [empty if torch.rand((), generator=gen) < DROP else data[i][2] for i in idx]
        g = torch.cat([data[i][0] for i in idx])
        lat = torch.cat([data[i][1] for i in idx])
        weight = torch.cat([data[i][3] for i in idx])
        ref(g, torch.zeros(len(idx), dtype=torch.long), encoder_hidden_states=extractor_empty.text.expand(len(idx), -1, -1),
            added_cond_kwargs={k: v.expand(len(idx), *v.shape[1:]) for k, v in extractor_empty.added.items()},
            return_dict=False)
        with reading(models, recorded(ref), present):
            loss = diffusion_loss(models, lat, cat(conds), gen, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step} loss {sum(losses[-25:]) / len(losses[-25:]):.4f}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in ref.state_dict().items()}
    save_file(state, os.path.join(args.out, FILE))
    wall = time.perf_counter() - start
    info = {"command": " ".join(["python -m recontext.garment.train_extractor", *(sys.argv[1:] if argv is None else argv)]),
            "seed": args.seed, "steps": args.steps, "pairs": args.pairs, "batch": args.batch, "lr": args.lr,
            "device": f"cpu ({platform.processor() or platform.machine()}), "
                      f"{torch.get_num_threads()} thread(s)",
            "loss_first_25": sum(losses[:25]) / min(25, len(losses)),
            "loss_last_25": sum(losses[-25:]) / min(25, len(losses)),
            "wall_seconds": round(wall, 1), "bytes": os.path.getsize(os.path.join(args.out, FILE))}
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
