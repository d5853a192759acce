"""Flow inversion on tiny-flux: flow-Euler and RF-Inversion, with and without Tight Inversion.

    python bench/flow_inversion.py [--scenes 6] [--steps N] [--scale 0.4] [--flux-shapes]

Per method and variant, averaged over the example photos and held-out scenes (their
captions as prompts) at the preset's default steps (28): PSNR against the input,
inversion PSNR (against the VAE's own round trip: the inversion alone) and seconds per
photo (inversion + reconstruction); then the transformer's x0 prediction error from the
inputs noised to sigma 0.95 and 0.8, with no image, the input's own and another input's
through the adapter. Last line: `rf-inversion tight gain: X dB`.

`--flux-shapes` (CUDA only): FLUX.1-dev's transformer at its public shapes with random
weights (`fixtures.FLUX_TRANSFORMER`, the XLabs adapter attached), bfloat16, 1024 px:
seconds for 28 inversion + 28 reconstruction steps per method and the peak VRAM.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recontext import Studio  # noqa: E402
from recontext.logs import quiet_libraries  # noqa: E402
from recontext.tiny import claims  # noqa: E402

METHODS = ("rf-inversion", "flow-euler")  # the claim first


def tiny_flux(args) -> dict:
    studio = Studio("tiny-flux")
    inputs = claims.inversion_inputs(args.scenes)
    studio.setup()
    rows = {}
    for method in METHODS:
        for tight in (False, True):
            runs = [studio.reconstruct(img, cap, method=method, tight=tight, image_scale=args.scale,
                                       steps=args.steps) for img, cap in inputs]
            rows[(method, tight)] = {k: float(np.mean([r.metrics[k] for r in runs]))
                                     for k in ("psnr", "inversion_psnr")}
            rows[(method, tight)]["seconds"] = float(np.mean([r.seconds for r in runs]))
            r = rows[(method, tight)]
            print(f"{method}{' + tight' if tight else ''}: psnr {r['psnr']:.2f} dB, inversion psnr "
                  f"{r['inversion_psnr']:.2f} dB, {r['seconds']:.2f} s per photo "
                  f"({len(inputs)} inputs, {args.steps or studio.preset.steps} steps, scale {args.scale:g})")
    # what the adapter tells the transformer, where flow-Euler starts (sigma ~1) and about
    # where RF-Inversion's controller hands over to the model (stop 0.25: sigma ~0.83)
    for sigma in (0.95, 0.8):
        print(f"x0 prediction error at sigma {sigma:g} (scale 1): "
              f"{claims.x0_error_text(claims.adapter_x0_error(studio, inputs, level=sigma))}")
    return rows


def flux_shapes(steps: int = 28, side: int = 1024):
    """FLUX.1-dev-shaped transformer, random bfloat16 weights, on the GPU."""
    import torch
    from diffusers import FluxTransformer2DModel

    from recontext import fixtures
    from recontext.inversion import FLOW_METHODS, flow_levels
    from recontext.tiny import flux as tiny_flux_arch

    if not torch.cuda.is_available():
        print("flux shapes: skipped (no CUDA device)")
        return
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = FluxTransformer2DModel(**fixtures.FLUX_TRANSFORMER).eval().requires_grad_(False)
    torch.set_default_dtype(torch.float32)
    ip = tiny_flux_arch.ip_adapter_xlabs(model, fixtures.CLIP_L_VISION["projection_dim"], torch.Generator().manual_seed(0))
    # the key conversion FluxPipeline.load_ip_adapter applies to an XLabs file
    state = {"image_proj": {k.split(".", 1)[1]: v for k, v in ip.items() if k.startswith("ip_adapter_proj_model.")},
             "ip_adapter": {}}
    for k, v in ip.items():
        if k.startswith("double_blocks."):
            i, rest = k.split(".")[1], k.split(".", 3)[3]
            state["ip_adapter"][f"{i}.{rest.replace('ip_adapter_double_stream_k_proj', 'to_k_ip').replace('ip_adapter_double_stream_v_proj', 'to_v_ip')}"] = v
    model._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
    model.to("cuda", torch.bfloat16)
    h = side // 16
    text = torch.randn(1, 512, 4096, device="cuda", dtype=torch.bfloat16)
    pooled = torch.randn(1, 768, device="cuda", dtype=torch.bfloat16)
    image = [torch.randn(1, 1, 768, device="cuda", dtype=torch.bfloat16)]
    img_ids = torch.zeros(h, h, 3)
    img_ids[..., 1] += torch.arange(h)[:, None]
    img_ids[..., 2] += torch.arange(h)[None, :]
    img_ids = img_ids.reshape(-1, 3).cuda()
    txt_ids = torch.zeros(512, 3, device="cuda")
    guidance = torch.full([1], 3.5, device="cuda")

    def velocity(x, t, cond):
        tokens = x.reshape(1, 16, h, 2, h, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, h * h, 64)
        out = model(hidden_states=tokens.bfloat16(), timestep=t.reshape(1).cuda().bfloat16(), guidance=guidance,
                    pooled_projections=pooled, encoder_hidden_states=text, txt_ids=txt_ids, img_ids=img_ids,
                    joint_attention_kwargs={"ip_adapter_image_embeds": image}, return_dict=False)[0]
        return out.reshape(1, h, h, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(x.shape).float()

    from diffusers import FlowMatchEulerDiscreteScheduler

    timesteps, sigmas = flow_levels(FlowMatchEulerDiscreteScheduler(**fixtures.FLUX_SCHEDULER), steps, h * h)
    sigmas = sigmas.cuda()
    x0 = torch.randn(1, 16, 2 * h, 2 * h, device="cuda")
    for name, module in FLOW_METHODS.items():
        for scale in (0.0, 0.4):
            for proc in list(model.attn_processors.values())[:model.config.num_layers]:
                proc.scale = [scale]
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            with torch.no_grad():
                state = module.invert(velocity, x0, timesteps, sigmas, None,
                                      generator=torch.Generator().manual_seed(0))
                module.reconstruct(velocity, state, timesteps, sigmas, None)
            torch.cuda.synchronize()
            print(f"flux shapes {name}{' + tight' if scale else ''}: {time.perf_counter() - start:.1f} s for "
                  f"{steps} + {steps} steps at {side} px, peak VRAM {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB "
                  f"({torch.cuda.get_device_name()})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--scale", type=float, default=0.4)
    ap.add_argument("--flux-shapes", action="store_true")
    args = ap.parse_args()
    quiet_libraries()
    if args.flux_shapes:
        flux_shapes()
    rows = tiny_flux(args)
    gain = rows[("rf-inversion", True)]["psnr"] - rows[("rf-inversion", False)]["psnr"]
    print(f"rf-inversion tight gain: {gain:+.2f} dB")


if __name__ == "__main__":
    main()
