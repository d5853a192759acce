"""Several conditionings denoised in one UNet batch: the source and target branches of
prompt-to-prompt, the base and concept branches of LEDITS++.

A guided `Cond` takes two rows (unconditional, then conditional), an unguided one takes
one; `batch` stacks them once per edit (so IP-Adapter's projection of the same embedding
tensor is computed once), `rows` says which row is each branch's conditional one, and
`call` runs the UNet once and applies each branch's own guidance (`split` and `guide`
are its two halves, for a method that needs the raw rows).
"""

from __future__ import annotations

import torch

from ..models import Cond


def _rows(cond: Cond) -> int:
    return 2 if cond.guided else 1


def batch(conds: list[Cond]) -> Cond:
    """One unguided Cond holding every branch's rows, in order."""
    added = {}
    for key in conds[0].added:
        if key == "image_embeds":
            added[key] = [torch.cat([c.added[key][i] for c in conds])
                          for i in range(len(conds[0].added[key]))]
        else:
            added[key] = torch.cat([c.added[key] for c in conds])
    return Cond(torch.cat([c.text for c in conds]), added, 1.0)


def rows(conds: list[Cond]) -> list[int]:
    """The batch row of each branch's conditional (text) half."""
    out, start = [], 0
    for c in conds:
        start += _rows(c)
        out.append(start - 1)
    return out


def split(unet_call, xs: list[torch.Tensor], t, conds: list[Cond], batched: Cond) -> list[torch.Tensor]:
    """One UNet call for every branch: each branch's rows of predicted noise, unguided
    (unconditional row first when guided)."""
    x = torch.cat([x for x, c in zip(xs, conds) for _ in range(_rows(c))])
    eps = unet_call(x, t, batched)
    return list(eps.split([_rows(c) for c in conds]))


def guide(e: torch.Tensor, cond: Cond) -> torch.Tensor:
    """A branch's rows combined at its own guidance (as `ModelOwner.unet_call` does)."""
    return e[:1] + cond.guidance * (e[1:] - e[:1]) if cond.guided else e


def call(unet_call, xs: list[torch.Tensor], t, conds: list[Cond], batched: Cond) -> list[torch.Tensor]:
    """Predicted noise of latents `xs[i]` under `conds[i]` (each at its own guidance)."""
    return [guide(e, c) for e, c in zip(split(unet_call, xs, t, conds, batched), conds)]
