"""Public try-on datasets → the training manifest `train-hyperlora --data` reads.

`python -m recontext prepare-data viton-hd DIR --out MANIFEST.csv` (or `dresscode`) reads the
dataset in its own folder layout and writes `garment,image,prompt,mask` rows (paths relative
to the manifest, as `recontext.garment.train.read_manifest` wants them). The mask, white where
the garment is worn in the person photo, is cut from the dataset's human-parsing map with the
label ids the dataset's own code uses (cited below), and written as a PNG in a folder beside
the manifest (`<manifest name>_masks/`). Prompts name the garment's category; a captions file
(`--captions`) replaces them image by image.

Layouts read:
- VITON-HD (`zalando-hd-resized`): `train_pairs.txt` (person image, garment image per line),
  and `image/`, `cloth/`, `image-parse-v3/` either in DIR or in `DIR/train/` (the official zip;
  `cloth-mask/` and the pose folders are not needed).
- DressCode: `upper_body/`, `lower_body/`, `dresses/` (those present), each with
  `train_pairs.txt`, `images/` (person `NNNNNN_0.jpg`, garment `NNNNNN_1.jpg`) and
  `label_maps/` (`NNNNNN_4.png`).
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from PIL import Image

# VITON-HD's `image-parse-v3` maps follow LIP's 20 labels (0 background, 5 upper-clothes,
# 6 dress, 7 coat, 9 pants, 12 skirt, ...). VITON-HD's own loader (shadow2496/VITON-HD,
# datasets.py, `get_parse_agnostic` and the `labels` table: 3: ['upper', [5, 6, 7]]) takes
# 5, 6 and 7 together as the upper-body garment that its `cloth/` images show.
VITON_HD_GARMENT = (5, 6, 7)

# DressCode's label maps (aimagelab/dress-code, data/labelmap.py): 0 background, 1 hat, 2 hair,
# 3 sunglasses, 4 upper_clothes, 5 skirt, 6 pants, 7 dress, 8 belt, 9 left_shoe, 10 right_shoe,
# 11 head, 12 left_leg, 13 right_leg, 14 left_arm, 15 right_arm, 16 bag, 17 scarf.
# Its loader (data/dataset.py) takes the garment as 4 for upper_body, 7 for dresses and 6 for
# lower_body; lower_body also holds skirts, which the label list names 5, so 5 is added there.
DRESSCODE_LABELS = {"upper_clothes": 4, "skirt": 5, "pants": 6, "dress": 7}
DRESSCODE_GARMENT = {"upper_body": (4,), "lower_body": (5, 6), "dresses": (7,)}
DRESSCODE_CATEGORIES = ("upper_body", "lower_body", "dresses")

PROMPT = "a photo of a person wearing {}"
WORN = {"upper_body": "a top", "dresses": "a dress", "skirt": "a skirt", "pants": "trousers"}
DATASETS = ("viton-hd", "dresscode")


# -- reading the dataset's files ---------------------------------------------------------
def label_map(path: str) -> np.ndarray:
    """The label ids of a parsing map (a palette or grayscale PNG: pixel value = label id)."""
    if not os.path.isfile(path):
        raise ValueError(f"parsing map not found: {path}")
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"parsing map {path} is a {im.mode} image: it must hold label ids "
                             "(a palette or grayscale PNG), not colours")
        return np.asarray(im)  # a palette image gives its indices, which are the label ids


def garment_mask(path: str, ids) -> np.ndarray:
    """True where the parsing map at `path` holds one of `ids`."""
    return np.isin(label_map(path), list(ids))


def read_pairs(path: str) -> list[tuple[str, str]]:
    """`person garment` file names per line (the datasets' `train_pairs.txt`)."""
    if not os.path.isfile(path):
        raise ValueError(f"pairs file not found: {path}")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{path} line {n}: expected 'person_image garment_image', got {line.strip()!r}")
            pairs.append((fields[0], fields[1]))
    if not pairs:
        raise ValueError(f"pairs file {path} lists no pairs")
    return pairs


def read_captions(path: str | None) -> dict[str, str]:
    """Captions by person image: a CSV with columns `image,caption`, or a JSON object
    {image: caption}. Keys are the file names of the pairs file (`00000_00.jpg`), or for
    DressCode also `category/name` (`dresses/020714_0.jpg`)."""
    if not path:
        return {}
    if not os.path.isfile(path):
        raise ValueError(f"captions file not found: {path}")
    if path.lower().endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"captions file {path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"captions file {path}: expected a JSON object {{image: caption}}")
        return {str(k): str(v) for k, v in data.items()}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"image", "caption"} <= set(reader.fieldnames or ()):
            raise ValueError(f"captions file {path}: needs the columns image,caption")
        return {row["image"]: row["caption"] or "" for row in reader}


def _need_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise ValueError(f"{what}: folder {path} not found")
    return path


def _need_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise ValueError(f"{what}: file {path} not found")
    return path


# -- the manifest ------------------------------------------------------------------------
class _Writer:
    """Rows of the manifest, each with its mask written beside it."""

    def __init__(self, out: str):
        self.out = os.path.abspath(out)
        self.root = os.path.dirname(self.out)
        self.masks = os.path.splitext(self.out)[0] + "_masks"
        self.rows: list[dict] = []
        self.counts: dict[str, int] = {}
        self.skipped: list[str] = []

    def rel(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")

    def add(self, category: str, garment: str, image: str, prompt: str, mask: np.ndarray, name: str):
        if not mask.any():  # the parser found no garment: the pair would teach nothing about it
            self.skipped.append(f"{category}/{name}")
            return
        with Image.open(image) as im:
            if im.size != (mask.shape[1], mask.shape[0]):
                raise ValueError(f"{image} is {im.width}×{im.height} but its parsing map is "
                                 f"{mask.shape[1]}×{mask.shape[0]}")
        path = os.path.join(self.masks, category, os.path.splitext(name)[0] + ".png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path)
        self.rows.append({"garment": self.rel(garment), "image": self.rel(image), "prompt": prompt,
                          "mask": self.rel(path), "category": category})
        self.counts[category] = self.counts.get(category, 0) + 1

    def write(self, dataset: str) -> dict:
        if not self.rows:
            raise ValueError(f"{dataset}: no pair with a garment in its parsing map; nothing to write")
        os.makedirs(self.root, exist_ok=True)
        tmp = self.out + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["garment", "image", "prompt", "mask", "category"])
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.out)
        return {"dataset": dataset, "manifest": self.out, "rows": len(self.rows), "categories": self.counts,
                "masks": self.masks, "skipped_no_garment": len(self.skipped),
                "skipped_examples": self.skipped[:10]}


def _caption(captions: dict, category: str, name: str, default: str) -> str:
    return captions.get(f"{category}/{name}") or captions.get(name) or default


def prepare_viton_hd(root: str, out: str, captions: str | None = None, limit: int | None = None) -> dict:
    """VITON-HD's training pairs as a manifest; the mask is LIP labels 5, 6, 7 of
    `image-parse-v3` (see `VITON_HD_GARMENT`)."""
    _need_dir(root, "VITON-HD")
    pairs = read_pairs(_need_file(os.path.join(root, "train_pairs.txt"), "VITON-HD"))
    data = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train", "image")) else root
    folders = {k: _need_dir(os.path.join(data, k), "VITON-HD") for k in ("image", "cloth", "image-parse-v3")}
    caps, w = read_captions(captions), _Writer(out)
    for person, cloth in pairs[:limit]:
        image = _need_file(os.path.join(folders["image"], person), "VITON-HD person image")
        garment = _need_file(os.path.join(folders["cloth"], cloth), "VITON-HD garment image")
        parse = os.path.join(folders["image-parse-v3"], os.path.splitext(person)[0] + ".png")
        w.add("upper_body", garment, image, _caption(caps, "upper_body", person, PROMPT.format(WORN["upper_body"])),
              garment_mask(parse, VITON_HD_GARMENT), person)
    return w.write("viton-hd")


def dresscode_label_name(person: str) -> str:
    """`020714_0.jpg` → `020714_4.png`, the label map's name in DressCode."""
    stem = os.path.splitext(person)[0]
    return (stem[:-2] if stem.endswith("_0") else stem) + "_4.png"


def prepare_dresscode(root: str, out: str, captions: str | None = None, limit: int | None = None,
                      categories=DRESSCODE_CATEGORIES) -> dict:
    """DressCode's training pairs of every category present (upper body, lower body, dresses)
    as a manifest; the mask is the category's labels (see `DRESSCODE_GARMENT`). A lower-body
    prompt says skirt or trousers by which of the two labels covers more of the photo."""
    _need_dir(root, "DressCode")
    present = [c for c in categories if os.path.isdir(os.path.join(root, c))]
    if not present:
        raise ValueError(f"DressCode: none of the folders {', '.join(categories)} found in {root}")
    caps, w = read_captions(captions), _Writer(out)
    for category in present:
        base = os.path.join(root, category)
        what = f"DressCode {category}"
        pairs = read_pairs(_need_file(os.path.join(base, "train_pairs.txt"), what))
        images_dir = _need_dir(os.path.join(base, "images"), what)
        labels_dir = _need_dir(os.path.join(base, "label_maps"), what)
        for person, cloth in pairs[:limit]:
            image = _need_file(os.path.join(images_dir, person), f"{what} person image")
            garment = _need_file(os.path.join(images_dir, cloth), f"{what} garment image")
            labels = label_map(os.path.join(labels_dir, dresscode_label_name(person)))
            mask = np.isin(labels, DRESSCODE_GARMENT[category])
            if category == "lower_body":
                kind = "skirt" if (labels == DRESSCODE_LABELS["skirt"]).sum() > (labels == DRESSCODE_LABELS["pants"]).sum() else "pants"
            else:
                kind = category
            w.add(category, garment, image, _caption(caps, category, person, PROMPT.format(WORN[kind])), mask, person)
    return w.write("dresscode")


def prepare(dataset: str, root: str, out: str, captions: str | None = None, limit: int | None = None) -> dict:
    if dataset == "viton-hd":
        return prepare_viton_hd(root, out, captions, limit)
    if dataset == "dresscode":
        return prepare_dresscode(root, out, captions, limit)
    raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
