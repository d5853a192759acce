"""The launched app answers through gradio_client, and bad input leaves it serving."""

import os

import pytest
from gradio_client import Client, handle_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAT = os.path.join(ROOT, "assets", "photos", "chelsea.png")


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def is_image(value) -> bool:
    """An image as gradio_client hands it back: a local file path."""
    return isinstance(value, str) and os.path.exists(value)


def plain(out, pairs=False):
    """An endpoint's answer: one JSON dict first, then its images (or image pairs), None
    for one not made, as many as the dict's "images" names. Returns (dict, {name: image})."""
    result, images = out[0], list(out[1:])
    assert isinstance(result, dict), type(result)
    assert not any(isinstance(v, dict) and ("__type__" in v or "visible" in v) for v in (result, *images))
    assert len(images) == len(result["images"])
    for im in images:
        if pairs:
            assert im is None or (len(im) == 2 and all(is_image(p) for p in im)), im
        else:
            assert im is None or is_image(im), im
    return result, dict(zip(result["images"], images))


def ran(result) -> set:
    """The image names a result's runs made (inversion: "method" or "method + tight")."""
    return {r["method"] + (" + tight" if r.get("tight") else "") for r in result["runs"]}


def reconstruct(client, path, steps=4, methods=("ddim", "edit-friendly")):
    return client.predict(photo=handle_file(path), prompt="a cat", methods=list(methods),
                          variants=["plain", "tight"], image_scale=0.4, steps=steps, seed=0,
                          api_name="/reconstruct")


def test_reconstruct_endpoint(client):
    result, pairs = plain(reconstruct(client, CAT), pairs=True)
    assert len(result["runs"]) == 4 and ran(result) == {n for n, p in pairs.items() if p is not None}
    assert all(str(p).endswith(".png") for pair in pairs.values() if pair for p in pair)
    assert all(isinstance(r["psnr"], float) and (r["lpips"] is None or isinstance(r["lpips"], float))
               for r in result["runs"])


def test_bad_inputs_leave_the_app_serving(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(Exception, match="not an image"):
        reconstruct(client, str(text))
    with pytest.raises(Exception, match="maximum"):
        reconstruct(client, CAT, steps=5000)
    with pytest.raises(Exception, match="at least one method"):
        reconstruct(client, CAT, methods=())
    assert len(reconstruct(client, CAT, steps=2)[0]["runs"]) == 4


def test_every_endpoint_has_named_parameters_with_the_pages_defaults(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/reconstruct", "/edit", "/edit_sweep", "/dress", "/next_item", "/rate",
            "/summary", "/next_pair", "/vote"} <= set(api)
    for name, endpoint in api.items():
        for p in endpoint["parameters"]:
            assert not p["parameter_name"].startswith("param_"), (name, p["parameter_name"])
    params = {name: {p["parameter_name"]: p for p in e["parameters"]} for name, e in api.items()}
    assert params["/reconstruct"]["prompt"]["parameter_has_default"]
    assert params["/reconstruct"]["steps"]["type"]["type"] == "integer"
    assert params["/dress"]["seed"]["parameter_default"] == 0
    assert params["/dress"]["hyperlora_scale"]["parameter_default"] == 1.0  # from the spec
    assert params["/dress"]["ip_adapter_scale"]["parameter_default"] == 0.6
    assert params["/edit"]["cross_replace"]["parameter_default"] == 0.8
    assert list(params["/rate"]) == ["rater", "item_id", "view_token", "scores", "comment", "reveal"]
    assert list(params["/next_pair"]) == ["rater"]
    assert list(params["/vote"]) == ["rater", "item_id", "view_token", "choice"]


def test_reconstruct_without_a_prompt_and_bad_numbers_name_the_field(client):
    out = client.predict(photo=handle_file(CAT), methods=["ddim"], variants=["plain"], steps=2,
                         api_name="/reconstruct")
    assert len(plain(out, pairs=True)[0]["runs"]) == 1
    for kwargs, message in ((dict(steps=1.5), "Steps must be a whole number"),
                            (dict(seed=1.5), "Seed must be a whole number"),
                            (dict(steps="abc"), "Steps must be a number"),
                            (dict(methods=None), "at least one method")):
        with pytest.raises(Exception, match=message):
            client.predict(photo=handle_file(CAT), **{"methods": ["ddim"], "steps": 2, **kwargs},
                           api_name="/reconstruct")


def test_edit_endpoints(client):
    result, pairs = plain(client.predict(
        photo=handle_file(CAT), source="a cat", target="a tiger", steps=3, api_name="/edit"), pairs=True)
    assert len(result["runs"]) == 1 and all(p is not None for p in pairs.values())
    result, gallery = client.predict(
        photo=handle_file(CAT), source="a cat", target="a tiger", scales="0, 0.5, 1", steps=3,
        api_name="/edit_sweep")
    assert isinstance(result, dict) and result["kind"] == "sweep"
    assert len(gallery) == 3 == len(result["runs"]) == len(result["images"])
    assert [r["image_scale"] for r in result["runs"]] == [0, 0.5, 1]
    assert all(is_image(g["image"]) for g in gallery)
    with pytest.raises(Exception, match="target prompt is empty"):
        client.predict(handle_file(CAT), "a cat", "", "ddim", True, 0.4, 7.5, 3, 0, api_name="/edit")


def test_review_endpoints(client, app_data):
    """A run from the inversion tab becomes an item: next_item shows it blind with a view
    token, rate records it (only with that token) and reveals the methods, summary counts it.
    Other tests share the app and its data folder (the browser's runs may be served first):
    what is served is checked against that run's own record."""
    from recontext.runs import RunStore

    reconstruct(client, CAT, steps=2, methods=("ddim",))  # 2 outputs: ddim, ddim+tight
    out = client.predict("rater-api", api_name="/next_item")
    result, source, images = out[0], out[1], out[2:]
    assert isinstance(result, dict) and is_image(source) and len(images) == 12
    item_id, token, prompts = result["item_id"], result["view_token"], result["prompts"]
    record = RunStore(os.path.join(app_data, "runs")).get(item_id)
    methods = [o["method"] for o in record["outputs"]]
    assert item_id and token and prompts.startswith("Caption: ") and len(methods) >= 2
    shown = [im for im in images if im is not None]
    assert len(shown) >= 2 and all(is_image(im) for im in shown) and len(result["labels"]) == len(shown)
    assert all(im is None for im in images[len(shown):])
    assert len(shown) == len(methods) and not any(m in str(out) for m in methods)
    scores = {label: {"fidelity": 4, "realism": 3} for label in "ABCDEFGHIJKL"[:len(shown)]}
    before = client.predict(api_name="/summary")[0]["methods"]
    rate = dict(rater="rater-api", item_id=item_id, view_token=token, api_name="/rate")
    with pytest.raises(Exception, match="fidelity must be from 1 to 5"):
        client.predict(**rate, scores={**scores, "A": {"fidelity": 9, "realism": 3}})
    with pytest.raises(Exception, match="fidelity of output B is missing"):
        client.predict(**rate, scores={"A": scores["A"]})
    with pytest.raises(Exception, match="rater"):
        client.predict(**{**rate, "rater": ""}, scores=scores)
    with pytest.raises(Exception, match="not a run"):
        client.predict(**{**rate, "item_id": "x" * 300}, scores=scores)
    with pytest.raises(Exception, match="shown to rater 'rater-api', not 'someone-else'"):
        client.predict(**{**rate, "rater": "someone-else"}, scores=scores)
    with pytest.raises(Exception, match="view_token"):
        client.predict(**{**rate, "view_token": ""}, scores=scores)
    result = client.predict(**{**rate, "rater": "Rater-API"}, scores=scores, comment="fine")["message"]  # one rater
    assert all(f"`{m}`" in result for m in methods) and "A" in result  # each method revealed
    with pytest.raises(Exception, match="already rated"):  # the methods were revealed
        client.predict(**rate, scores=scores)
    report, csv = client.predict(api_name="/summary")
    stats = report["text"]
    # other tests sharing the app may have rated too: the summary changed, in plain English
    assert report["methods"] != before and "ratings from" in stats and "1 raters" not in stats
    assert csv.endswith(".csv") and "bradley_terry" in report and "coverage" in report
    assert {row["method"] for row in report["methods"]} >= set(methods)
    with open(csv) as f:
        header = f.readline()
    assert "rater" in header and "label" not in header and "position" not in header


def test_pairwise_endpoints(client):
    """/next_pair gives {item_id, view_token, prompts}, A, B and the source; /vote takes A,
    B, tie or both_bad with that token, once; /summary's JSON ranks by Bradley–Terry."""
    reconstruct(client, CAT, steps=2, methods=("ddim",))
    shown, a, b, source = client.predict("voter-api", api_name="/next_pair")
    assert set(shown) >= {"item_id", "view_token", "prompts"} and a and b and source
    assert os.path.basename(a) != os.path.basename(b) and "ddim" not in str(shown)
    vote = dict(rater="voter-api", item_id=shown["item_id"], view_token=shown["view_token"], api_name="/vote")
    with pytest.raises(Exception, match="choice must be one of A, B, tie, both_bad"):
        client.predict(**vote, choice="left")
    with pytest.raises(Exception, match="shown to rater"):
        client.predict(**{**vote, "rater": "other"}, choice="A")
    answer = client.predict(**vote, choice="A")
    assert isinstance(answer, dict) and answer["choice"] == "A"
    text = answer["message"]
    assert "Vote saved" in text and "A was `" in text
    with pytest.raises(Exception, match="already voted"):
        client.predict(**vote, choice="B")
    report = client.predict(api_name="/summary")[0]
    ranking = report["bradley_terry"]
    assert ranking and {"method", "strength", "low", "high"} <= set(ranking[0])
    assert report["votes"] >= 1


def test_uploads_over_the_limit_are_refused(app_url, tmp_path):
    """The app under test runs with the default limit, 20 MB: a bigger upload is refused
    before it is stored; a small one is taken."""
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(21 * 1024 * 1024))
    with open(big, "rb") as f:
        r = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=120)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    with open(CAT, "rb") as f:
        r = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("cat.png", f, "image/png")}, timeout=60)
    assert r.status_code == 200


def test_the_upload_limit_is_configurable(monkeypatch):
    import app

    monkeypatch.delenv("RECONTEXT_MAX_FILE_SIZE", raising=False)
    assert app.max_file_size() == "20mb"
    monkeypatch.setenv("RECONTEXT_MAX_FILE_SIZE", "5mb")
    assert app.max_file_size() == "5mb"
    monkeypatch.setenv("RECONTEXT_MAX_FILE_SIZE", "1000")
    assert app.max_file_size() == 1000


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
        notes = " ".join(reconstruct(client, str(path), steps=2, methods=("ddim",))[0]["notes"])
        assert note.lower() in notes.lower(), notes
    long = "a cat " * 60  # 360 characters: more than the encoder's 77 tokens
    notes = " ".join(reconstruct(client, CAT, steps=2, methods=("ddim",))[0]["notes"])
    out = client.predict(photo=handle_file(CAT), prompt=long, methods=["ddim"], variants=["plain"],
                         steps=2, api_name="/reconstruct")
    assert "cut off" in " ".join(out[0]["notes"])
    with pytest.raises(Exception, match="at most 2000"):  # refused before tokenizing (issue 37)
        client.predict(photo=handle_file(CAT), prompt="a cat " * 340, methods=["ddim"], variants=["plain"],
                       steps=2, api_name="/reconstruct")
    with pytest.raises(Exception, match="target prompt is empty"):
        client.predict(photo=handle_file(CAT), source="a cat", target="   ", steps=2, api_name="/edit")
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict(garment=handle_file(CAT), prompt="", methods=["hyperlora"], steps=2,
                       api_name="/dress")
    with pytest.raises(Exception, match="not in the list of choices"):  # no client-given paths
        client.predict(garment=handle_file(CAT), prompt="a person", checkpoint="/etc",
                       steps=2, api_name="/dress")
    for args, field in (((9.0, 2, 0), "image_scale"), ((0.4, 2, -1), "seed"), ((0.4, 0, 0), "steps")):
        with pytest.raises(Exception, match=f"{field}|minimum value|maximum value"):
            client.predict(photo=handle_file(CAT), methods=["ddim"], variants=["tight"],
                           image_scale=args[0], steps=args[1], seed=args[2], api_name="/reconstruct")
    assert len(reconstruct(client, CAT, steps=2)[0]["runs"]) == 4
    assert "Saved as run" in notes


def test_wrong_values_name_the_field_and_log_no_traceback(client, app_log):
    """A client's bad value is the client's error: a message naming the field, and no
    Python traceback in the server's log (Gradio prints one for its own range and choice
    checks)."""
    cat, shirt = handle_file(CAT), handle_file(os.path.join(ROOT, "assets", "garments",
                                                            "green-plain-t-shirt.png"))
    one = dict(photo=cat, methods=["ddim"], variants=["plain"], api_name="/reconstruct")
    edit = dict(photo=cat, source="a cat", target="a tiger", steps=2, api_name="/edit")
    cases = [
        ({**one, "steps": "abc"}, "Steps must be a number"),
        ({**one, "steps": 5000}, "Steps: .*maximum value"),
        ({**one, "steps": 2, "seed": -1}, "Seed: .*minimum value"),
        ({**one, "steps": 2, "methods": ["ddim", "foo"]}, "Methods: .*foo"),
        ({**edit, "method": "foo"}, "Inversion method: .*foo"),
        ({**edit, "tight": "abc"}, "Tight Inversion: give true or false"),
        ({**edit, "edit_method": "prompt-to-prompt", "cross_replace": 9},
         "Cross-attention replace: .*maximum value"),
        (dict(garment=shirt, prompt="a person", checkpoint="/etc", steps=2, api_name="/dress"),
         "HyperLoRA checkpoint: .*not in the list of choices"),
        (dict(rater="ana", item_id="x", view_token="", scores={}, reveal="abc", api_name="/rate"),
         "reveal must be true or false"),
    ]
    start = app_log.stat().st_size
    for kwargs, message in cases:
        with pytest.raises(Exception, match=message):
            client.predict(**kwargs)
    with open(app_log) as f:
        f.seek(start)
        assert "Traceback" not in f.read()


def test_dress_endpoint(client):
    shirt = os.path.join(ROOT, "assets", "garments", "green-plain-t-shirt.png")
    out = client.predict(garment=handle_file(shirt), prompt="a person on a beach", steps=3,
                         api_name="/dress")
    result, images = plain(out)
    from recontext import garment, presets

    assert [r["method"] for r in result["runs"]] == garment.page_methods(presets.get("tiny"))  # the page's default
    assert {"adapt_seconds", "generate_seconds", "setup_seconds", "cached"} <= set(result["runs"][0])
    assert {m for m, im in images.items() if im is not None} == ran(result)  # from the stated order
    assert next(r for r in result["runs"] if r["method"] == "prompt-only")["cached"] is None
    assert "Saved as run" in " ".join(result["notes"]) and result["run_id"]


def test_mcp_server_lists_the_four_tools(app_url):
    """The app under test runs with --mcp; an MCP client lists its tools."""
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def tools():
        async with streamablehttp_client(app_url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return (await session.list_tools()).tools

    listed = {t.name: t for t in asyncio.run(tools())}
    assert set(listed) == {"reconstruct", "edit", "dress", "summary"}
    assert "Tight Inversion" in listed["reconstruct"].description
    assert "steps" in listed["dress"].inputSchema["properties"]
    # Gradio's debugging schema (read by the Hugging Face MCP server) lists every named
    # endpoint; only these four are marked as tools, the rest as HTTP-API only
    import httpx

    schema = httpx.get(app_url + "gradio_api/mcp/schema", timeout=30).json()
    assert {t["name"] for t in schema if t["meta"]["mcp_type"] == "tool"} == set(listed)


def test_mcp_is_off_by_default(monkeypatch):
    import app

    monkeypatch.delenv("RECONTEXT_MCP", raising=False)
    assert app.parse_args([]).mcp is False and app.parse_args(["--mcp"]).mcp is True
    monkeypatch.setenv("RECONTEXT_MCP", "1")
    assert app.parse_args([]).mcp is True


def test_served_files_never_include_the_data_folder(client, app_url, app_data):
    """The review's secret and the raw ratings are not served, whatever the path."""
    import httpx

    data = client.predict(api_name="/summary")[1]  # an export, not the data folder's CSV
    assert data is None or str(app_data) not in data  # an export copy, never the data folder's file
    assert (app_data / ".blind-secret").exists()
    for name in (".blind-secret", "ratings.csv"):
        r = httpx.get(f"{app_url}gradio_api/file={app_data / name}")
        assert r.status_code in (403, 404), r.status_code


def test_edit_methods_and_compare_endpoints(client):
    result, _ = plain(client.predict(
        photo=handle_file(CAT), source="a cat", target="a tiger", method="ddim", tight=True, image_scale=0.4,
        guidance=7.5, steps=3, seed=0, edit_method="prompt-to-prompt", cross_replace=0.6, self_replace=0.3,
        reweight="tiger=2", api_name="/edit"), pairs=True)
    assert result["runs"][0]["edit_method"] == "prompt-to-prompt"
    result, gallery = client.predict(
        photo=handle_file(CAT), source="a cat", target="a tiger", method="ddim", image_scale=0.4, guidance=7.5,
        steps=2, seed=0, api_name="/edit_compare")
    assert isinstance(result, dict) and len(gallery) == 6 == len(result["runs"]) == len(result["images"])
    assert [g["caption"] for g in gallery] == result["images"]
    assert {r["edit_method"] for r in result["runs"]} == {"regenerate", "prompt-to-prompt", "ledits++"}
    assert "saved" in " ".join(result["notes"]).lower()
