"""The studio's jobs from the command line: `python -m recontext COMMAND ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import cli_ratings as ratings_commands


def dump_json(obj) -> str:
    from .runs import plain  # JSON has no NaN (null) or infinity ("inf", an exact PSNR)

    return json.dumps(plain(obj), indent=2, allow_nan=False)


def _add_preset(p):
    p.add_argument("--preset", default=None,
                   help="tiny, tiny-flux, sd15, sdxl, sdxl-turbo, flux or auto (default: $RECONTEXT_PRESET or auto)")


def _add_device(p):
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to train (default auto: cuda where available). On CUDA: larger batches, "
                   "bfloat16 autocast, TF32; the weights written load on a CPU as the CPU's do")


def _studio(args):
    from .logs import quiet_libraries
    from .studio import Studio

    quiet_libraries()  # here, not in main(): `ratings summarize` must not import the model libraries
    return Studio(args.preset)


def _specs(family: str):
    """Every method spec of a family ("inversion", "editing", "garment"). Imports every
    method, and with them the model libraries: only for the command that runs them."""
    from importlib import import_module

    return import_module(f"recontext.{family}").REGISTRY.specs()


def _method_flag(p, family: str, flag: str = "--method", default_note: str = "the preset's first") -> None:
    """`--method` listing the family's methods (read from their specs)."""
    p.add_argument(flag, default=None, help=f"one of: {', '.join(s.name for s in _specs(family))} "
                                            f"(default: {default_note})")


def _option_flags(p, *families: str, extra=()) -> None:
    """One flag per method option of the families (from the specs), default None: the
    method's own default. The same option name in several methods shares one flag."""
    seen = {}
    for family in families:
        for spec in _specs(family):
            for o in spec.options:
                if o.kind != "fixed":
                    seen.setdefault(o.name, (o, []))[1].append(spec.name)
    for o in extra:
        seen.setdefault(o.name, (o, ["every edit"]))
    for name, (o, owners) in seen.items():
        kind = {"int": int, "float": float}.get(o.kind, str)
        default = "" if o.kind == "text" else f" (default {o.default})"
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, dest=name,
                       help=f"{', '.join(owners)}: {o.help}{default}")
    p.set_defaults(option_names=list(seen))


def _options(args) -> dict:
    """The method options given on the command line."""
    return {k: getattr(args, k) for k in args.option_names if getattr(args, k) is not None}


def _shared_flags(p, *names: str) -> None:
    """`--steps`, `--seed`, `--scale`, `--guidance`...: each shared setting's flag, its help and
    default read from `jobs.SHARED` (declared once; None: the preset's or the methods' own)."""
    from .jobs import SHARED

    flags = {"image_scale": "--scale"}
    for name in names:
        o = SHARED[name]
        kind = int if o.kind == "int" else float
        p.add_argument(flags.get(name, "--" + name.replace("_", "-")), type=kind, default=o.default, dest=name,
                       help=f"{o.help} ({o.lo:g}-{o.hi:g}" + ("" if o.default is None else f"; default {o.default:g}")
                       + ")")


def _invert_flags(p) -> None:
    _method_flag(p, "inversion")
    _option_flags(p, "inversion")


def _edit_flags(p) -> None:
    from .inversion import EDIT_OPTIONS

    _method_flag(p, "inversion")
    _method_flag(p, "editing", "--edit-method", "the preset's first, the baseline")
    _option_flags(p, "inversion", "editing", extra=EDIT_OPTIONS)


def _dress_flags(p) -> None:
    _method_flag(p, "garment")
    _option_flags(p, "garment")


def cmd_invert(args) -> int:
    studio = _studio(args)
    job = studio.reconstruct_job(args.photo, prompt=args.prompt, method=args.method, tight=args.tight,
                                 image_scale=args.image_scale, steps=args.steps, seed=args.seed, **_options(args))
    r = studio.run(job).results[0]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    r.image.save(args.out, format="PNG")
    print(dump_json({"photo": args.photo, "out": args.out, "preset": studio.preset.name,
                     "method": r.method, "tight": r.tight, "image_scale": r.image_scale,
                     "steps": args.steps or studio.preset.steps, "seed": args.seed,
                     "seconds": r.seconds, "metrics": r.metrics, "notes": r.notes, "job": job.to_dict()}))
    return 0


def cmd_edit(args) -> int:
    from . import jobs
    from .editing import sweep_plot
    from .runs import write_job

    if args.compare and args.sweep:
        raise ValueError("--compare and --sweep are two different runs: give one of them")
    studio = _studio(args)
    os.makedirs(args.out, exist_ok=True)
    method = args.method or studio.methods[0]
    edit_method = args.edit_method or studio.edit_methods[0]
    common = dict(method=method, guidance=args.guidance, steps=args.steps, seed=args.seed)
    settings = _options(args)
    kind = "compare" if args.compare else "sweep" if args.sweep else "one"
    scales = _floats(args.sweep, "--sweep") if args.sweep else ()
    job = studio.edit_job(args.photo, args.source, args.target, kind, tight=args.tight or kind == "sweep",
                          image_scale=args.image_scale, scales=scales,
                          edit_method=None if args.compare else edit_method,
                          variants=jobs.VARIANTS if args.compare else None, **common, **settings)
    edits = studio.run(job).results
    if args.sweep:
        sweep_plot(edits, args.target).savefig(os.path.join(args.out, "sweep.png"))
    write_job(job, args.out, studio.preset.name)  # python -m recontext run OUT/job.json replays it
    report = {"photo": args.photo, "source": args.source, "target": args.target,
              "preset": studio.preset.name, **common, "steps": args.steps or studio.preset.steps,
              "edit_method": None if args.compare else edit_method, "settings": settings, "edits": []}
    edits[0].reconstruction.save(os.path.join(args.out, "reconstruction.png"))
    for e in edits:
        name = (f"edit_{e.edit_method}_{e.method}{'_tight' if e.tight else ''}.png" if args.compare
                else f"edit_scale{e.scale:g}.png")
        e.image.save(os.path.join(args.out, name))
        report["edits"].append({"image": name, "scale": e.scale, "tight": e.tight,
                                "edit_method": e.edit_method, "method": e.method, "settings": e.settings,
                                "metrics": e.metrics, "seconds": e.seconds, "notes": e.notes})
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        f.write(dump_json(report))
    print(dump_json(report))
    return 0


def cmd_dress(args) -> int:
    studio = _studio(args)
    job = studio.dress_job(args.garment, args.prompt, method=args.method, steps=args.steps, seed=args.seed,
                           guidance=args.guidance, **_options(args))
    g = studio.run(job).results[0]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    g.image.save(args.out, format="PNG")
    print(dump_json({"garment": args.garment, "prompt": args.prompt, "out": args.out,
                     "preset": studio.preset.name, "method": g.method, "settings": g.settings,
                     "steps": args.steps or studio.preset.steps, "seed": args.seed,
                     "adapt_seconds": g.adapt_seconds, "generate_seconds": g.generate_seconds,
                     "notes": g.notes, "job": job.to_dict()}))
    return 0


def cmd_train_hyperlora(args) -> int:
    from accelerate import Accelerator

    from . import presets
    from .garment.train import read_manifest, synthetic_pairs, train_hyperlora
    from .logs import quiet_libraries
    from .models import ModelOwner

    quiet_libraries()
    if bool(args.data) == bool(args.synthetic):
        raise ValueError("give --data MANIFEST.csv or --synthetic N (one of them)")
    preset = presets.get(args.preset)
    acc = Accelerator(cpu=not __import__("torch").cuda.is_available())
    models = ModelOwner(preset, device=acc.device)
    pairs = (read_manifest(args.data) if args.data
             else synthetic_pairs(args.synthetic, preset.resolution))
    losses = train_hyperlora(models, pairs, args.out, steps=args.steps, lr=args.lr, seed=args.seed,
                             save_every=args.save_every, rank=args.rank, accelerator=acc,
                             mask_weight=args.mask_weight,
                             note=f"data: {args.data or f'{args.synthetic} synthetic pairs'}")
    if acc.is_main_process:
        k = max(1, min(50, len(losses) // 5))
        report = {"out": args.out, "preset": preset.name, "steps": len(losses),
                  "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k}
        if args.push_to_hub:
            from .garment.hyperlora import push_to_hub, write_card

            write_card(args.out, preset, losses, data=args.data or f"{args.synthetic} synthetic pairs",
                       pairs=len(pairs), lr=args.lr, seed=args.seed, repo=args.push_to_hub)
            report["pushed"] = push_to_hub(args.out, args.push_to_hub, private=args.private)
        print(dump_json(report))
    return 0


def cmd_prepare_data(args) -> int:
    from .prepare import prepare

    print(dump_json(prepare(args.dataset, args.dir, args.out, captions=args.captions, limit=args.limit)))
    return 0


def _per_stage(text: str, flag: str) -> dict[str, int]:
    """"unet=500,clip=100" -> {"unet": 500, "clip": 100}."""
    try:
        return {k.strip(): int(v) for k, v in (kv.split("=") for kv in text.split(",") if kv.strip())}
    except ValueError:
        raise ValueError(f"{flag} takes stage=N pairs separated by commas, e.g. unet=500,clip=100; "
                         f"got {text!r}") from None


def cmd_train_tiny(args) -> int:
    import logging

    from .tiny import train

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("recontext.tiny").setLevel(logging.INFO)  # progress: step, loss, seconds

    steps, batch = _per_stage(args.steps, "--steps"), _per_stage(args.batch, "--batch")
    stages = args.stages.split(",") if args.stages else train.DEFAULT_STAGES
    results = train.main(args.out, args.work, seed=args.seed, stages=stages, steps=steps, batch=batch,
                         command=" ".join(["python -m recontext", *sys.argv[1:]]), device=args.device)
    print(dump_json(results))
    return 0


def cmd_train_tiny_flux(args) -> int:
    import logging

    from .tiny import flux_train

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("recontext.tiny").setLevel(logging.INFO)
    result = flux_train.run(args.out, args.work, seed=args.seed, steps=args.steps, batch=args.batch,
                            command=" ".join(["python -m recontext", *sys.argv[1:]]), export=args.export,
                            device=args.device, bank=args.bank)
    print(dump_json(result))
    return 0


def cmd_batch(args) -> int:
    from .batch import run_batch
    from .data import open_data

    studio = _studio(args)
    report = run_batch(studio, args.manifest, args.out, runs=open_data().runs)
    print(f"{report['done']} done, {report['skipped']} already done, {report['failed']} failed; "
          f"results in {report['results']}")
    if report["failures"]:
        print("failed rows:", file=sys.stderr)
        for row, reason in report["failures"]:
            print(f"  row {row}: {reason}", file=sys.stderr)
        return 1
    return 0


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes numbers separated by commas, e.g. 0.2,0.4; got {text!r}") from None


def _names(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def _report_evaluation(report) -> int:
    if "table" in report:
        print(report["table"], end="")
        print(f"{report['rows']} rows in {report['results']}")
    print(f"{report['done']} done, {report['skipped']} already done, {report['failed']} failed")
    for row, reason in report["failures"]:
        print(f"  row {row}: {reason}", file=sys.stderr)
    return 1 if report["failures"] else 0


def cmd_evaluate_reconstruction(args) -> int:
    from .evaluate import PROMPTS, evaluate_reconstruction

    prompts = _names(args.prompt)
    if not prompts or set(prompts) - set(PROMPTS):
        raise ValueError(f"--prompt takes {', '.join(PROMPTS)} (or several, comma-separated); got {args.prompt!r}")
    report = evaluate_reconstruction(_studio(args), args.coco, args.images, args.out, limit=args.limit,
                                     methods=_names(args.methods), tight=args.tight,
                                     scales=_floats(args.scales, "--scales"), prompts=prompts,
                                     steps=args.steps, seed=args.seed)
    return _report_evaluation(report)


def cmd_evaluate_editing(args) -> int:
    from .evaluate import evaluate_editing

    report = evaluate_editing(_studio(args), args.magicbrush, args.out, limit=args.limit,
                              edit_methods=_names(args.edit_methods), method=args.method,
                              tight=args.tight, scales=_floats(args.scales, "--scales"),
                              turns=args.turns, steps=args.steps, seed=args.seed)
    return _report_evaluation(report)


def _add_evaluation(p, out: str):
    p.add_argument("--limit", type=int, default=None, help="the first N images (sessions' turns)")
    p.add_argument("--tight", default="both", choices=("both", "on", "off"),
                   help="tight (the photo through IP-Adapter), plain, or both side by side")
    from .jobs import SHARED

    p.add_argument("--scales", default=f"{SHARED['image_scale'].default:g}",
                   help="image scales of the tight runs, comma-separated")
    p.add_argument("--steps", type=int, default=None, help="default: the preset's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, help="folder for rows.csv, results.parquet, table.csv, "
                   "table.md and plot.png (a rerun resumes there)")
    _add_preset(p)


def cmd_fixtures_shapes(args) -> int:
    from .fixtures import build_shapes

    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    root = build_shapes(args.dir, presets, prune=args.prune or None)  # else RECONTEXT_SHAPES_PRUNE
    print(f"model mirror for {', '.join(presets)} in {root}; use it with RECONTEXT_MODELS_DIR={root}")
    return 0


def cmd_run(args) -> int:
    """Replay a job file (a saved run's job.json, or one written by hand): the outputs as
    output-<i>.png in --out (as the run saved them), the job and what ran printed as JSON."""
    from . import jobs
    from .runs import output_images, write_job

    job = jobs.load(args.job)
    if args.preset is None:
        args.preset = jobs.preset_in(args.job)
    studio = _studio(args)
    ran = studio.run(job)
    os.makedirs(args.out, exist_ok=True)
    names = []
    for i, image in enumerate(output_images(ran.results)):
        names.append(f"output-{i}.png")
        image.save(os.path.join(args.out, names[-1]), format="PNG")
    write_job(job, args.out, studio.preset.name)
    print(dump_json({"job": args.job, "preset": studio.preset.name, "out": args.out, "outputs": names,
                     "notes": ran.notes}))
    return 0


def cmd_zerogpu(args) -> int:
    from . import presets, zerogpu

    preset = presets.get(args.preset)
    rows = zerogpu.page_requests(preset)
    if args.json:
        print(dump_json(rows))
        return 0
    c = zerogpu.CALIBRATION.get(preset.name)
    print(f"{preset.name}: calibrated on {c.device}, {c.date} ({c.source}); ZeroGPU asks {zerogpu.MARGIN}x the "
          f"estimate, at most {zerogpu.LIMIT_S} s")
    for r in rows:
        calls = f" (each of {r['calls']} calls)" if r["calls"] > 1 else ""
        print(f"  {r['handler']:22s} estimated {r['estimated_s']:7.1f} s  requested {r['requested_s']:4d} s{calls}"
              + ("" if r["fits"] else "  (too long for one ZeroGPU call: refused on the page)"))
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. With `argv`, only the command it names gets the flags read from the
    method specs (reading them imports torch and diffusers, which `ratings` and the other
    commands do without); without, every command gets them."""
    parser = argparse.ArgumentParser(prog="recontext", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from_specs = {}  # command -> (its parser, what adds its flags from the specs)

    ratings_commands.add(sub)

    p = sub.add_parser("fixtures", help="test fixtures: a model mirror at the real presets' shapes")
    fsub = p.add_subparsers(dest="fixtures_command", required=True)
    p = fsub.add_parser("shapes", help="write DIR/<org>/<name> for every Hub repo the presets name: "
                        "the exact public configurations, random float16 weights")
    p.add_argument("dir")
    p.add_argument("--presets", default="sdxl", help="comma-separated: sdxl, sdxl-turbo, sd15 (default: sdxl)")
    p.add_argument("--prune", action="store_true", help="first remove the repos this command wrote for other "
                   "presets, so a small disk holds one preset's mirror at a time")
    p.set_defaults(func=cmd_fixtures_shapes)

    p = sub.add_parser("zerogpu", help="the ZeroGPU duration each GPU handler asks for at the page's "
                       "defaults (and the garment handler with every method), from the preset's calibration")
    _add_preset(p)
    p.add_argument("--json", action="store_true", help='print [{"handler", "requested_s", "estimated_s", "fits"}]')
    p.set_defaults(func=cmd_zerogpu)

    p = sub.add_parser("run", help="run a job file (a saved run's job.json): reproduce the run")
    p.add_argument("job", help="the job's JSON file (its inputs are read relative to it)")
    p.add_argument("--out", default="out/reproduced", help="folder for output-<i>.png and job.json (default: out/reproduced, ignored by git)")
    p.add_argument("--preset", default=None, help="default: the job file's own, else $RECONTEXT_PRESET or auto")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("invert", help="invert a photo and reconstruct it; print metrics as JSON")
    p.add_argument("photo")
    p.add_argument("--prompt", default="", help="caption of the photo (optional)")
    p.add_argument("--tight", action="store_true", help="condition on the photo (Tight Inversion)")
    _shared_flags(p, "image_scale", "steps", "seed")
    p.add_argument("--out", default="reconstruction.png")
    _add_preset(p)
    p.set_defaults(func=cmd_invert)
    from_specs["invert"] = (p, _invert_flags)

    p = sub.add_parser("edit", help="edit a photo by inversion: source prompt -> target prompt")
    p.add_argument("photo")
    p.add_argument("--source", default="", help="what the photo shows")
    p.add_argument("--target", required=True, help="what the edit should show")
    p.add_argument("--tight", action="store_true", help="condition on the photo (Tight Inversion)")
    _shared_flags(p, "image_scale", "guidance", "steps", "seed")
    p.add_argument("--sweep", default=None,
                   help="comma-separated image scales, e.g. 0,0.2,0.4,0.6,0.8,1.0 (tight edits)")
    p.add_argument("--compare", action="store_true",
                   help="run every editing method, tight and plain (ignores --edit-method, --tight)")
    p.add_argument("--out", default="edits", help="folder for the PNGs, metrics.json and job.json")
    _add_preset(p)
    p.set_defaults(func=cmd_edit)
    from_specs["edit"] = (p, _edit_flags)

    p = sub.add_parser("dress", help="put a garment onto a generated person or scene")
    p.add_argument("garment", help="garment photo")
    p.add_argument("--prompt", required=True, help="the scene, e.g. 'a woman walking in a park'")
    _shared_flags(p, "guidance", "steps", "seed")
    p.add_argument("--out", default="dressed.png")
    _add_preset(p)
    p.set_defaults(func=cmd_dress)
    from_specs["dress"] = (p, _dress_flags)

    p = sub.add_parser("train-tiny", help="train the tiny world (VAE, CLIP, UNet, IP-Adapter, "
                       "HyperLoRA) from a seed; stages resume, finished ones are skipped")
    p.add_argument("--out", default=os.path.join("recontext", "tiny", "weights"),
                   help="where the weights and MODEL_CARD.md go")
    p.add_argument("--work", default=os.path.join(".cache", "tiny-train"),
                   help="checkpoints and the latent bank (resumable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", default="", help="comma-separated (default: every stage, in order)")
    p.add_argument("--steps", default="", help="override steps per stage: unet=500,clip=100")
    p.add_argument("--batch", default="", help="override images per step: vae=512,unet=128,widen=64 "
                   "(default: each stage's for the device; clip and hyperlora have fixed batches)")
    _add_device(p)
    p.set_defaults(func=cmd_train_tiny)

    p = sub.add_parser("train-tiny-flux", help="train the tiny-flux preset (FLUX transformer, tiny T5, "
                       "XLabs-layout IP-Adapter) on the tiny world's data; resumes from --work")
    p.add_argument("--out", default=os.path.join("recontext", "tiny", "flux_weights"),
                   help="where the weights and MODEL_CARD.md go")
    p.add_argument("--work", default=os.path.join(".cache", "tiny-train"),
                   help="the checkpoint (flux.pt) and the tiny world's latent bank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=None, help="images per step (default: 8 on the CPU, 128 on CUDA)")
    p.add_argument("--bank", type=int, default=None, help="the latent bank's size (default 8000; kept in --work)")
    p.add_argument("--export", action="store_true",
                   help="write the checkpoint's weights now, without training further")
    _add_device(p)
    p.set_defaults(func=cmd_train_tiny_flux)

    p = sub.add_parser("batch", help="run a manifest of invert / edit / dress rows (resumable; "
                       "split across processes under accelerate launch)")
    p.add_argument("manifest", help="CSV: task,input,prompt,target,method,tight,scale,steps,seed,guidance")
    p.add_argument("--out", required=True, help="folder for the PNGs and results.csv")
    _add_preset(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("evaluate", help="the papers' tables: reconstruction on COCO captions, editing "
                       "on MagicBrush (resumable; split across processes under accelerate launch)")
    esub = p.add_subparsers(dest="evaluate_command", required=True)
    p = esub.add_parser("reconstruction", help="image × inversion method × setting: PSNR, SSIM, L2, "
                        "LPIPS, inversion PSNR, with bootstrap 95%% intervals")
    p.add_argument("--coco", required=True, help="COCO captions annotations JSON, or tiny (held-out "
                   "scenes and photos of the tiny world, written under OUT/data)")
    p.add_argument("--images", default=None, help="the folder of the annotations' file_name images")
    p.add_argument("--methods", default=None, help="inversion methods, comma-separated (default: every "
                   "one that fits the preset)")
    p.add_argument("--prompt", default="full", help="full (the caption), short (its first clause, "
                   "first 3 words), none; or several, comma-separated")
    _add_evaluation(p, "eval-reconstruction")
    p.set_defaults(func=cmd_evaluate_reconstruction)
    p = esub.add_parser("editing", help="turn × editing method × setting: CLIP-T, CLIP-I, L1, "
                        "preservation SSIM / LPIPS, and the trade-off plot")
    p.add_argument("--magicbrush", required=True, help="a MagicBrush folder (edit_sessions.json, "
                   "global_descriptions.json, images/), or tiny (held-out scenes, under OUT/data)")
    p.add_argument("--edit-methods", default=None, help="comma-separated (default: every one that fits)")
    p.add_argument("--method", default=None, help="the inversion under regenerate and prompt-to-prompt "
                   "(default: the preset's first); LEDITS++ always runs on edit-friendly")
    p.add_argument("--turns", default="first", choices=("first", "all"),
                   help="a session's first turn, or every turn on its ground-truth input")
    _add_evaluation(p, "eval-editing")
    p.set_defaults(func=cmd_evaluate_editing)

    p = sub.add_parser("train-hyperlora", help="train the HyperLoRA hypernetwork (accelerate launch "
                       "for several GPUs); resumes from --out")
    p.add_argument("--data", default=None, help="CSV with columns garment,image,prompt "
                   "(and optionally mask: the garment's region in the image)")
    p.add_argument("--synthetic", type=int, default=0, help="train on N procedural pairs instead")
    p.add_argument("--steps", type=int, default=500, help="total steps (a resumed run continues)")
    p.add_argument("--out", required=True, help="checkpoint folder")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--mask-weight", type=float, default=None,
                   help="extra loss weight on the garment's region, where a pair has a mask (default 9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="after training, write a model card (README.md) beside the weights and upload "
                   "the checkpoint to this Hub model repo (needs HF_TOKEN); load it with "
                   "RECONTEXT_HYPERLORA=REPO")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    _add_preset(p)
    p.set_defaults(func=cmd_train_hyperlora)

    p = sub.add_parser("prepare-data", help="turn VITON-HD or DressCode, in their own folder layouts, "
                       "into a train-hyperlora manifest (garment masks from their parsing maps)")
    p.add_argument("dataset", choices=("viton-hd", "dresscode"))
    p.add_argument("dir", help="the dataset folder (VITON-HD: holds train_pairs.txt; DressCode: holds "
                   "upper_body/, lower_body/, dresses/)")
    p.add_argument("--out", required=True, help="the manifest CSV to write; masks go to <name>_masks/ beside it")
    p.add_argument("--captions", default=None, help="CSV with columns image,caption (or a JSON object "
                   "image -> caption): prompts per person image instead of the category's")
    p.add_argument("--limit", type=int, default=None, help="the first N pairs (of each DressCode category)")
    p.set_defaults(func=cmd_prepare_data)
    for command, (p, add) in from_specs.items():
        if argv is None or argv[:1] == [command]:
            add(p)
    return parser


def main(argv=None) -> int:
    import logging

    from .errors import StorageError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, StorageError) as e:  # bad input or a failing folder: one clear line
        print(f"error: {e}", file=sys.stderr)
        return 2


def run() -> None:
    """The `recontext` command (installed by `pip install -e .`), the same as `python -m recontext`."""
    sys.exit(main())
