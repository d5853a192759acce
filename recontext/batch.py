"""Batch work from a manifest: `python -m recontext batch MANIFEST.csv --out DIR`.

One row per job. Columns (an `input` path is relative to the manifest's folder, not to
where the command runs; empty cells take the tab defaults): `task` (invert, edit or dress), `input` (photo or garment), `prompt` (caption,
source prompt or scene), `target` (edit only), `method`, `tight`, `scale`, `steps`, `seed`,
`guidance`, and optionally `edit_method` (edit only: regenerate, prompt-to-prompt or
ledits++). Each finished row is saved as a run and recorded in `DIR/results.csv`; rows
already done with the same parameters and the same input file are skipped, so a crashed
batch resumes. A bad row is recorded as failed with its reason (naming the file it tried)
and the batch goes on; a later run of that row replaces its failed line.
Under `accelerate launch` the rows are split across processes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
import traceback

from .locks import lock_for

from .runs import (MAX_OUTPUTS, Output, RunStore, method_name, save_dressed, save_edits,
                   save_reconstructions)

TASKS = ("invert", "edit", "dress")
COLUMNS = ("task", "input", "prompt", "target", "method", "tight", "scale", "steps", "seed", "guidance")


def _option_columns() -> tuple[str, ...]:
    """Every method option of the three families (from their specs), a column each."""
    from . import editing, garment, inversion

    names = [o.name for o in inversion.EDIT_OPTIONS]
    for family in (inversion, editing, garment):
        for m in family.names():
            names += [o.name for o in family.spec(m).options if o.kind != "fixed" and o.name != "scale"]
    return tuple(dict.fromkeys(names))


# part of a row's key only when given (older results stay valid); "scale" is a column of its
# own (the IP-Adapter scale of inversions and edits, a garment method's scale)
OPTIONAL = ("edit_method", *_option_columns())
RESULTS = ["row", "key", "status", "task", "input", "method", "prompt", "target", "output",
           "run_id", "seconds", "metrics", "error"]


def read_manifest(path: str) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ValueError(f"manifest {path!r} not found") from None
    if not rows:
        raise ValueError(f"manifest {path!r} has no rows")
    missing = {"task", "input"} - set(rows[0])
    if missing:
        raise ValueError(f"manifest {path!r}: missing column(s) {', '.join(sorted(missing))}")
    root = os.path.dirname(os.path.abspath(path))
    out = []
    for n, row in enumerate(rows, start=1):
        job = {c: (row.get(c) or "").strip() for c in COLUMNS + OPTIONAL}
        job["row"] = n
        job["path"] = os.path.join(root, job["input"]) if job["input"] else ""
        out.append(job)
    return out


def file_hash(path: str) -> str:
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return "missing"
    return h.hexdigest()


def row_key(job: dict, preset: str) -> str:
    """What determines a row's result: its parameters, the input file's bytes, the preset."""
    spec = {c: job[c] for c in COLUMNS if c != "input"}
    spec.update({c: job[c] for c in OPTIONAL if job.get(c)})
    spec.update(preset=preset, input=file_hash(job["path"]))
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _num(job, name, cast, default):
    value = job[name]
    if value == "":
        return default
    try:
        return cast(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def run_row(studio, job: dict, out: str, runs: RunStore) -> dict:
    """One row: run it, save its PNG and its run; returns the results line (status ok)."""
    task = job["task"]
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not job["input"]:
        raise ValueError("input is empty")
    if not os.path.exists(job["path"]):
        raise ValueError(f"input file not found: {job['path']} (paths are relative to the "
                         "manifest's folder)")
    method = job["method"] or (studio.garment_methods[0] if task == "dress" else studio.methods[0])
    if job.get("edit_method") and task != "edit":
        raise ValueError(f"edit_method applies to edit rows only, not {task!r}")
    tight = job["tight"].lower() in ("1", "true", "yes") if job["tight"] else task == "edit"
    steps = _num(job, "steps", int, None)
    seed = _num(job, "seed", int, 0)
    preset = studio.preset.name
    scale = _num(job, "scale", float, None)
    guidance = _num(job, "guidance", float, None)  # None: the preset's
    options = {c: job[c] for c in OPTIONAL[1:] if job.get(c)}
    if task == "invert":  # each row is parsed into a job (recontext.jobs), run and saved with it
        todo = studio.reconstruct_job(job["path"], job["prompt"], method=method, tight=tight, steps=steps,
                                      seed=seed, **({} if scale is None else {"image_scale": scale}), **options)
        r = studio.run(todo).results[0]
        image, metrics, seconds, name = r.image, r.metrics, r.seconds, method_name(method, tight)
        run_id = save_reconstructions(runs, preset, [r], job["prompt"], steps, seed, todo.image_scale, todo)
    elif task == "edit":
        todo = studio.edit_job(job["path"], job["prompt"], job["target"], method=method, tight=tight,
                               guidance=guidance, steps=steps, seed=seed, edit_method=job.get("edit_method") or None,
                               **({} if scale is None else {"image_scale": scale}), **options)
        e = studio.run(todo).results[0]
        image, metrics, seconds = e.image, e.metrics, e.seconds
        name = method_name(method, tight, edit_method=e.edit_method)
        run_id = save_edits(runs, preset, [e], job["prompt"], job["target"], method, tight,
                            guidance, steps, seed, sweep=False, settings=e.settings, job=todo)
    else:
        if scale is not None:
            options["scale"] = scale
        todo = studio.dress_job(job["path"], job["prompt"], method=method, steps=steps, seed=seed,
                                guidance=guidance, **options)
        g = studio.run(todo).results[0]
        image, seconds, name = g.image, g.adapt_seconds + g.generate_seconds, method
        metrics = {"adapt_seconds": g.adapt_seconds, "generate_seconds": g.generate_seconds,
                   "setup_seconds": g.setup_seconds}
        run_id = save_dressed(runs, preset, {method: g}, job["prompt"],
                              {**g.settings, "steps": steps, "guidance": guidance}, seed, todo)
    png = os.path.join(out, f"row{job['row']:04d}-{task}-{name.replace('+', '_').replace(':', '-')}.png")
    image.save(png, format="PNG")
    return {"task": task, "input": job["input"], "method": name, "prompt": job["prompt"],
            "target": job["target"], "output": os.path.basename(png), "run_id": run_id,
            "seconds": round(seconds, 4), "metrics": json.dumps(metrics, default=str)}


class Results:
    """`DIR/NAME` (results.csv): one line per finished or failed row, written under a file
    lock with the given `columns`. A row's new line replaces its earlier failed one."""

    def __init__(self, out: str, columns=RESULTS, name: str = "results.csv"):
        self.path = os.path.join(out, name)
        self.columns = list(columns)
        self.lock = lock_for(self.path)

    def read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with self.lock, open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def done_keys(self) -> set[str]:
        return {r["key"] for r in self.read() if r.get("status") == "ok"}

    def append(self, line: dict) -> None:
        with self.lock:
            lines = []
            if os.path.exists(self.path):
                with open(self.path, newline="", encoding="utf-8") as f:
                    lines = [r for r in csv.DictReader(f)
                             if not (r["status"] == "failed" and r["row"] == str(line["row"]))]
            tmp = self.path + ".tmp"
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, self.columns, extrasaction="ignore")
                w.writeheader()
                w.writerows([*lines, line])
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)


def process_state():
    """accelerate's view of the processes (one, or those `accelerate launch` started)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # cpu=True: several CPU processes split too


def run_rows(jobs: list[dict], key, work, results: Results, desc: str = "rows",
             progress: bool = True) -> dict:
    """The row runner `batch` and `evaluate` share. Runs `work(job) -> line` for each job of
    this process's share (split under accelerate) whose `key(job)` is not done in `results`,
    recording each line as it finishes: a rerun skips finished rows and a crash loses at
    most the row in flight. A failing row is recorded with its reason and the rest go on.
    Returns counts (done, skipped, failed) and the failures [(row, reason)]."""
    from tqdm.auto import tqdm

    state = process_state()
    done = results.done_keys()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures = []
    with state.split_between_processes(jobs) as mine:
        todo = [(job, key(job)) for job in mine]
        counts["skipped"] = sum(k in done for _, k in todo)
        todo = [(job, k) for job, k in todo if k not in done]
        bar = tqdm(todo, desc=desc if state.num_processes == 1 else f"{desc} [{state.process_index}]",
                   unit="row", disable=not progress, position=state.process_index)
        for job, k in bar:  # tqdm: rows done of this share, rate, time left
            start = time.perf_counter()
            try:
                line = {**work(job), "status": "ok"}
                counts["done"] += 1
            except Exception as e:  # a bad row is recorded and the rest go on
                reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
                if not isinstance(e, ValueError):
                    traceback.print_exc()
                if job.get("path") and job["path"] not in reason:
                    reason = f"{job['path']}: {reason}"
                line = {**job, "status": "failed", "error": reason,
                        "seconds": round(time.perf_counter() - start, 4)}
                failures.append((job["row"], reason))
                counts["failed"] += 1
            results.append({**line, "row": job["row"], "key": k})
    state.wait_for_everyone()
    return {**counts, "failures": failures, "main": state.is_main_process}


def run_batch(studio, manifest: str, out: str, runs: RunStore | None = None,
              progress: bool = True) -> dict:
    """Run every row not done yet (this process's share under accelerate). Returns counts
    and the failures [(row, reason)]."""
    jobs = read_manifest(manifest)
    os.makedirs(out, exist_ok=True)
    runs = runs or RunStore()
    results = Results(out)
    report = run_rows(jobs, lambda job: row_key(job, studio.preset.name),
                      lambda job: run_row(studio, job, out, runs), results, "batch", progress)
    if report.pop("main"):
        report["review_items"] = compare(results, out, runs, studio.preset.name)
    return {**report, "results": results.path}


def _parts(items: list, size: int) -> list[list]:
    """`items` in nearly equal consecutive parts of at most `size` (a review item holds at
    most `runs.MAX_OUTPUTS` outputs, what the review page shows)."""
    k = max(1, -(-len(items) // size))
    return [items[len(items) * i // k:len(items) * (i + 1) // k] for i in range(k)]


def compare(results: Results, out: str, runs: RunStore, preset: str) -> int:
    """Rows with the same task, input, prompts, steps, guidance and seed but different
    methods (or variants and scales) become one review item, once. Returns how many are new."""
    from PIL import Image

    rows = [r for r in results.read() if r["status"] == "ok"]
    made_path = os.path.join(out, "review_items.json")
    made = json.load(open(made_path)) if os.path.exists(made_path) else {}
    groups: dict[tuple, dict] = {}
    for r in rows:
        record = runs.get(r["run_id"])
        group = (r["task"], r["input"], r["prompt"], r["target"], record["params"].get("steps"),
                 record["params"].get("guidance"), record["seed"])
        groups.setdefault(group, {})[r["method"]] = (r, record)
    new = 0
    parts = [(group, dict(part)) for group, by_method in groups.items()
             for part in _parts(sorted(by_method.items()), MAX_OUTPUTS)]
    for group, by_method in parts:
        gkey = hashlib.sha1(json.dumps([group, sorted(by_method)]).encode()).hexdigest()[:16]
        if len(by_method) < 2 or gkey in made:
            continue
        first = next(iter(by_method.values()))[1]
        outputs = [Output(m, Image.open(os.path.join(rec["dir"], rec["outputs"][0]["image"])).copy(),
                          rec["outputs"][0]["metrics"], rec["outputs"][0]["seconds"])
                   for m, (_, rec) in sorted(by_method.items())]
        source = Image.open(os.path.join(first["dir"], first["source"])).copy()
        made[gkey] = runs.save(first["task"], preset, outputs, source=source, prompts=first["prompts"],
                               params={"steps": group[4], "guidance": group[5],
                                       "from_batch": os.path.basename(out)},
                               seed=first["seed"])
        new += 1
    with open(made_path, "w") as f:
        json.dump(made, f, indent=1)
    return new
