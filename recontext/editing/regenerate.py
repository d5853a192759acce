"""Regenerate: denoise the inverted noise under the target prompt alone (the baseline:
the whole image is re-imagined, every region free to change)."""


def edit(unet_call, attention, state, timesteps, alphas, source, target, reconstruct,
         callback=None):
    return reconstruct(unet_call, state, timesteps, alphas, target, callback=callback)
