"""What every stage of the tiny world's training shares (`train.py` runs the stages): each
batch's generator, seeded by (seed, stage, step); the device and what it changes (batches,
autocast, where noise is drawn, batches rendered ahead); the training data's draws (photo
crops, scenes, garments); and `Stage`, the resumable loop with its optimiser and schedule."""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np
import torch
from PIL import Image

from ..garment import synthetic
from . import arch, world

log = logging.getLogger(__name__)

# images per step, per device: on the CPU what the committed weights were trained with; on a
# GPU enough to fill it (models this small are bound by kernel launches). `clip` draws 48
# distinct scene captions + 16 distinct others on every device (there are 90 captions), and
# `hyperlora` one garment pair per step (each pair predicts its own LoRA weights).
BATCH = {"cpu": {"vae": 16, "unet": 16, "widen": 8},
         "cuda": {"vae": 256, "unet": 256, "widen": 64}}
# each stage's number in its batches' seeds, fixed: the numbers the committed weights were
# drawn with (stages since merged into `unet` or `widen` kept theirs out of use)
STAGE_IDS = {"vae": 0, "clip": 1, "unet": 2, "hyperlora": 5, "widen": 7}
PX = arch.RESOLUTION


def rng_for(seed: int, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, STAGE_IDS[stage], step])


# -- devices ---------------------------------------------------------------------------------
def device_for(name: str = "auto") -> torch.device:
    """`cpu`, `cuda` or `auto` (cuda where available) as a device; on CUDA, TF32 matmuls and
    convolutions allowed (float32 tensors, products at TF32 precision)."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def device_name(device: torch.device) -> str:
    """What the model card says a stage ran on: "cpu" or "cuda (NVIDIA H200)"."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def autocast(device: torch.device):
    """bfloat16 autocast on CUDA; nothing on the CPU (float32, as the committed weights were trained)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def normal(rng: np.random.Generator, shape, device: torch.device) -> torch.Tensor:
    """Standard normal noise of `shape` from the step's generator: drawn by numpy on the CPU
    (as the committed weights were trained); on a GPU drawn there, by a torch generator
    seeded from `rng`."""
    if device.type == "cpu":
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    g = torch.Generator(device).manual_seed(int(rng.integers(1 << 62)))
    return torch.randn(shape, generator=g, device=device)


def prefetch(make, start: int, stop: int, workers: int = 0):
    """`make(step)` for steps start..stop-1, in order: in this process (`workers` 0), or made
    ahead by `workers` processes (forked: `make` needs no pickling) into pinned memory."""
    if not workers:
        return map(make, range(start, stop))
    from torch.utils.data import DataLoader

    return iter(DataLoader(range(start, stop), batch_size=None, collate_fn=make, num_workers=workers,
                           pin_memory=torch.cuda.is_available(), prefetch_factor=4,
                           multiprocessing_context="fork"))


def workers_for(device: torch.device) -> int:
    """Processes rendering a stage's batches ahead: none on the CPU (the cores train), up to
    8 beside a GPU."""
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL RGB images -> (n, 3, h, w) in [-1, 1]."""
    a = np.stack([np.asarray(i.convert("RGB"), np.float32) for i in images]) / 127.5 - 1
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


class Photos:
    """The training photos, loaded once (grey ones as RGB)."""

    def __init__(self):
        self.images = [world.load_photo(p) for p in world.photo_paths()]
        self.faces = world.faces()

    def crop(self, rng, px: int) -> Image.Image:
        if rng.random() < 0.1:  # a small grey face, scaled up
            f = Image.fromarray(self.faces[rng.integers(len(self.faces))]).convert("RGB")
            return world.random_crop(f.resize((px, px), Image.BICUBIC), rng, px)
        return world.random_crop(self.images[rng.integers(len(self.images))], rng, px)

    def detailed_crop(self, rng, px: int) -> Image.Image:
        """The more detailed of two crops (`detail`): flat sky and walls teach a decoder little."""
        a, b = self.crop(rng, px), self.crop(rng, px)
        return a if detail(a) >= detail(b) else b


def detail(img: Image.Image) -> float:
    """Mean absolute difference between neighbouring grey pixels, across and down."""
    a = np.asarray(img.convert("L"), np.float32)
    return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())


def random_scene(rng) -> tuple[Image.Image, str, np.ndarray]:
    return world.scene(int(rng.integers(1 << 30)))


def garment_sample(rng) -> tuple[Image.Image, str]:
    """A garment on white or a figure wearing one, with its caption."""
    seed = int(rng.integers(1 << 30))
    if rng.random() < 0.5:
        return synthetic.garment(seed, PX), synthetic.garment_caption(seed)
    return synthetic.scene(seed, PX), (synthetic.prompt(seed) if rng.random() < 0.5
                                       else synthetic.scene_prompt(seed))


# -- checkpointing ---------------------------------------------------------------------
class Stage:
    """Resumable training state of one stage: module(s), optimiser, step, losses."""

    def __init__(self, name: str, work: str, modules: dict, params, lr: float, steps: int,
                 device: torch.device = torch.device("cpu")):
        self.name, self.steps, self.modules, self.device = name, steps, modules, device
        self.path = os.path.join(work, f"{name}.pt")
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=steps,
                                                         pct_start=min(max(0.05, 3 / steps), 0.75),
                                                         anneal_strategy="cos")
        self.step, self.losses, self.seconds = 0, [], 0.0
        if os.path.exists(self.path):
            state = torch.load(self.path, weights_only=False, map_location="cpu")  # to the modules' device below
            if state["sched"]["total_steps"] != steps:
                raise ValueError(f"{self.path} is a checkpoint of a {state['sched']['total_steps']}-step {name} "
                                 f"run, not {steps}: delete it to start afresh, or ask for its steps")
            for k, m in modules.items():
                m.load_state_dict(state["modules"][k])
            self.opt.load_state_dict(state["opt"])
            self.sched.load_state_dict(state["sched"])
            self.step, self.losses, self.seconds = state["step"], state["losses"], state["seconds"]
            log.info("%s: resumed at step %d", name, self.step)

    def save(self):
        tmp = self.path + ".tmp"
        torch.save({"modules": {k: m.state_dict() for k, m in self.modules.items()},
                    "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "step": self.step,
                    "losses": self.losses, "seconds": self.seconds}, tmp)
        os.replace(tmp, self.path)

    def run(self, loss_fn, save_every: int = 200, report=None, data=None):
        """Train to `self.steps`: `loss_fn(step)`, or with `data` (the step's batch, made on the
        CPU) `loss_fn(step, data(step))`, the batches made ahead by worker processes beside a
        GPU (`prefetch`). The forward pass runs under `autocast`."""
        start = time.perf_counter() - self.seconds
        batches = data and prefetch(data, self.step, self.steps, workers_for(self.device))
        while self.step < self.steps:
            with autocast(self.device):
                loss = loss_fn(self.step, next(batches)) if data else loss_fn(self.step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            self.losses.append(loss.item())
            self.step += 1
            self.seconds = time.perf_counter() - start
            if self.step % 50 == 0 or self.step == self.steps:
                recent = self.losses[-50:]
                log.info("%s step %d/%d loss %.5f (%.0f s)", self.name, self.step, self.steps,
                         sum(recent) / len(recent), self.seconds)
            if report and self.step % save_every == 0:
                report(self.step)
            if self.step % save_every == 0 or self.step == self.steps:
                self.save()
        return self.summary()

    def summary(self) -> dict:
        k = max(1, min(100, len(self.losses) // 10))
        return {"steps": self.steps, "loss_first": sum(self.losses[:k]) / k,
                "loss_last": sum(self.losses[-k:]) / k, "seconds": round(self.seconds, 1)}
