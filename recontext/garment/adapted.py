"""What a garment method's `adapt` returns: how the shared sampler is to generate with it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Adapted:
    """`adapter`: a context manager the generation runs inside (a LoRA, attention processors),
    attached and restored by the model owner; `prompt`: the text to generate from; `image`:
    the picture IP-Adapter reads (None: none) at `image_scale`; `cached`: whether the
    adaptation came from the cache (None: there was nothing to adapt); `condition`: an
    optional change to the conditioning (extra guidance branches)."""

    prompt: str
    adapter: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)
    image: object = None
    image_scale: float = 0.0
    cached: bool | None = None
    condition: Callable | None = None
    notes: list[str] = field(default_factory=list)


def scaled(state: dict, scale: float) -> dict:
    """A peft LoRA state dict at `scale` (the B matrices scaled)."""
    return {k: v * scale if ".lora_B." in k else v for k, v in state.items()}
