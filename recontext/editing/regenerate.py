"""Regenerate: denoise the inverted noise under the target prompt alone (the baseline:
the whole image is re-imagined, every region free to change)."""

from ..methods import Spec


def edit(unet_call, attention, state, timesteps, alphas, source, target, reconstruct,
         callback=None):
    return reconstruct(unet_call, state, timesteps, alphas, target, callback=callback)


SPEC = Spec("regenerate", family="any", order=0, cost=1,
            help="denoise the inverted noise under the target prompt alone: the baseline; "
                 "the whole image is re-imagined")
