"""The launched app answers through gradio_client, and bad input leaves it serving."""

import os

import pytest
from gradio_client import Client, handle_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAT = os.path.join(ROOT, "assets", "photos", "chelsea.png")


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def reconstruct(client, path, steps=4, methods=("ddim", "edit-friendly")):
    return client.predict(handle_file(path), "a cat", list(methods), ["plain", "tight"], 0.4,
                          steps, 0, api_name="/reconstruct")


def test_reconstruct_endpoint(client):
    out = reconstruct(client, CAT)
    sliders, table = out[:-2], out[-2]
    assert len(table["data"]) == 4
    shown = [s for s in sliders if s.get("visible")]
    assert len(shown) == 4 and all(len(s["value"]) == 2 for s in shown)
    assert all(str(p).endswith(".png") for s in shown for p in s["value"])


def test_bad_inputs_leave_the_app_serving(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(Exception, match="not an image"):
        reconstruct(client, str(text))
    with pytest.raises(Exception, match="maximum"):
        reconstruct(client, CAT, steps=5000)
    with pytest.raises(Exception, match="at least one method"):
        reconstruct(client, CAT, methods=())
    assert len(reconstruct(client, CAT, steps=2)[-2]["data"]) == 4


def test_edit_endpoints(client):
    rec, out, table, notes = client.predict(
        handle_file(CAT), "a cat", "a tiger", "ddim", True, 0.4, 7.5, 3, 0, api_name="/edit")
    assert len(rec) == 2 and len(out) == 2 and len(table["data"]) == 1
    gallery, plot, table, notes = client.predict(
        handle_file(CAT), "a cat", "a tiger", "ddim", "0, 0.5, 1", 7.5, 3, 0, api_name="/edit_sweep")
    assert len(gallery) == 3 and len(table["data"]) == 3 and plot is not None
    with pytest.raises(Exception, match="target prompt is empty"):
        client.predict(handle_file(CAT), "a cat", "", "ddim", True, 0.4, 7.5, 3, 0, api_name="/edit")


def test_review_endpoints(client):
    """A run from the inversion tab becomes an item: next_item shows it blind, rate records
    it and reveals the methods, summary counts it."""
    reconstruct(client, CAT, steps=2, methods=("ddim",))  # 2 outputs: ddim, ddim+tight
    out = client.predict("rater-api", api_name="/next_item")
    item_id, info, source, images = out[0], out[1], out[2], out[3:11]
    assert item_id and source
    shown = [im for im in images if im.get("visible", True) and im.get("value")]
    assert len(shown) >= 2
    assert "ddim" not in str(out) and "tight" not in str(out)
    scores = [4] * len(shown) + [None] * (8 - len(shown))
    before = client.predict(api_name="/summary")[0]
    result = client.predict("rater-api", item_id, *scores, *scores, "fine", True, api_name="/rate")
    assert "was `ddim" in result and "A" in result
    table, plot, stats, wins, csv = client.predict(api_name="/summary")
    assert table["data"] != before["data"] and "rater" in stats and csv.endswith(".csv")
    assert any(row[1].startswith("ddim") for row in table["data"])
    with pytest.raises(Exception, match="not in the list of choices"):  # Gradio checks radios
        client.predict("rater-api", item_id, *([9] * 8), *scores, "", True, api_name="/rate")
    with pytest.raises(Exception, match="fidelity of output B is missing"):
        client.predict("rater-api", item_id, 4, *[None] * 7, *scores, "", True, api_name="/rate")
    with pytest.raises(Exception, match="rater"):
        client.predict("", item_id, *scores, *scores, "", True, api_name="/rate")


def _bad_files(tmp_path):
    import numpy as np
    from PIL import Image

    cat = Image.open(CAT).convert("RGB")
    cut = tmp_path / "cut.jpg"
    cat.save(cut, "JPEG")
    cut.write_bytes(cut.read_bytes()[:1500])
    huge = tmp_path / "huge.png"
    ramp = np.linspace(0, 255, 6000, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (6000, 1))] * 3, axis=-1)).save(huge)
    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)).save(deep)
    rgba = tmp_path / "rgba.png"
    cat.convert("RGBA").save(rgba)
    return cut, huge, deep, rgba


def test_bad_inputs_end_to_end(client, tmp_path):
    """Each bad input gives a clear error or a clear note; the server answers the next
    normal request every time."""
    cut, huge, deep, rgba = _bad_files(tmp_path)
    with pytest.raises(Exception, match="corrupt or truncated"):
        reconstruct(client, str(cut), steps=2, methods=("ddim",))
    for path, note in ((huge, "6000×6000"), (deep, "16-bit"), (rgba, "transparen")):
        notes = reconstruct(client, str(path), steps=2, methods=("ddim",))[-1]
        assert note.lower() in notes.lower(), notes
    long = "a cat " * 340  # 2,040 characters
    notes = reconstruct(client, CAT, steps=2, methods=("ddim",))[-1]
    out = client.predict(handle_file(CAT), long, ["ddim"], ["plain"], 0.4, 2, 0, api_name="/reconstruct")
    assert "cut off" in out[-1]
    with pytest.raises(Exception, match="target prompt is empty"):
        client.predict(handle_file(CAT), "a cat", "   ", "ddim", True, 0.4, 7.5, 2, 0, api_name="/edit")
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict(handle_file(CAT), "", ["hyperlora"], 1.0, 0.6, 10, "", 2, 0, api_name="/dress")
    for args, field in (((9.0, 2, 0), "image_scale"), ((0.4, 2, -1), "seed"), ((0.4, 0, 0), "steps")):
        with pytest.raises(Exception, match=f"{field}|minimum value|maximum value"):
            client.predict(handle_file(CAT), "a cat", ["ddim"], ["tight"], *args, api_name="/reconstruct")
    assert len(reconstruct(client, CAT, steps=2)[-2]["data"]) == 4
    assert "Saved as run" in notes


def test_dress_endpoint(client):
    shirt = os.path.join(ROOT, "assets", "garments", "green-plain-t-shirt.png")
    out = client.predict(handle_file(shirt), "a person on a beach", ["hyperlora", "ip-adapter"],
                         1.0, 0.6, 10, "", 3, 0, api_name="/dress")
    images, table, notes = out[:3], out[3], out[4]
    assert [r[0] for r in table["data"]] == ["hyperlora", "ip-adapter"]
    assert sum(1 for im in images if im.get("visible", True) and im.get("value")) == 2
    assert "Saved as run" in notes


def test_edit_methods_and_compare_endpoints(client):
    rec, out, table, notes = client.predict(
        handle_file(CAT), "a cat", "a tiger", "ddim", True, 0.4, 7.5, 3, 0, "prompt-to-prompt",
        0.6, 0.3, "tiger=2", 5.0, 0.9, api_name="/edit")
    assert table["data"][0][0] == "prompt-to-prompt"
    gallery, table, notes = client.predict(
        handle_file(CAT), "a cat", "a tiger", "ddim", 0.4, 7.5, 2, 0, 0.8, 0.4, "", 5.0, 0.9,
        api_name="/edit_compare")
    assert len(gallery) == 6 and len(table["data"]) == 6
    assert {r[0] for r in table["data"]} == {"regenerate", "prompt-to-prompt", "ledits++"}
    assert "saved" in notes.lower()
