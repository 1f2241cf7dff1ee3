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


def test_a_manifest_traces_two_images_and_the_heatmap_draws_both(tmp_path, capsys):
    """`--images MANIFEST.jsonl` (images in a subfolder): one sample of two images with its own prompt; its
    row lists both images, per-image VAR is stored and adds up to VAR, and `afip-probe heatmap` draws each
    image with its own map."""
    from afip_probe import store as st
    from afip_probe.cli import main
    from afip_probe.records import sample_images

    model, processor = families.idefics3()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    for name, im in zip(["a.png", "sub/b.png"], tiny.random_images(2, seed=9, sizes=SIZES[:2])):
        im.save(tmp_path / "pics" / name)
    manifest = tmp_path / "pics" / "pairs.jsonl"
    manifest.write_text(json.dumps({"images": ["a.png", "sub/b.png"], "prompt": "compare"}) + "\n")
    rc = main(["trace", "--model", str(tmp_path / "model"), "--images", str(manifest), "--out", str(tmp_path / "s"),
               "--record", "maps", "--max-new-tokens", "3", "--device", "cpu", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    store = st.open(tmp_path / "s")
    row = store.samples("ok").iloc[0]
    assert row.sample_id == "a+sub/b" and row.prompt == "compare"
    assert [im.path for im in sample_images(row)] == [str(tmp_path / "pics" / "a.png"),
                                                      str(tmp_path / "pics" / "sub" / "b.png")]
    arrays = store.arrays(row.sample_id)
    np.testing.assert_allclose(arrays["per_image/var"].astype(np.float32).sum(-1),
                               arrays["head/var"].astype(np.float32), atol=2e-3)
    out = tmp_path / "map.png"
    assert main(["heatmap", str(store.root), row.sample_id, "--step", "1", "--out", str(out)]) == 0
    from afip_probe.plots.store_maps import token_heatmap
    fig = token_heatmap(store, row.sample_id, step=1)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("image 0") for t in titles) and any(t.startswith("image 1") for t in titles)
    sizes = {ax.images[0].get_array().shape[:2] for ax in fig.axes if ax.images}
    assert {(48, 64), (50, 30)} <= sizes  # each image drawn at its own size
    import matplotlib.pyplot as plt

    plt.close("all")


def test_folders_are_searched_recursively_with_readable_unique_ids(tmp_path):
    from afip_probe.images import collect_images

    for name in ["x.png", "sub/x.png", "sub/deeper/y.jpg", ".hidden/z.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    items = collect_images([tmp_path])
    assert [it.sample_id for it in items] == ["sub/deeper/y", "sub/x", "x"]
    assert len({it.sample_id for it in items}) == len(items)
