"""The papers' evaluations in one command: `python -m recontext evaluate reconstruction|editing`.

- reconstruction: COCO captions (`--coco ANNOTATIONS.json --images DIR`), every image ×
  inversion method × setting (plain, or tight at each image scale) × prompt kind; PSNR,
  SSIM, L2, LPIPS (when installed) against the photo, and inversion PSNR against the VAE's
  round trip (Tight Inversion's reconstruction table).
- editing: MagicBrush's layout (`--magicbrush DIR`: edit_sessions.json,
  global_descriptions.json, images/<session>/<file>), every turn × editing method × setting;
  CLIP-T (output vs the target caption), CLIP-I and L1 (output vs the ground-truth output),
  preservation SSIM / LPIPS (output vs the input), and the fidelity–editability plot.

Rows run through the row runner `batch` uses (`batch.run_rows`): finished rows are kept in
`DIR/rows.csv` and skipped on a rerun, and under `accelerate launch` the rows are split
across processes. The main process then writes `results.parquet` (CSV without pyarrow),
`table.csv`, `table.md` (means with bootstrap 95% intervals) and `plot.png`.
`--coco tiny` / `--magicbrush tiny` write held-out scenes and photos of the tiny world
(never trained on) in those formats under `DIR/data`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
from PIL import Image

from . import editing, metrics
from .batch import Results, file_hash, process_state, run_rows
from .jobs import SHARED
from .tiny import world

SHORT_WORDS = 3
PROMPTS = ("full", "short", "none")
RECONSTRUCTION_METRICS = ("psnr", "ssim", "l2", "lpips", "inversion_psnr")
EDITING_METRICS = ("clip_t", "clip_i", "l1", "preservation_ssim", "preservation_lpips")
ID_COLUMNS = ["row", "key", "status", "image", "method", "edit_method", "setting", "tight", "scale",
              "prompt_kind", "prompt", "target", "steps", "seed", "seconds", "error"]


def short_prompt(caption: str) -> str:
    """The short-prompt rule: the caption up to its first comma, then its first 3 words,
    without a final full stop ("A man riding a wave on a surfboard." -> "A man riding")."""
    return " ".join(caption.split(",")[0].strip().rstrip(".").split()[:SHORT_WORDS])


def prompt_for(caption: str, kind: str) -> str:
    return {"full": caption, "short": short_prompt(caption), "none": ""}[kind]


def settings(tight: str, scales: list[float]) -> list[tuple[bool, float]]:
    """(tight, image scale) pairs: plain runs have scale 0."""
    out = [(False, 0.0)] if tight in ("both", "off") else []
    return out + ([(True, s) for s in scales] if tight in ("both", "on") else [])


def setting_name(tight: bool, scale: float) -> str:
    return f"tight {scale:g}" if tight else "plain"


# -- datasets --------------------------------------------------------------------------------
def read_coco(annotations: str, images: str, limit: int | None = None) -> list[dict]:
    """COCO captions: [{"image": path, "id", "caption"}], the first caption of each image, in
    the file's image order."""
    with open(annotations, encoding="utf-8") as f:
        coco = json.load(f)
    captions = {}
    for a in coco["annotations"]:
        captions.setdefault(a["image_id"], a["caption"].strip())
    out = [{"id": im["id"], "image": os.path.join(images, im["file_name"]),
            "caption": captions.get(im["id"], "")} for im in coco["images"]]
    return out[:limit] if limit else out


def read_magicbrush(folder: str, turns: str = "first", limit: int | None = None) -> list[dict]:
    """MagicBrush sessions: [{"session", "turn", "input", "output", "source", "target",
    "instruction"}]; the first turn of each session, or every turn (`turns="all"`, each on its
    ground-truth input). Images are looked up in images/<session>/ or images/."""
    with open(os.path.join(folder, "edit_sessions.json"), encoding="utf-8") as f:
        sessions = json.load(f)
    with open(os.path.join(folder, "global_descriptions.json"), encoding="utf-8") as f:
        captions = json.load(f)

    def path(session, name):
        nested = os.path.join(folder, "images", session, name)
        return nested if os.path.exists(nested) else os.path.join(folder, "images", name)

    out = []
    for session, steps in sessions.items():
        for turn, step in enumerate(steps if turns == "all" else steps[:1], start=1):
            out.append({"session": session, "turn": turn, "input": path(session, step["input"]),
                        "output": path(session, step["output"]), "instruction": step["instruction"],
                        "source": captions[session][step["input"]],
                        "target": captions[session][step["output"]]})
    return out[:limit] if limit else out


def _held_out_scene(i: int):
    from .tiny.world import HELD_OUT_SEED

    return world.describe(HELD_OUT_SEED + 50_000 + i)  # held out; apart from the claims' seeds


# captions written for the held-out photos (they have none of their own)
PHOTO_CAPTIONS = {"grace_hopper.jpg": "a portrait of a woman in a uniform, in front of a flag",
                  "motorcycle_left.png": "a red motorcycle, seen from the side",
                  "camera.png": "a man with a camera on a tripod, in a field",
                  "Minduka_Present_Blue_Pack.png": "a blue present pack, on a table"}


def write_tiny_coco(folder: str, scenes: int = 6) -> tuple[str, str]:
    """Held-out scenes (their grammar caption) alternating with the held-out photos, as COCO
    captions: (annotations path, images folder)."""
    images = os.path.join(folder, "images")
    os.makedirs(images, exist_ok=True)
    inputs = []
    for i in range(scenes):
        g = _held_out_scene(i)
        inputs.append((world.draw(**g)[0], world.caption(g["colour"], g["shape"], g["background"])))
    photos = [(world.center_square(world.load_photo(p)), PHOTO_CAPTIONS[os.path.basename(p)])
              for p in world.photo_paths(held_out=True)]
    inputs = [x for pair in zip(inputs, photos + [None] * scenes) for x in pair if x is not None]
    coco = {"images": [], "annotations": []}
    for n, (img, caption) in enumerate(inputs, start=1):
        name = f"tiny_{n:06d}.png"
        img.save(os.path.join(images, name))
        coco["images"].append({"id": n, "file_name": name, "width": img.width, "height": img.height})
        coco["annotations"].append({"id": n, "image_id": n, "caption": caption})
    path = os.path.join(folder, "captions_tiny.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(coco, f, indent=1)
    return path, images


def write_tiny_magicbrush(folder: str, sessions: int = 4) -> str:
    """Held-out scenes as MagicBrush sessions of two turns: the shape's colour changes,
    then the background's (the ground truth drawn with the same geometry)."""
    sessions_json, captions = {}, {}
    for i in range(sessions):
        g = _held_out_scene(1000 + i)
        others = [c for c in world.COLOURS if c not in (g["colour"], g["background"])]
        shape_to, back_to = others[i % len(others)], others[(i + 1) % len(others)]
        states = [g, {**g, "colour": shape_to}, {**g, "colour": shape_to, "background": back_to}]
        sid = str(900_000 + i)
        os.makedirs(os.path.join(folder, "images", sid), exist_ok=True)
        names = [f"{sid}-input.png", f"{sid}-output1.png", f"{sid}-output2.png"]
        captions[sid] = {}
        for name, s in zip(names, states):
            world.draw(**s)[0].save(os.path.join(folder, "images", sid, name))
            captions[sid][name] = world.caption(s["colour"], s["shape"], s["background"])
        sessions_json[sid] = [
            {"input": names[0], "mask": "", "output": names[1], "instruction": f"make the {g['shape']} {shape_to}"},
            {"input": names[1], "mask": "", "output": names[2], "instruction": f"make the background {back_to}"}]
    for name, obj in (("edit_sessions.json", sessions_json), ("global_descriptions.json", captions)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
    return folder


# -- rows ------------------------------------------------------------------------------------
def _key(job: dict, preset: str, files: tuple[str, ...]) -> str:
    """What determines a row's result: its settings, the preset, the input files' bytes."""
    spec = {k: v for k, v in job.items() if k not in ("row", "path", "ground_truth")}
    spec.update(preset=preset, files=[file_hash(job[f]) for f in files])
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def reconstruction_jobs(items, methods, pairs, prompts, steps, seed) -> list[dict]:
    return [{"path": it["image"], "image": os.path.basename(it["image"]), "method": m, "tight": t,
             "scale": s, "setting": setting_name(t, s), "prompt_kind": kind,
             "prompt": prompt_for(it["caption"], kind), "steps": steps, "seed": seed}
            for it in items for m in methods for t, s in pairs for kind in prompts]


def row_job(studio, row: dict):
    """The job (`recontext.jobs`) an evaluation row runs: a reconstruction, or an edit when it
    has a target. A plain row's image scale is unused (the shared default)."""
    scale = {"image_scale": row["scale"]} if row["tight"] else {}
    if "target" in row:
        return studio.edit_job(row["path"], row["prompt"], row["target"], method=row["method"], tight=row["tight"],
                               steps=row["steps"], seed=row["seed"], edit_method=row["edit_method"], **scale)
    return studio.reconstruct_job(row["path"], row["prompt"], method=row["method"], tight=row["tight"],
                                  steps=row["steps"], seed=row["seed"], **scale)


def save_job(todo, out: str | None, row: int) -> None:
    """A row's job as `out/jobs/row<N>.json` (its inputs named relative to it, with their
    sha256): `python -m recontext run` replays the row."""
    if out is None:
        return
    folder = os.path.join(out, "jobs")
    os.makedirs(folder, exist_ok=True)
    data = todo.to_dict()
    for name, ref in todo.inputs().items():
        data[name] = {"path": os.path.relpath(os.path.abspath(ref.path), folder), "sha256": ref.digest()}
    with open(os.path.join(folder, f"row{row:05d}.json"), "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)


def reconstruct_row(studio, job: dict, out: str | None = None) -> dict:
    todo = row_job(studio, job)
    r = studio.run(todo).results[0]
    save_job(todo, out, job.get("row", 0))
    return {**job, **{k: r.metrics.get(k) for k in RECONSTRUCTION_METRICS}, "seconds": r.seconds}


def editing_jobs(items, edit_methods, method, pairs, steps, seed) -> list[dict]:
    """One edit per turn × editing method × setting; each editing method runs on the inversion
    its spec pairs it with (LEDITS++ on edit-friendly DDPM, its paper's pairing), else `method`."""
    return [{"path": it["input"], "ground_truth": it["output"],
             "image": f"{it['session']}/{it['turn']}", "edit_method": e,
             "method": editing.inversion_for(e, method), "tight": t, "scale": s,
             "setting": setting_name(t, s), "prompt": it["source"], "target": it["target"],
             "steps": steps, "seed": seed}
            for it in items for e in edit_methods for t, s in pairs]


def edit_row(studio, job: dict, out: str | None = None) -> dict:
    todo = row_job(studio, job)
    e = studio.run(todo).results[0]
    save_job(todo, out, job.get("row", 0))
    truth = Image.open(job["ground_truth"]).convert("RGB").resize(e.output.size, Image.LANCZOS)
    return {**job, "clip_t": e.metrics["clip_target"],
            "clip_i": editing.clip_image_similarity(studio.models, e.output, truth),
            "l1": float(np.abs(metrics.as_float(e.output) - metrics.as_float(truth)).mean()),
            "preservation_ssim": e.metrics["preservation_ssim"],
            "preservation_lpips": e.metrics["preservation_lpips"], "seconds": e.seconds}


# -- tables ----------------------------------------------------------------------------------
def bootstrap(values, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its bootstrap 95% interval (percentiles)."""
    x = np.asarray(values, dtype=float)
    if not len(x):
        return math.nan, math.nan, math.nan
    means = np.random.default_rng(seed).choice(x, (resamples, len(x))).mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def table(df, groups: list[str], names) -> "pd.DataFrame":
    """Per group: n, and per metric that has values its mean, _lo and _hi."""
    import pandas as pd

    names = [m for m in names if m in df and df[m].notna().any()]
    rows = []
    for key, g in df.groupby(groups, sort=False):
        row = dict(zip(groups, key), n=len(g))
        for m in names:
            v = g[m].dropna().astype(float)
            v = v[np.isfinite(v)]  # an exact reconstruction (PSNR inf) has no finite mean
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = bootstrap(v)
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(t, groups: list[str], names) -> str:
    names = [m for m in names if m in t]
    head = [*groups, "n", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in t.iterrows():
        cells = [str(r[g]) for g in groups] + [str(r["n"])]
        cells += [f"{r[m]:.4g} [{r[m + '_lo']:.4g}, {r[m + '_hi']:.4g}]" for m in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_rows(results: Results, columns):
    import pandas as pd

    df = pd.DataFrame([r for r in results.read() if r["status"] == "ok"])
    for c in columns:
        if c in df:
            df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce")
    for c in ("row", "scale", "steps", "seed", "seconds"):
        if c in df:
            df[c] = pd.to_numeric(df[c])
    return df.sort_values("row", ignore_index=True) if len(df) else df  # the order processes finished in is lost


def write_results(df, out: str) -> str:
    """results.parquet where pyarrow imports, else results.csv beside it."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path = os.path.join(out, "results.csv")
        df.to_csv(path, index=False)
        return path
    path = os.path.join(out, "results.parquet")
    df.to_parquet(path, index=False)
    return path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(6.5, 4.2), dpi=100, layout="constrained")


def reconstruction_plot(t, metric: str = "psnr"):
    """Per method, each setting's mean `metric` with its 95% interval: tight beside plain."""
    fig = _figure()
    ax = fig.add_subplot()
    several = t["prompt_kind"].nunique() > 1  # then one group of bars per method and prompt kind
    rows = t.assign(label=t["method"] + (" / " + t["prompt_kind"] if several else ""))
    labels = list(dict.fromkeys(rows["label"]))
    names = list(dict.fromkeys(rows["setting"]))
    width = 0.8 / len(names)
    for i, s in enumerate(names):
        r = rows[rows["setting"] == s].set_index("label").reindex(labels)
        x = np.arange(len(labels)) + (i - (len(names) - 1) / 2) * width
        err = np.array([r[metric] - r[f"{metric}_lo"], r[f"{metric}_hi"] - r[metric]])
        ax.bar(x, r[metric], width, yerr=err, capsize=3, label=s)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=20)
    ax.set_ylabel(f"{metric} (mean, 95% interval)")
    ax.set_title("reconstruction: tight against plain")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def tradeoff_plot(t):
    """Preservation (SSIM to the input) against alignment (CLIP-T) across image scales, one
    curve per editing method; plain runs are the unfilled points."""
    fig = _figure()
    ax = fig.add_subplot()
    for e, g in t.groupby("edit_method", sort=False):
        g = g.sort_values("scale")
        ax.plot(g["preservation_ssim"], g["clip_t"], "o-", label=e)
        for _, r in g.iterrows():
            ax.annotate("plain" if not r["tight"] else f"{r['scale']:g}", (r["preservation_ssim"], r["clip_t"]),
                        textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xlabel("preservation: SSIM to the input →")
    ax.set_ylabel("alignment: CLIP-T to the target caption →")
    ax.set_title("fidelity–editability trade-off")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def finish(results: Results, out: str, groups: list[str], names, plot) -> dict:
    """Merge every process's rows into results.*, table.csv, table.md and plot.png; the
    table has a line per `groups` (and tight, scale, which the setting names)."""
    df = load_rows(results, names)
    report = {"rows": len(df), "results": write_results(df, out)}
    if not len(df):
        return report
    df["tight"] = df["tight"].astype(str) == "True"
    t = table(df, groups + ["tight", "scale"], names)
    t.to_csv(os.path.join(out, "table.csv"), index=False)
    md = markdown(t, groups, names)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(md)
    plot(t).savefig(os.path.join(out, "plot.png"))
    return {**report, "table": md}


# -- the commands ----------------------------------------------------------------------------
def evaluate_reconstruction(studio, coco: str, images: str | None, out: str, limit=None, methods=None,
                            tight="both", scales=(SHARED['image_scale'].default,), prompts=("full",), steps=None, seed=0,
                            progress=True) -> dict:
    os.makedirs(out, exist_ok=True)
    if coco == "tiny":
        if process_state().is_main_process:
            write_tiny_coco(os.path.join(out, "data"))
        process_state().wait_for_everyone()
        coco, images = os.path.join(out, "data", "captions_tiny.json"), os.path.join(out, "data", "images")
    if not images:
        raise ValueError("--images DIR is needed with a COCO annotations file")
    for m in methods or []:
        studio.method(m)
    items = read_coco(coco, images, limit)
    jobs = reconstruction_jobs(items, methods or studio.methods, settings(tight, scales), prompts,
                               steps or studio.preset.steps, seed)
    return _run(studio, jobs, out, ("path",), reconstruct_row, "reconstruction",
                ["method", "setting", "prompt_kind"], RECONSTRUCTION_METRICS, reconstruction_plot, progress)


def evaluate_editing(studio, magicbrush: str, out: str, limit=None, edit_methods=None, method=None,
                     tight="both", scales=(SHARED['image_scale'].default,), turns="first", steps=None, seed=0, progress=True) -> dict:
    os.makedirs(out, exist_ok=True)
    if magicbrush == "tiny":
        if process_state().is_main_process:
            write_tiny_magicbrush(os.path.join(out, "data"))
        process_state().wait_for_everyone()
        magicbrush = os.path.join(out, "data")
    for e in edit_methods or []:
        editing.get(e, studio.preset)
    items = read_magicbrush(magicbrush, turns, limit)
    jobs = editing_jobs(items, edit_methods or studio.edit_methods, method or studio.methods[0],
                        settings(tight, scales), steps or studio.preset.steps, seed)
    return _run(studio, jobs, out, ("path", "ground_truth"), edit_row, "editing",
                ["edit_method", "method", "setting"], EDITING_METRICS, tradeoff_plot, progress)


def _run(studio, jobs, out, files, work, desc, groups, names, plot, progress) -> dict:
    for n, job in enumerate(jobs, start=1):
        job["row"] = n
    results = Results(out, ID_COLUMNS + list(names), "rows.csv")
    preset = studio.preset.name
    report = run_rows(jobs, lambda job: _key(job, preset, files), lambda job: work(studio, job, out),
                      results, desc, progress)
    if report.pop("main"):
        report.update(finish(results, out, groups, names, plot))
    return report
