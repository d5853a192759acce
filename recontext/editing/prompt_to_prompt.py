"""Prompt-to-prompt (Hertz et al. 2022) from an inversion.

The source and target branches are denoised together from the same inverted state (the
inversion method's own `reconstruct` steps both; edit-friendly replays its noise maps in
both). For the first `cross_replace` fraction of steps the target branch's text
cross-attention takes the source branch's maps through the token alignment `mapper`
(see `tokens.align`); for the first `self_replace` fraction its self-attention takes the
source's. `reweight` = (positions, factor) scales the target's attention to a word over
the cross-replace steps. Only the conditional rows are edited, as in the paper's code;
the source branch runs at the inversion's guidance, so it is the reconstruction itself.
Self-attention maps are replaced where they have at most 32² keys (the paper's limit).
"""

from __future__ import annotations

import torch

from . import branches

SELF_KEYS = 32 ** 2


class Control:
    def __init__(self, source_row, target_row, mapper, cross_steps, self_steps, reweight=None):
        self.source_row, self.target_row = source_row, target_row
        self.mapper = torch.tensor(mapper)
        self.cross_steps, self.self_steps = cross_steps, self_steps
        self.reweight = reweight
        self.step = 0

    def wants(self, is_cross, name):
        return self.step < (self.cross_steps if is_cross else self.self_steps)

    def __call__(self, probs, is_cross, name):
        s, t = probs[self.source_row], probs[self.target_row]
        if is_cross:
            mapper = self.mapper.to(probs.device)
            t = torch.where(mapper >= 0, s[..., mapper.clamp(min=0)], t)
            if self.reweight:
                t = t.clone()
                t[..., self.reweight[0]] *= self.reweight[1]
        elif probs.shape[-1] <= SELF_KEYS:
            t = s
        probs = probs.clone()
        probs[self.target_row] = t
        return probs


def _twice(state):
    """The inverted state for two branches: every tensor in it stacked with itself."""
    if isinstance(state, torch.Tensor):
        return torch.cat([state, state])
    if isinstance(state, (list, tuple)):
        return type(state)(_twice(s) for s in state)
    return state


def edit(unet_call, attention, state, timesteps, alphas, source, target, reconstruct,
         mapper, cross_replace=0.8, self_replace=0.4, reweight=None, callback=None):
    """The target branch's final latents."""
    n = len(timesteps)
    conds = [source, target]
    batched = branches.batch(conds)
    control = Control(*branches.rows(conds), mapper, round(cross_replace * n),
                      round(self_replace * n), reweight)

    def both(x, t, _cond):
        eps = branches.call(unet_call, list(x.chunk(2)), t, conds, batched)
        control.step += 1
        return torch.cat(eps)

    with attention(control):
        z = reconstruct(both, _twice(state), timesteps, alphas, None, callback=callback)
    return z[1:]
