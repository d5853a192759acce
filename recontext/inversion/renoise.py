"""ReNoise (Garibi et al. 2024): each inversion step is refined by fixed-point
iterations — predict the noise at the current estimate of the next level, step again
from the same start — and the step is finally taken with the averaged predictions.
Reconstruction is plain DDIM."""

from . import ddim
from .schedule import ddim_step

ITERATIONS = 3  # renoising iterations per step (each costs one UNet call)


def invert(unet_call, x, timesteps, alphas, cond, generator=None, callback=None,
           iterations=ITERATIONS):
    for i, t in enumerate(timesteps):
        guess = ddim_step(x, unet_call(x, t, cond), alphas[i], alphas[i + 1])
        predictions = []
        for _ in range(iterations):
            eps = unet_call(guess, t, cond)
            predictions.append(eps)
            guess = ddim_step(x, eps, alphas[i], alphas[i + 1])
        x = ddim_step(x, sum(predictions) / len(predictions), alphas[i], alphas[i + 1])
        if callback:
            callback(i)
    return x


reconstruct = ddim.reconstruct
