"""DDIM inversion (Song et al. 2021; Mokady et al. 2023's usage): run the deterministic
sampler backwards, approximating the noise at level i by the prediction at level i-1."""

from ..methods import Spec
from .schedule import ddim_step


def invert(unet_call, x, timesteps, alphas, cond, generator=None, callback=None):
    for i, t in enumerate(timesteps):
        eps = unet_call(x, t, cond)
        x = ddim_step(x, eps, alphas[i], alphas[i + 1])
        if callback:
            callback(i)
    return x


def reconstruct(unet_call, state, timesteps, alphas, cond, callback=None):
    x = state
    for i in reversed(range(len(timesteps))):
        eps = unet_call(x, timesteps[i], cond)
        x = ddim_step(x, eps, alphas[i + 1], alphas[i])
        if callback:
            callback(len(timesteps) - 1 - i)
    return x


SPEC = Spec("ddim", family="epsilon", label="DDIM", cost=2, order=0,
            help="deterministic DDIM run backwards; the plain baseline of UNet models")
