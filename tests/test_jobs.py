"""Jobs: one request object from every front end to the model, saved with each run and
replayed by `python -m recontext run job.json`."""

import csv
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from recontext import jobs
from recontext.runs import RunStore, output_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "assets", "photos", "chelsea.png")
GARMENT = os.path.join(ROOT, "assets", "garments", "green-plain-t-shirt.png")
NOOP = lambda *a, **k: None  # noqa: E731  (a progress that shows nothing)


def every_kind():
    return [
        jobs.Reconstruct(image=jobs.Input(PHOTO), prompt="a cat", methods=["ddim", "renoise"],
                         variants=["tight", "plain"], steps=3, options={"renoise": {"renoise_steps": 2}}),
        jobs.Edit(image=jobs.Input(PHOTO), source="a cat", target="a dog", steps=3, skip=0.2),
        jobs.Edit(image=jobs.Input(PHOTO), source="a cat", target="a dog", kind="sweep", scales=[0, 0.5]),
        jobs.Edit(image=jobs.Input(PHOTO), target="a dog", kind="compare", variants="both", image_scale=0.7),
        jobs.Dress(garment=jobs.Input(GARMENT), prompt="a person", methods=["finetune-lora"],
                   options={"finetune-lora": {"finetune_steps": 3}}),
        jobs.Generate(prompt="a red disc on a blue background", steps=2, seed=7),
    ]


@pytest.mark.parametrize("job", every_kind(), ids=lambda j: type(j).__name__ + getattr(j, "kind", ""))
def test_a_job_round_trips_through_json(job):
    job = job.check()
    text = job.to_json()
    again = jobs.from_dict(json.loads(text))
    assert again == job and again.to_json() == text
    assert json.loads(text)["task"] in jobs.TASKS


@pytest.mark.parametrize("change, field", [
    ({"steps": math.inf}, "steps"), ({"seed": math.inf}, "seed"), ({"steps": "Infinity"}, "steps"),
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"image_scale": 1.6}, "image_scale"),
    ({"image_scale": math.nan}, "image_scale"), ({"guidance": 0.5}, "guidance"), ({"skip": 0.95}, "skip"),
    ({"source_guidance": -1}, "source_guidance"), ({"variants": ["tight", "loose"]}, "variants"),
    ({"variants": []}, "variants"), ({"kind": "many"}, "kind"), ({"target": ""}, "target prompt"),
    ({"source": "x" * 2001}, "source prompt is 2001 characters long; at most 2000"),
    ({"kind": "sweep", "scales": [0.1] * 13}, "scales"), ({"kind": "sweep", "variants": ["plain"]}, "variants"),
    ({"options": {"ddim": 3}}, "options"),
])
def test_a_bad_field_is_named_with_its_range(change, field):
    job = jobs.Edit(image=jobs.Input(PHOTO), source="a cat", target="a dog")
    with pytest.raises(ValueError, match=re.escape(field)):
        jobs.replace(job, **change).check()


def test_infinity_in_a_job_file_is_a_named_error(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"task": "generate", "prompt": "a disc", "steps": Infinity}')
    with pytest.raises(ValueError, match="steps must be a finite number between 1 and 200"):
        jobs.load(str(path))
    path.write_text('{"task": "generate", "prompt": "a disc", "seed": Infinity}')
    with pytest.raises(ValueError, match="seed must be a finite number"):
        jobs.load(str(path))
    path.write_text('{"task": "generate", "prompt": "a disc", "colour": "red"}')
    with pytest.raises(ValueError, match="no field colour"):
        jobs.load(str(path))


def test_a_changed_input_is_refused_by_its_hash(tmp_path):
    shutil.copy(PHOTO, tmp_path / "p.png")
    job = jobs.Reconstruct(image=jobs.Input(str(tmp_path / "p.png")), steps=2).check()
    (tmp_path / "job.json").write_text(job.to_json())
    assert jobs.load(str(tmp_path / "job.json")).image.sha256 == job.image.sha256
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    with pytest.raises(ValueError, match="sha256 differs"):
        jobs.load(str(tmp_path / "job.json"))


def _sources():
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "recontext")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                out[os.path.relpath(path, ROOT)] = open(path, encoding="utf-8").read()
    return out


def test_each_shared_setting_is_declared_once_and_plain_tight_has_one_encoding():
    sources = _sources()
    for name in jobs.SHARED:
        declared = [p for p, text in sources.items() if re.search(rf'Option\(\s*"{name}"', text)]
        assert declared == [os.path.join("recontext", "jobs.py")], (name, declared)
    # the image scale's default and range are typed nowhere else: no 0.4 default, no 0-1 slider
    for path, text in sources.items():
        if path.endswith("jobs.py"):
            continue
        assert not re.search(r"(image_scale|scale)\s*(:\s*float)?\s*=\s*0\.4\b", text), path
        assert not re.search(r"Slider\(\s*0(\.0)?\s*,\s*1(\.0|\.5)?\s*,\s*value\s*=\s*0\.4", text), path
        assert not re.search(r"default\s*=\s*0\.4\b", text), path
        # plain / tight: one encoding (jobs.VARIANTS), not a dict of booleans or another tuple
        assert '{"plain": False, "tight": True}' not in text, path
        assert '("plain", "tight")' not in text, path
    assert jobs.VARIANTS == ("plain", "tight")
    assert jobs.check_variants("both") == jobs.check_variants(["tight", "plain"]) == jobs.VARIANTS


def test_the_page_cli_and_studio_read_the_shared_settings(studio):
    import inspect

    from recontext.cli import build_parser
    from recontext.ui.common import shared_slider, steps_slider

    o = jobs.SHARED["image_scale"]
    slider = shared_slider("image_scale", label="x")
    assert (slider.minimum, slider.maximum, slider.value, slider.info) == (o.lo, o.hi, o.default, o.help)
    assert steps_slider(studio).maximum == jobs.SHARED["steps"].hi
    args = build_parser(["invert"]).parse_args(["invert", PHOTO])
    assert args.image_scale == o.default
    for call in (studio.reconstruct, studio.edit, studio.edit_compare):
        assert inspect.signature(call).parameters["image_scale"].default == o.default


# -- reproduction: each kind of saved run, replayed from its job.json pixel for pixel ----------
def _same_pixels(run_dir, images):
    record = json.load(open(os.path.join(run_dir, "run.json")))
    assert len(record["outputs"]) == len(images)
    for o, image in zip(record["outputs"], images):
        saved = np.asarray(Image.open(os.path.join(run_dir, o["image"])).convert("RGB"))
        assert np.array_equal(saved, np.asarray(image.convert("RGB"))), o["method"]


def _replay(studio, run_dir):
    path = os.path.join(run_dir, "job.json")
    assert jobs.preset_in(path) == studio.preset.name
    studio.inversion_cache.clear()
    studio.garment_cache.clear()
    return output_images(studio.run(jobs.load(path)).results)


def test_every_tab_run_replays_from_its_job_json(studio, tmp_path):
    from recontext.ui import edit_tab, garment_tab, inversion_tab

    runs = RunStore(str(tmp_path / "runs"))
    made = [
        inversion_tab.reconstruct(studio, PHOTO, "a cat", ["ddim", "edit-friendly"], ["plain", "tight"], 0.5, 2, 3,
                                  progress=NOOP, runs=runs, options={"edit-friendly": {}})[0],
        edit_tab.edit(studio, PHOTO, "a cat", "a dog", "renoise", True, 0.4, 7.5, 2, 1, "prompt-to-prompt",
                      {"renoise_steps": 2}, progress=NOOP, runs=runs)[0],
        edit_tab.edit_sweep(studio, PHOTO, "a cat", "a red cat", "ddim", "0, 0.8", 7.5, 2, 0, progress=NOOP,
                            runs=runs)[0],
        edit_tab.edit_compare(studio, PHOTO, "a cat", "a dog", "ddim", 0.4, 7.5, 2, 0, progress=NOOP,
                              runs=runs)[0],
        garment_tab.dress(studio, GARMENT, "a person", ["ip-adapter", "finetune-lora"],
                          {"finetune-lora": {"finetune_steps": 2}}, "default", 2, 5, progress=NOOP, runs=runs)[0],
    ]
    for result in made:
        assert result["run_id"] and result["job"]["task"] in jobs.TASKS  # the API's result includes the job
        run_dir = os.path.join(runs.root, result["run_id"])
        _same_pixels(run_dir, _replay(studio, run_dir))


def test_the_run_command_reproduces_a_saved_run(studio, tmp_path):
    from recontext import cli
    from recontext.ui import edit_tab

    runs = RunStore(str(tmp_path / "runs"))
    result = edit_tab.edit_sweep(studio, PHOTO, "a cat", "a red cat", "ddim", "0.2, 0.6", 7.5, 2, 0,
                                 progress=NOOP, runs=runs)[0]
    run_dir = os.path.join(runs.root, result["run_id"])
    out = tmp_path / "again"
    assert cli.main(["run", os.path.join(run_dir, "job.json"), "--out", str(out)]) == 0
    _same_pixels(run_dir, [Image.open(out / f"output-{i}.png") for i in range(2)])
    again, saved = (jobs.load(path).to_dict() for path in (str(out / "job.json"), os.path.join(run_dir, "job.json")))
    assert again["image"]["sha256"] == saved["image"]["sha256"]
    assert {**again, "image": None} == {**saved, "image": None}


def test_batch_and_evaluate_rows_replay_from_their_jobs(studio, tmp_path):
    from recontext import evaluate
    from recontext.batch import run_batch

    shutil.copy(PHOTO, tmp_path / "cat.png")
    with open(tmp_path / "jobs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "input", "prompt", "target", "method", "tight", "scale", "steps", "seed"])
        w.writerow(["edit", "cat.png", "a cat", "a tiger", "edit-friendly", "yes", "0.6", "2", "4"])
    runs = RunStore(str(tmp_path / "runs"))
    assert run_batch(studio, str(tmp_path / "jobs.csv"), str(tmp_path / "out"), runs, progress=False)["done"] == 1
    (run_id,) = runs.ids()
    _same_pixels(os.path.join(runs.root, run_id), _replay(studio, os.path.join(runs.root, run_id)))

    folder = tmp_path / "coco"
    os.makedirs(folder / "val2017")
    Image.open(PHOTO).convert("RGB").save(folder / "val2017" / "000000000139.jpg", quality=95)
    (folder / "captions.json").write_text(json.dumps({
        "images": [{"id": 139, "file_name": "000000000139.jpg"}],
        "annotations": [{"id": 1, "image_id": 139, "caption": "A cat lying on a rug."}]}))
    out = tmp_path / "eval"
    evaluate.evaluate_reconstruction(studio, str(folder / "captions.json"), str(folder / "val2017"), str(out),
                                     methods=["renoise"], tight="on", scales=[0.7], steps=2, progress=False)
    row = next(csv.DictReader(open(out / "rows.csv")))
    job = jobs.load(str(out / "jobs" / f"row{int(row['row']):05d}.json"))
    assert job.image_scale == 0.7 and job.variants == ("tight",)
    again = studio.run(job).results[0]
    assert again.metrics["psnr"] == pytest.approx(float(row["psnr"]), rel=0, abs=1e-9)


def test_the_review_never_serves_a_job(studio, tmp_path):
    from recontext.review.queue import next_item
    from recontext.review.store import RatingStore
    from recontext.ui import edit_tab

    runs = RunStore(str(tmp_path / "runs"))
    result = edit_tab.edit_compare(studio, PHOTO, "a cat", "a dog", "ddim", 0.4, 7.5, 2, 0, progress=NOOP,
                                   runs=runs)[0]
    assert os.path.exists(os.path.join(runs.root, result["run_id"], "job.json"))
    item = next_item(runs, RatingStore(str(tmp_path / "ratings.csv")), "rater-1", b"s" * 32)
    assert item.item_id == result["run_id"] and "job" not in vars(item)
    served = json.dumps(vars(item), default=str)
    assert "job.json" not in served and result["job"]["image"]["sha256"] not in served and "input-" not in served
