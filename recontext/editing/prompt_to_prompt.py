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

from ..methods import Option, Spec
from . import branches, tokens

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


def parse_reweight(value):
    """"word=factor" or (word, factor) -> (word, factor), the factor within -10..10."""
    if isinstance(value, str):
        word, sep, factor = value.partition("=")
        if not sep or not word.strip():
            raise ValueError(f"reweight must look like word=factor (e.g. green=2), got {value!r}")
        value = (word.strip(), factor)
    word, factor = value
    return str(word), Option("reweight", 1.0, -10.0, 10.0).check(factor, "reweight factor")


def arguments(models, source_prompt: str, target_prompt: str, settings: dict) -> dict:
    """What `edit` takes beyond the shared arguments: the token alignment and the reweight."""
    count = models.word_tokens
    reweight = settings.get("reweight")
    if reweight:
        word, factor = reweight
        reweight = ([p for p in tokens.positions(target_prompt, word, count) if p < models.text_length],
                    float(factor))
    return dict(mapper=tokens.align(source_prompt, target_prompt, count, models.text_length),
                cross_replace=settings["cross_replace"], self_replace=settings["self_replace"],
                reweight=reweight or None)


# the word-swap settings of the authors' notebook: cross 0.8, self 0.4
SPEC = Spec(
    "prompt-to-prompt", family="epsilon", order=10, cost=2, needs=("unet",),
    help="source and target denoised together; the target borrows the source's cross-attention "
         "(and self-attention) maps early on, so layout and background stay (Hertz et al. 2022)",
    options=(
        Option("cross_replace", 0.8, 0.0, 1.0, "fraction of steps with the source's word maps", step=0.05,
               label="Cross-attention replace"),
        Option("self_replace", 0.4, 0.0, 1.0, "fraction of steps with the source's layout maps", step=0.05,
               label="Self-attention replace"),
        Option("reweight", None, kind="text", parse=parse_reweight, label="Re-weight a target word",
               help='re-weight a target word, e.g. "green=2" (optional)'),
    ))
