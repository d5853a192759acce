"""Overhead of `Studio.reconstruct` over the same work written directly against diffusers.

Both sides, on the tiny preset: 50-step DDIM inversion of a photo and its 50-step
reconstruction at guidance 1.0, then decoding. The direct side uses a plain pipeline
(no IP-Adapter), `DDIMInverseScheduler` for the inversion and the pipeline itself with
`latents=` for the reconstruction. Runs are interleaved; medians are compared.

    python bench/inversion_overhead.py [--steps 50] [--repeats 7]

Prints `overhead ratio: X` last (Studio time ÷ direct time; goal ≤ 1.10).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from recontext import Studio  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402


def direct_pipeline(preset):
    from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(preset.base, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    return pipe, inverse


def direct(pipe, inverse, photo: Image.Image, prompt: str, steps: int):
    """DDIM inversion with UNet calls and DDIMInverseScheduler, then the pipeline."""
    with torch.no_grad():
        x = pipe.image_processor.preprocess(photo)
        latents = pipe.vae.encode(x).latent_dist.mode() * pipe.vae.config.scaling_factor
        embeds, _, pooled, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
        h, w = photo.height, photo.width
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=embeds.dtype)
        inverse.set_timesteps(steps)
        for t in inverse.timesteps:
            eps = pipe.unet(latents, t, encoder_hidden_states=embeds,
                            added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
            latents = inverse.step(eps, t, latents).prev_sample
        return pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, latents=latents,
                    num_inference_steps=steps, guidance_scale=1.0, height=h, width=w).images[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    quiet_libraries()
    torch.manual_seed(0)
    studio = Studio("tiny")
    path = os.path.join(os.path.dirname(__file__), "..", "assets", "photos", "chelsea.png")
    prompt = "a photo of a cat"
    r = studio.reconstruct(path, prompt, method="ddim", steps=args.steps)  # warm up, builds tiny
    path = r.source  # both sides get the same working-size PIL image
    pipe, inverse = direct_pipeline(studio.preset)
    ref = direct(pipe, inverse, r.source, prompt, args.steps)
    diff = abs(torch.tensor(list(ref.getdata()), dtype=torch.float) -
               torch.tensor(list(r.output.getdata()), dtype=torch.float)).max().item()
    print(f"max pixel difference studio vs direct: {diff:.0f} / 255")

    t_studio, t_direct = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        studio.reconstruct(path, prompt, method="ddim", steps=args.steps)
        t_studio.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        direct(pipe, inverse, r.source, prompt, args.steps)
        t_direct.append(time.perf_counter() - t0)
    s, d = statistics.median(t_studio), statistics.median(t_direct)
    print(f"steps: {args.steps}, repeats: {args.repeats}, torch threads: {torch.get_num_threads()}")
    print(f"Studio.reconstruct median: {s:.3f} s")
    print(f"direct diffusers median:   {d:.3f} s")
    print(f"overhead ratio: {s / d:.3f}")


if __name__ == "__main__":
    main()
