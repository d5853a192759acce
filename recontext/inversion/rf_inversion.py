"""RF-Inversion (Rout et al. 2024, "Semantic Image Inversion and Editing using Rectified
Stochastic Differential Equations", arXiv 2410.10792): flow-Euler with a controller.

Inverting (their Algorithm 1, the controlled forward ODE), each step follows the model's
velocity blended with strength `gamma` toward the straight path to one fixed Gaussian
sample: v + gamma * ((noise - x) / (1 - sigma) - v). Reconstructing or editing (their
Algorithm 2, the controlled reverse ODE), each step between `start` and `stop` (fractions
of the trajectory counted from the noise) follows the velocity blended with strength
`eta` toward the straight path back to the image latents: v + eta * ((x - image) / sigma - v);
the other steps follow the model alone. With gamma = eta = 0 this is flow-Euler.

Defaults are those of the diffusers community pipeline `pipeline_flux_rf_inversion.py`
(gamma 0.5 in `invert`; eta 1.0, start 0, stop 0.25 in `__call__`; its example edits with
eta 0.9 and stop 0.38). While inverting, the pipeline tells the transformer the level i/(N+1)
(and uses it in the controller) while stepping by the shifted levels' intervals taken from the noise
end: `timestep="linear"`, the default (measured better here); `"shifted"` tells it the shifted level
each step starts from, which with gamma = 0 is flow-Euler. Coordinates as in `flow_euler.py`.
"""

import torch

from ..methods import Option, Spec

GAMMA, ETA, START, STOP = 0.5, 1.0, 0.0, 0.25
# the level the transformer is told while inverting: the community pipeline's i/(N+1) ("linear"),
# which on tiny-flux reconstructed better than the shifted level on 8 of 8 held-out inputs
# (mean 18.68 against 18.32 dB, 28 steps; `python bench/editing_strength.py --rf-timestep`)
TIMESTEP = "linear"


def invert(velocity, x, timesteps, sigmas, cond, generator=None, callback=None, gamma=GAMMA, timestep=TIMESTEP):
    image = x
    noise = torch.randn(x.shape, generator=generator, device="cpu").to(x)
    n = len(timesteps)
    for i in range(n):
        if timestep == "linear":  # the community pipeline: told i/(n+1), stepping by the shifted
            t = sigmas[i].new_tensor(i / (n + 1))  # intervals taken from the noise end first
            step = sigmas[n - i] - sigmas[n - i - 1]
        else:
            t, step = sigmas[i], sigmas[i + 1] - sigmas[i]
        v = velocity(x, t, cond)
        v = v + gamma * ((noise - x) / (1 - t) - v)
        x = x + step * v
        if callback:
            callback(i)
    return x, image


def reconstruct(velocity, state, timesteps, sigmas, cond, callback=None, eta=ETA, start=START, stop=STOP):
    x, image = state
    n = len(timesteps)
    for k, i in enumerate(reversed(range(1, n + 1))):  # k: steps taken from the noise
        v = velocity(x, sigmas[i], cond)
        if int(start * n) <= k < min(int(stop * n), n):
            v = v + eta * ((x - image) / sigmas[i] - v)
        x = x + (sigmas[i - 1] - sigmas[i]) * v
        if callback:
            callback(k)
    return x


def _timestep(value) -> str:
    value = str(value).strip().lower()
    if value not in ("shifted", "linear"):
        raise ValueError(f"timestep must be 'shifted' or 'linear', got {value!r}")
    return value


SPEC = Spec(
    "rf-inversion", family="flow", label="RF-Inversion", cost=2, stochastic=True, order=10,
    help="RF-Inversion: controlled forward and reverse flow ODEs (Rout et al. 2024; draws noise)",
    options=(
        Option("gamma", GAMMA, 0.0, 1.0, "controller strength while inverting (toward the noise)", step=0.05),
        Option("timestep", TIMESTEP, kind="text", parse=_timestep, label="Inversion timestep",
               help="the level the transformer is told while inverting: 'shifted' (the shifted level each step "
                    "starts from, as the reverse pass does) or 'linear' (the community pipeline's i/(N+1), "
                    "stepping by the shifted intervals taken from the noise end: better reconstructions on tiny-flux, "
                    "+0.36 dB mean on 8 held-out inputs; its gamma 1 no longer lands exactly on the Gaussian "
                    "sample); see docs/methods.md"),
        Option("eta", ETA, 0.0, 1.0, "controller strength while rebuilding (toward the photo)", step=0.05,
               stage="reconstruct"),
        Option("start", START, 0.0, 1.0, "where the reverse controller starts (fraction from the noise)",
               step=0.05, stage="reconstruct"),
        Option("stop", STOP, 0.0, 1.0, "where it stops", step=0.05, stage="reconstruct"),
    ))
