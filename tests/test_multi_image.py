"""Prompts that show several images: two images of different sizes in one prompt (beside a one-image prompt
in the same padded batch) for LLaVA-1.5, LLaVA-OneVision, Qwen2-VL, Idefics3, Gemma 3 and InternVL.

- traced generation is token-identical to plain generation, and the records (VAR, the per-image split of
  VAR, maps) equal eager `output_attentions` at 1e-5;
- every tile names the right image: its cells are that image's tokens, and a cell's pixels painted white in
  that image light exactly that cell of that tile in the processor's own pixel values;
- `afip-probe trace --images MANIFEST.jsonl` then `afip-probe heatmap` draws both images, each with its map.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import afip_probe
from afip_probe.models import adapter_for, tiny

from . import families
from .test_families import _at_positions
from .test_geometry import _blocks, _cell_pixels, _painted

SIZES = [(64, 48), (30, 50), (40, 40)]  # the two images of sample 0, then sample 1's one
NEW_TOKENS = 4


def _qwen_tile_pixels(processor, image):
    """Qwen2-VL's patches of one image re-assembled into [C, H, W] (`Qwen2VLImageProcessor` flattens them merge
    window by merge window: (t, h/m, w/m, m, m) x (C, T, p, p))."""
    ip = processor.image_processor
    out = ip(images=[image], do_normalize=False, return_tensors="np")
    _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
    m, p, t = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    a = out["pixel_values"].reshape(gh // m, gw // m, m, m, 3, t, p, p)[:, :, :, :, :, 0]
    return [a.transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * p, gw * p)]


def _first(key):
    def pixels(processor, image):
        out = processor.image_processor(images=[[image]] if key == "nested" else [image], do_normalize=False,
                                        return_tensors="np")["pixel_values"]
        return list(out[0]) if key in ("nested0", "onevision") else list(out)
    return pixels


def _idefics3_pixels(processor, image):
    return list(processor.image_processor(images=[[image]], do_normalize=False, return_tensors="np")["pixel_values"][0])


def _onevision_base(processor, image):
    """In a prompt of several images OneVision shows each as its base image only: the processor's first tile."""
    return [processor.image_processor(images=[image], do_normalize=False, return_tensors="np")["pixel_values"][0][0]]


FAMILIES = {
    "llava": (lambda: tiny.tiny_llava(layers=2, heads=4, kv_heads=2), _first("flat")),
    "llava_onevision": (families.llava_onevision, _onevision_base),
    "qwen2_vl": (lambda: tiny.tiny_qwen2_vl("qwen2_vl"), _qwen_tile_pixels),
    "idefics3": (families.idefics3, _idefics3_pixels),
    "gemma3": (families.gemma3, _first("nested")),
    "internvl": (families.internvl, _first("flat")),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request):
    model, processor = FAMILIES[request.param][0]()
    images = tiny.random_images(3, seed=5, sizes=SIZES)
    return request.param, model, processor, images


def test_two_images_trace_as_eager_attends(built):
    name, model, processor, images = built
    adapter = adapter_for(model, processor)
    inputs = adapter.build_inputs([[images[0], images[1]], images[2]], ["compare the images", "describe"])
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    before = model.config.text_config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        eager = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                               output_attentions=True, return_dict_in_generate=True)
    finally:
        model.set_attn_implementation(before)
    with afip_probe.trace(model, processor, level="maps", array_dtype="float32") as rec:
        traced = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    assert torch.equal(plain, traced) and torch.equal(eager.sequences, traced), name
    is_image = inputs["input_ids"] == adapter.image_token_id
    pad = (inputs["attention_mask"] == 0).sum(-1)
    two, one = rec.traces
    assert two.layout.num_images == 2 and one.layout.num_images == 1 and one.image_var is None
    prompt = inputs["input_ids"].shape[1]
    for b, tr in enumerate(rec.traces):
        img = is_image[b].nonzero().flatten()
        assert tr.layout.positions == (img - pad[b]).tolist()
        owner = torch.tensor(tr.layout.image_of_slots())
        for t, step in enumerate(eager.attentions):
            for layer, row in enumerate([a[b, :, -1, :].float() for a in step if a is not None]):
                a = _at_positions(row, prompt + t)[:, img]  # [H, n]
                np.testing.assert_allclose(tr.head["var"][t, layer], a.sum(-1).numpy(), atol=1e-5, rtol=0)
                np.testing.assert_allclose(tr.maps[t, layer], a.mean(0).numpy(), atol=1e-5, rtol=0)
                if tr.image_var is not None:
                    for i in range(2):
                        np.testing.assert_allclose(tr.image_var[t, layer, :, i], a[:, owner == i].sum(-1).numpy(),
                                                   atol=1e-5, rtol=0, err_msg=f"{name} image {i}")


def test_every_tile_names_its_image_and_lies_on_it(built):
    """Tiles of the two-image prompt: each names its image, its cells are that image's tokens, and a cell's
    pixels painted in that image light exactly that cell of the processor's tile."""
    name, model, processor, images = built
    pixels = FAMILIES[name][1]
    adapter = adapter_for(model, processor)
    blank = [Image.new("RGB", im.size) for im in images[:2]]
    inputs = adapter.build_inputs([blank], ["compare the images"])
    layout = adapter.layouts(inputs)[0]
    tiles = adapter.sample_tiles(layout, inputs["input_ids"][0].tolist(), [im.size for im in blank])
    owner = np.asarray(layout.image_of_slots())
    assert {t.image for t in tiles} == {0, 1}
    assert sorted(c for t in tiles for c in t.cells) == sorted(set(c for t in tiles for c in t.cells))
    for i, image in enumerate(blank):
        mine = [t for t in tiles if t.image == i]
        assert all((owner[list(t.cells)] == i).all() for t in mine), name
        black = pixels(processor, image)
        assert len(black) == len(mine), (name, i, len(black), [t.kind for t in mine])
        width, height = image.size
        for j, tile in enumerate(mine):
            k = len(tile.cells) // 2
            mask = _cell_pixels(tile, k, width, height)
            bright = _blocks(pixels(processor, _painted(mask))[j], tile.grid) - _blocks(black[j], tile.grid)
            r, c = divmod(k, tile.grid[1])
            assert bright[r, c] > 0.8, (name, i, tile.kind, bright.round(2))
            assert np.delete(bright.ravel(), k).max() < 0.2, (name, i, tile.kind, bright.round(2))


@pytest.fixture(scope="module")
def manifest_store(tmp_path_factory):
    """`afip-probe trace --images MANIFEST.jsonl` (one image in a subfolder): one sample of two images with its
    own prompt, and one of a single image, on a saved Idefics3."""
    from afip_probe.cli import main

    root = tmp_path_factory.mktemp("manifest")
    model, processor = families.idefics3()
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    (root / "pics" / "sub").mkdir(parents=True)
    for name, im in zip(["a.png", "sub/b.png"], tiny.random_images(2, seed=9, sizes=SIZES[:2])):
        im.save(root / "pics" / name)
    manifest = root / "pics" / "pairs.jsonl"
    manifest.write_text(json.dumps({"images": ["a.png", "sub/b.png"], "prompt": "compare"}) + "\n" +
                        json.dumps({"images": ["sub/b.png"], "id": "b alone"}) + "\n")
    rc = main(["trace", "--model", str(root / "model"), "--images", str(manifest), "--out", str(root / "s"),
               "--record", "maps", "--max-new-tokens", "3", "--device", "cpu", "--no-progress"])
    assert rc == 0
    return root


def test_a_manifest_traces_two_images_and_the_heatmap_draws_both(manifest_store, tmp_path):
    """The two-image row lists both images, per-image VAR is stored and adds up to VAR (the one-image sample
    has none), and `afip-probe heatmap` draws each image with its own map."""
    from afip_probe import store as st
    from afip_probe.cli import main
    from afip_probe.records import sample_images

    store = st.open(manifest_store / "s")
    rows = store.samples("ok").set_index("sample_id")
    row = rows.loc["a+sub/b"]
    assert row.prompt == "compare" and rows.loc["b alone"].prompt == afip_probe.records.DEFAULT_PROMPT
    pics = manifest_store / "pics"
    assert [im.path for im in sample_images(row)] == [str(pics / "a.png"), str(pics / "sub" / "b.png")]
    arrays = store.arrays("a+sub/b")
    np.testing.assert_allclose(arrays["per_image/var"].astype(np.float32).sum(-1),
                               arrays["head/var"].astype(np.float32), atol=2e-3)
    assert "per_image/var" not in store.arrays("b alone")
    out = tmp_path / "map.png"
    assert main(["heatmap", str(store.root), "a+sub/b", "--step", "1", "--out", str(out)]) == 0 and out.exists()
    from afip_probe.plots.store_maps import token_heatmap
    fig = token_heatmap(store, "a+sub/b", step=1)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("image 0") for t in titles) and any(t.startswith("image 1") for t in titles)
    sizes = {ax.images[0].get_array().shape[:2] for ax in fig.axes if ax.images}
    assert {(48, 64), (50, 30)} <= sizes  # each image drawn at its own size
    import matplotlib.pyplot as plt

    plt.close("all")


def test_the_explorer_draws_each_image_with_its_own_map(manifest_store, tmp_path):
    """The explorer page: one canvas per image of the sample, each coloured by the cells of its own tiles."""
    from afip_probe.plots.explorer import write_explorer

    from .browser import chromium

    page = write_explorer([manifest_store / "s"], tmp_path / "explore")
    payloads = {json.loads(f.read_text().split(",", 1)[1].rsplit(");", 1)[0])["id"]: json.loads(
        f.read_text().split(",", 1)[1].rsplit(");", 1)[0]) for f in (tmp_path / "explore" / "data").glob("s*.js")}
    two = payloads["a+sub/b"]
    assert [(im["width"], im["height"]) for im in two["images"]] == [(64, 48), (30, 50)]
    cells = [sorted(c for t in im["tiles"] for c in t["cells"]) for im in two["images"]]
    assert cells[0] and cells[1] and max(cells[0]) < min(cells[1])
    browser = chromium(tmp_path)
    try:
        browser.get(page.resolve().as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 60).until(lambda d: d.find_element("id", "heatmap").get_attribute("data-values"))
        browser.execute_script("return AFIP.show(AFIP_INDEX.samples.findIndex(s => s.id === 'a+sub/b'))")
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element("id", "heatmap").get_attribute("data-sample") == "a+sub/b"
            and d.find_element("id", "heatmap").get_attribute("data-values"))
        canvases = browser.find_elements("css selector", "#heatmap canvas")
        assert len(canvases) == 2
        shapes = [(int(c.get_attribute("width")), int(c.get_attribute("height"))) for c in canvases]
        assert shapes[0][0] == shapes[1][0] and shapes[0][1] < shapes[0][0] < shapes[1][1]  # 64x48, 30x50
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        browser.quit()


def test_chair_ground_truth_of_a_sample_is_the_union_of_its_images_objects():
    import pandas as pd

    from afip_probe.metrics.chair import Chair
    from afip_probe.metrics.labels import label_tokens

    chair = Chair({1: {"dog"}, 2: {"cat"}})
    text = "a dog and a cat"
    tokens = pd.DataFrame({"sample_id": "s", "step": range(5), "char_start": [0, 2, 6, 10, 12],
                           "char_end": [1, 5, 9, 11, 15]})
    both = pd.DataFrame([{"sample_id": "s", "image_id": 1, "image_ids": [1, 2], "output_text": text}])
    first = pd.DataFrame([{"sample_id": "s", "image_id": 1, "image_ids": [1], "output_text": text}])
    assert list(label_tokens(tokens, both, chair).label.astype(str)) == ["none", "real", "none", "none", "real"]
    assert list(label_tokens(tokens, first, chair).label.astype(str))[-1] == "hallucinated"
    missing = pd.DataFrame([{"sample_id": "s", "image_id": 1, "image_ids": [1, 3], "output_text": text}])
    out = label_tokens(tokens, missing, chair)
    assert (out.label == "none").all() and "image id 3" in out.attrs["warnings"][0]


def test_folders_are_searched_recursively_with_readable_unique_ids(tmp_path):
    from afip_probe.images import collect_images

    for name in ["x.png", "sub/x.png", "sub/deeper/y.jpg", ".hidden/z.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    items = collect_images([tmp_path])
    assert [it.sample_id for it in items] == ["sub/deeper/y", "sub/x", "x"]
    assert len({it.sample_id for it in items}) == len(items)
