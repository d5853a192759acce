"""prepare-data: VITON-HD and DressCode in their own folder layouts → the training manifest;
the manifest feeds train-hyperlora; a checkpoint pushed to and loaded from the Hub's layout.

The fixtures are written here, in the datasets' layouts, with a few small images whose
parsing maps hold known label ids. The label ids below are written out again, not imported
from recontext.prepare, so a wrong id there fails these tests.
"""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from recontext import cli
from recontext.garment.train import read_manifest
from recontext.prepare import prepare

H, W = 96, 64

# LIP (VITON-HD image-parse-v3): the garment of cloth/ is upper-clothes, dress or coat
LIP = {"background": 0, "hair": 2, "upper_clothes": 5, "dress": 6, "coat": 7, "pants": 9,
       "skirt": 12, "face": 13, "left_arm": 14}
LIP_PALETTE = [0, 0, 0, 128, 0, 0, 255, 0, 0, 0, 85, 0, 170, 0, 51, 255, 85, 0, 0, 0, 85, 0, 119, 221,
               85, 85, 0, 0, 85, 85, 85, 51, 0, 52, 86, 128, 0, 128, 0, 0, 0, 255, 51, 170, 221, 0, 255,
               255, 85, 255, 170, 170, 255, 85, 255, 255, 0, 255, 170, 0]
# DressCode label_maps (aimagelab/dress-code data/labelmap.py)
DC = {"hair": 2, "upper_clothes": 4, "skirt": 5, "pants": 6, "dress": 7, "head": 11, "left_arm": 14}


def person(labels: np.ndarray, seed: int) -> Image.Image:
    """A person photo whose colours follow the parsing map (any picture would do)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    return Image.fromarray(colours[labels])


def garment_photo(seed: int) -> Image.Image:
    img = np.full((H, W, 3), 255, np.uint8)
    img[20:80, 10:54] = np.random.default_rng(seed).integers(0, 256, 3, dtype=np.uint8)
    return Image.fromarray(img)


def viton_parse(coat: bool) -> np.ndarray:
    p = np.zeros((H, W), np.uint8)
    p[0:16] = LIP["hair"]
    p[16:32] = LIP["face"]
    p[32:48, :32] = LIP["upper_clothes"]
    p[32:48, 32:] = LIP["coat"] if coat else LIP["upper_clothes"]
    p[48:56] = LIP["dress"]
    p[56:72] = LIP["pants"]
    p[72:80] = LIP["skirt"]
    p[32:56, :6] = LIP["left_arm"]
    return p


def make_viton_hd(root) -> dict[str, np.ndarray]:
    """zalando-hd-resized: train_pairs.txt, train/{image,cloth,cloth-mask,image-parse-v3}.
    Returns each person image's parsing map."""
    maps = {"00000_00.jpg": viton_parse(coat=False), "00001_00.jpg": viton_parse(coat=True)}
    for d in ("image", "cloth", "cloth-mask", "image-parse-v3"):
        os.makedirs(root / "train" / d)
    for i, (name, labels) in enumerate(maps.items()):
        person(labels, i).save(root / "train" / "image" / name, "JPEG")
        garment_photo(i).save(root / "train" / "cloth" / name, "JPEG")
        Image.fromarray(np.uint8(np.asarray(garment_photo(i)).min(2) < 255) * 255).save(
            root / "train" / "cloth-mask" / name, "JPEG")
        parse = Image.fromarray(labels, "P")  # a palette PNG, as VITON-HD ships them
        parse.putpalette(LIP_PALETTE)
        parse.save(root / "train" / "image-parse-v3" / name.replace(".jpg", ".png"))
    (root / "train_pairs.txt").write_text("".join(f"{n} {n}\n" for n in maps))
    return maps


def dresscode_map(upper: int, dress: int, skirt: int, pants: int) -> np.ndarray:
    """Every garment label in one map, `n` rows each, so each category must pick its own."""
    p = np.zeros((H, W), np.uint8)
    p[0:12] = DC["hair"]
    p[12:20] = DC["head"]
    row = 20
    for label, n in ((DC["upper_clothes"], upper), (DC["dress"], dress), (DC["skirt"], skirt),
                     (DC["pants"], pants)):
        p[row:row + n] = label
        row += n
    p[20:40, :5] = DC["left_arm"]
    return p


def make_dresscode(root) -> dict[str, np.ndarray]:
    """{upper_body,lower_body,dresses}/{images,label_maps,train_pairs.txt}. Returns
    'category/person name' -> parsing map."""
    maps = {
        "upper_body/000000_0.jpg": dresscode_map(upper=20, dress=4, skirt=4, pants=4),
        "upper_body/000001_0.jpg": dresscode_map(upper=12, dress=8, skirt=8, pants=8),
        "lower_body/013000_0.jpg": dresscode_map(upper=10, dress=4, skirt=30, pants=6),   # a skirt
        "lower_body/013001_0.jpg": dresscode_map(upper=10, dress=4, skirt=6, pants=30),   # trousers
        "dresses/020000_0.jpg": dresscode_map(upper=4, dress=40, skirt=4, pants=4),
        "dresses/020001_0.jpg": dresscode_map(upper=4, dress=30, skirt=4, pants=4),
        "dresses/020002_0.jpg": dresscode_map(upper=30, dress=0, skirt=4, pants=4),       # no dress found
    }
    lines: dict[str, list[str]] = {}
    for i, (key, labels) in enumerate(maps.items()):
        category, name = key.split("/")
        for d in ("images", "label_maps"):
            os.makedirs(root / category / d, exist_ok=True)
        person(labels, i).save(root / category / "images" / name, "JPEG")
        garment_photo(i).save(root / category / "images" / name.replace("_0.jpg", "_1.jpg"), "JPEG")
        Image.fromarray(labels, "L").save(root / category / "label_maps" / name.replace("_0.jpg", "_4.png"))
        lines.setdefault(category, []).append(f"{name} {name.replace('_0.jpg', '_1.jpg')}\n")
    for category, ls in lines.items():
        (root / category / "train_pairs.txt").write_text("".join(ls))
    return maps


def rows(manifest) -> list[dict]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def mask_of(manifest, row) -> np.ndarray:
    return np.asarray(Image.open(os.path.join(os.path.dirname(manifest), row["mask"]))) > 127


# -- the manifests --------------------------------------------------------------------------
def test_viton_hd_rows_and_masks_from_lip_labels(tmp_path):
    maps = make_viton_hd(tmp_path / "viton")
    (tmp_path / "captions.csv").write_text("image,caption\n00001_00.jpg,a man in a grey coat\n")
    out = tmp_path / "out" / "viton.csv"
    summary = prepare("viton-hd", str(tmp_path / "viton"), str(out), captions=str(tmp_path / "captions.csv"))
    assert summary["rows"] == 2 and summary["skipped_no_garment"] == 0
    got = rows(out)
    assert [r["image"] for r in got] == ["../viton/train/image/00000_00.jpg", "../viton/train/image/00001_00.jpg"]
    assert [r["garment"] for r in got] == ["../viton/train/cloth/00000_00.jpg", "../viton/train/cloth/00001_00.jpg"]
    assert got[0]["prompt"] == "a photo of a person wearing a top"
    assert got[1]["prompt"] == "a man in a grey coat"  # from the captions file
    for r in got:
        labels = maps[os.path.basename(r["image"])]
        want = np.isin(labels, [LIP["upper_clothes"], LIP["dress"], LIP["coat"]])
        mask = mask_of(out, r)
        assert mask.shape == (H, W) and np.array_equal(mask, want)
        # pants, skirt, arms, face and hair are not the garment
        assert not mask[labels == LIP["pants"]].any() and not mask[labels == LIP["left_arm"]].any()
    pairs = read_manifest(str(out))  # what train-hyperlora reads
    assert len(pairs) == 2 and all(p.mask and os.path.exists(p.mask) for p in pairs)


def test_dresscode_each_category_takes_its_own_labels(tmp_path):
    maps = make_dresscode(tmp_path / "DressCode")
    (tmp_path / "captions.json").write_text(json.dumps({"dresses/020001_0.jpg": "a woman in a long red dress"}))
    out = tmp_path / "dresscode.csv"
    summary = prepare("dresscode", str(tmp_path / "DressCode"), str(out), captions=str(tmp_path / "captions.json"))
    assert summary["categories"] == {"upper_body": 2, "lower_body": 2, "dresses": 2}
    assert summary["skipped_no_garment"] == 1 and summary["skipped_examples"] == ["dresses/020002_0.jpg"]
    want_ids = {"upper_body": [DC["upper_clothes"]], "lower_body": [DC["skirt"], DC["pants"]],
                "dresses": [DC["dress"]]}
    got = rows(out)
    for r in got:
        category, name = r["image"].split("/")[-3], os.path.basename(r["image"])
        assert r["category"] == category and r["garment"] == r["image"].replace("_0.jpg", "_1.jpg")
        labels = maps[f"{category}/{name}"]
        mask = mask_of(out, r)
        assert np.array_equal(mask, np.isin(labels, want_ids[category])), r
        assert mask.sum() > 0 and not mask[labels == DC["left_arm"]].any()
    prompts = {os.path.basename(r["image"]): r["prompt"] for r in got}
    assert prompts == {"000000_0.jpg": "a photo of a person wearing a top",
                       "000001_0.jpg": "a photo of a person wearing a top",
                       "013000_0.jpg": "a photo of a person wearing a skirt",
                       "013001_0.jpg": "a photo of a person wearing trousers",
                       "020000_0.jpg": "a photo of a person wearing a dress",
                       "020001_0.jpg": "a woman in a long red dress"}


def test_missing_folders_and_files_are_named(tmp_path, capsys):
    make_viton_hd(tmp_path / "viton")
    make_dresscode(tmp_path / "dc")
    out = str(tmp_path / "m.csv")
    with pytest.raises(ValueError, match="no_such_dir.*not found"):
        prepare("viton-hd", str(tmp_path / "no_such_dir"), out)
    shutil.rmtree(tmp_path / "viton" / "train" / "image-parse-v3")
    with pytest.raises(ValueError, match="image-parse-v3 not found"):
        prepare("viton-hd", str(tmp_path / "viton"), out)
    (tmp_path / "dc" / "lower_body" / "label_maps" / "013001_4.png").unlink()
    with pytest.raises(ValueError, match="parsing map not found: .*013001_4.png"):
        prepare("dresscode", str(tmp_path / "dc"), out)
    make_dresscode(tmp_path / "dc2")
    (tmp_path / "dc2" / "dresses" / "train_pairs.txt").unlink()
    with pytest.raises(ValueError, match="DressCode dresses: file .*train_pairs.txt not found"):
        prepare("dresscode", str(tmp_path / "dc2"), out)
    with pytest.raises(ValueError, match="none of the folders upper_body, lower_body, dresses"):
        prepare("dresscode", str(tmp_path / "viton"), out)
    # a colour-coded parsing map (the palette decoded to RGB) would give wrong ids: refused
    make_viton_hd(tmp_path / "viton2")
    src = tmp_path / "viton2" / "train" / "image-parse-v3" / "00000_00.png"
    Image.open(src).convert("RGB").save(src)
    with pytest.raises(ValueError, match="RGB image: it must hold label ids"):
        prepare("viton-hd", str(tmp_path / "viton2"), out)
    # the command line: one clear line, exit status 2
    assert cli.main(["prepare-data", "viton-hd", str(tmp_path / "nowhere"), "--out", out]) == 2
    assert "error: VITON-HD: folder" in capsys.readouterr().err


# -- feeding train-hyperlora, and the Hub -------------------------------------------------------
def _train(capsys, manifest, ckpt, *extra) -> dict:
    capsys.readouterr()
    rc = cli.main(["train-hyperlora", "--preset", "tiny", "--data", str(manifest), "--steps", "2",
                   "--save-every", "2", "--out", str(ckpt), *extra])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    report = json.loads(out.out)
    assert report["steps"] == 2 and np.isfinite(report["loss_last"])
    return report


def test_viton_hd_manifest_feeds_train_hyperlora(tmp_path, capsys):
    make_viton_hd(tmp_path / "viton")
    manifest = tmp_path / "viton.csv"
    assert cli.main(["prepare-data", "viton-hd", str(tmp_path / "viton"), "--out", str(manifest)]) == 0
    _train(capsys, manifest, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "hyperlora.safetensors").exists()


def test_dresscode_checkpoint_round_trips_through_the_hub_layout(tmp_path, capsys, monkeypatch, studio):
    """What is real: prepare-data, the 2-step training, the model card, the arguments given to
    huggingface_hub's create_repo / upload_folder, and loading by repo id through
    huggingface_hub's own snapshot_download (offline, from its cache). What is not: the Hub
    server. The upload is replaced by a copy of the uploaded files into the cache layout a
    download would leave (models--ORG--NAME/refs/main, snapshots/<commit>/)."""
    import huggingface_hub
    from huggingface_hub import constants

    from recontext.garment.methods.hyperlora import find_checkpoint as hyperlora_checkpoint, predict
    from recontext.garment.hyperlora import HyperLoRA
    from recontext.garment.synthetic import garment

    repo, commit = "someone/hyperlora-dresscode", "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub-cache"
    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, folder_path, repo_id, allow_patterns=None, **kw):
        calls.append(("upload_folder", repo_id, {"allow_patterns": allow_patterns, **kw}))
        store = cache / f"models--{repo_id.replace('/', '--')}"
        snap = store / "snapshots" / commit
        snap.mkdir(parents=True)
        for f in os.listdir(folder_path):
            if f in allow_patterns:
                shutil.copy(os.path.join(folder_path, f), snap / f)
        (store / "refs").mkdir()
        (store / "refs" / "main").write_text(commit)
        return type("CommitInfo", (), {"oid": commit})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RECONTEXT_MODELS_DIR", raising=False)

    make_dresscode(tmp_path / "DressCode")
    manifest = tmp_path / "dresscode.csv"
    assert cli.main(["prepare-data", "dresscode", str(tmp_path / "DressCode"), "--out", str(manifest)]) == 0
    ckpt = tmp_path / "ckpt"
    report = _train(capsys, manifest, ckpt, "--push-to-hub", repo)
    assert report["pushed"]["repo"] == repo and report["pushed"]["commit"] == commit
    assert [c[:2] for c in calls] == [("create_repo", repo), ("upload_folder", repo)]
    assert sorted(calls[1][2]["allow_patterns"]) == ["README.md", "config.json", "hyperlora.safetensors"]
    card = (ckpt / "README.md").read_text()
    assert "| steps | 2 " in card and "dresscode.csv (6 garment" in card and "preset | `tiny`" in card
    assert f"RECONTEXT_HYPERLORA={repo} " in card
    assert str(tmp_path) not in card  # no path of this machine on the Hub
    assert (ckpt / "training_state.pt").exists()
    assert not (cache / "models--someone--hyperlora-dresscode" / "snapshots" / commit / "training_state.pt").exists()

    # from_pretrained by repo id: the same weights as the local folder
    unet, dim = studio.models.pipe.unet, studio.models.pipe.image_encoder.config.hidden_size
    local = HyperLoRA.load(str(ckpt), unet, dim)
    hub = HyperLoRA.from_pretrained(repo, unet, dim)
    assert all(torch.equal(v, hub.state_dict()[k]) for k, v in local.state_dict().items())
    # RECONTEXT_HYPERLORA=REPO, as the garment tab's checkpoint menu and `dress` use it
    monkeypatch.setenv("RECONTEXT_HYPERLORA", repo)
    assert hyperlora_checkpoint(studio.bench) == str(cache / "models--someone--hyperlora-dresscode" / "snapshots" / commit)
    from_hub, _ = predict(studio.bench, garment(3))
    from_folder, _ = predict(studio.bench, garment(3), checkpoint=str(ckpt))
    assert from_hub.keys() == from_folder.keys()
    assert all(torch.equal(from_hub[k], from_folder[k]) for k in from_hub)
    # a repo id in the models mirror's layout (RECONTEXT_MODELS_DIR/ORG/NAME) is read from there
    mirror = tmp_path / "mirror"
    shutil.copytree(cache / "models--someone--hyperlora-dresscode" / "snapshots" / commit, mirror / repo)
    monkeypatch.setenv("RECONTEXT_MODELS_DIR", str(mirror))
    assert HyperLoRA.from_pretrained(repo, unet, dim).config.trained_steps == 2
    # offline and absent: a clear error
    with pytest.raises(ValueError, match="someone/absent.*offline, and not in the local Hub cache"):
        HyperLoRA.from_pretrained("someone/absent")
