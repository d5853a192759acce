"""Fine-tuned LoRA (DreamBooth-style): a LoRA fitted to the garment photo for a number of
steps, then generated with an identifier in the prompt: the slow baseline HyperLoRA replaces."""

from ...methods import Option, Spec
from ...models import image_key
from .. import train
from ..adapted import Adapted, scaled

IDENTIFIER = "sks garment"  # what the fine-tuned LoRA learned to call the garment

SPEC = Spec("finetune-lora", family="epsilon", label="fine-tuned LoRA (slow)", order=20, cost=2, slow=True,
            needs=("unet", "fine-tuning"), help="a LoRA fitted to the garment photo (minutes), then generated",
            options=(Option("scale", 1.0, 0.0, 2.0, "0 = the prompt alone … 1 = the garment as fitted … 2 = stronger",
                            step=0.05, label="LoRA scale"),
                     Option("finetune_steps", 200, 1, 2000, "fine-tuning steps", kind="int", step=10,
                            label="Fine-tune steps")))


def _key(garment, settings, seed):
    return ("finetune", image_key(garment), settings["finetune_steps"], seed)


def todo(bench, garment, settings, seed) -> int:
    return 0 if _key(garment, settings, seed) in bench.garment_cache else settings["finetune_steps"]


def work(settings) -> dict:
    return {"encodes": 1, "finetune_steps": settings["finetune_steps"]}


def adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted:
    state, cached = bench.cached(_key(garment, settings, seed), lambda: train.finetune_lora(
        bench.models, garment, settings["finetune_steps"], seed, tick=tick))
    modules = [k.rsplit(".lora_", 1)[0] for k in state if ".lora_A." in k]
    rank = next(v for k, v in state.items() if ".lora_A." in k).shape[0]
    adapter = bench.models.lora(train.FINETUNE_ADAPTER, modules, rank, scaled(state, settings["scale"]))
    return Adapted(f"{prompt}, {IDENTIFIER}", adapter=adapter, cached=cached)
