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
eta 0.9 and stop 0.38). Coordinates as in `flow_euler.py`.
"""

import torch

from ..methods import Option, Spec

GAMMA, ETA, START, STOP = 0.5, 1.0, 0.0, 0.25


def invert(velocity, x, timesteps, sigmas, cond, generator=None, callback=None, gamma=GAMMA):
    image = x
    noise = torch.randn(x.shape, generator=generator, device="cpu").to(x)
    for i in range(len(timesteps)):
        v = velocity(x, sigmas[i], cond)
        v = v + gamma * ((noise - x) / (1 - sigmas[i]) - v)
        x = x + (sigmas[i + 1] - sigmas[i]) * v
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


SPEC = Spec(
    "rf-inversion", family="flow", label="RF-Inversion", cost=2, stochastic=True, order=10,
    help="RF-Inversion: controlled forward and reverse flow ODEs (Rout et al. 2024; draws noise)",
    options=(
        Option("gamma", GAMMA, 0.0, 1.0, "controller strength while inverting (toward the noise)", step=0.05),
        Option("eta", ETA, 0.0, 1.0, "controller strength while rebuilding (toward the photo)", step=0.05,
               stage="reconstruct"),
        Option("start", START, 0.0, 1.0, "where the reverse controller starts (fraction from the noise)",
               step=0.05, stage="reconstruct"),
        Option("stop", STOP, 0.0, 1.0, "where it stops", step=0.05, stage="reconstruct"),
    ))
