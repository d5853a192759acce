"""IP-Adapter (Ye et al. 2023): the garment as the image prompt; adapting is computing its
image embeddings (kept per image by the model owner)."""

from ...methods import Option, Spec
from ..adapted import Adapted

SPEC = Spec("ip-adapter", family="epsilon", label="IP-Adapter", order=10, cost=2,
            needs=("unet", "image-prompt"), help="the garment as IP-Adapter's image prompt",
            options=(Option("scale", 0.6, 0.0, 1.5, "0 = the prompt alone … higher = the garment photo more strongly",
                            step=0.05, label="IP-Adapter scale"),))


def adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted:
    cached = bench.models.has_image_embeds(garment)
    bench.models.image_embeds(garment)
    return Adapted(prompt, image=garment, image_scale=settings["scale"], cached=cached)
