"""Flow-Euler inversion: the Euler solver of a rectified-flow ODE run backwards (image ->
noise), then forwards (noise -> image). The plain baseline of flow-matching models.

Flow levels: sigma 0 is the clean latent, `sigmas[i]` (ascending, 1.0 last) the noise
level i, where x = (1 - sigma) * image + sigma * noise. `velocity(x, sigma, cond)`
returns the model's dx/dsigma (FLUX predicts noise - image), so one Euler step from
level i to level j is x + (sigmas[j] - sigmas[i]) * velocity. `timesteps` is the list of
levels 1..N the solver visits (as the epsilon methods take it); only its length is used.
"""

from ..methods import Spec


def invert(velocity, x, timesteps, sigmas, cond, generator=None, callback=None):
    for i in range(len(timesteps)):
        x = x + (sigmas[i + 1] - sigmas[i]) * velocity(x, sigmas[i], cond)
        if callback:
            callback(i)
    return x


def reconstruct(velocity, state, timesteps, sigmas, cond, callback=None):
    x = state
    for i in reversed(range(1, len(timesteps) + 1)):
        x = x + (sigmas[i - 1] - sigmas[i]) * velocity(x, sigmas[i], cond)
        if callback:
            callback(len(timesteps) - i)
    return x


SPEC = Spec("flow-euler", family="flow", label="flow-Euler", cost=2, order=0,
            help="the Euler solver of the flow ODE run backwards; the plain baseline of flow models")
