"""Geometry of the families whose processors need torchvision (LFM2-VL, Llama 4, Mistral 3 / Pixtral), against
those real processors, with the real checkpoints' settings and non-square images (640x480, 300x500, 1000x200).

These tests are marked `vision`: the project's venv (CPU torch 2.13.0, no torchvision) skips them; `make test`
runs them in .venv-vision (`make test-vision`). The painted-cell check is that of tests/test_geometry.py: the
pixels the layout gives one cell, painted white, must light exactly that cell of that tile in the processor's
own pixel values. The tiny models also run end to end with the real processors: traced token-identically,
records equal to eager attention at 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from PIL import Image

import afip_probe
from afip_probe.models import adapter_for, tiny

from . import families
from .test_families import _at_positions
from .test_geometry import _blocks, _cell_pixels, _painted

pytestmark = pytest.mark.vision

SIZES = [(640, 480), (300, 500), (1000, 200)]
IDS = ["640x480", "300x500", "1000x200"]


def _lfm2_processor(**settings):
    """`Lfm2VlProcessor` with LFM2-VL-1.6B's image settings (the class defaults: 512 px tiles of 16 px patches
    merged 2x2, 2 to 10 tiles and a thumbnail, 64 to 256 tokens for a whole image), or `settings`."""
    tok = families.tokenizer("<image>", image_start_token="<|image_start|>", image_end_token="<|image_end|>",
                             image_thumbnail_token="<|img_thumbnail|>")
    return T.Lfm2VlProcessor(image_processor=T.Lfm2VlImageProcessor(**settings), tokenizer=tok,
                             chat_template=families.template("<image>"))


def _llama4_processor(size: int = 336, max_patches: int = 16, patch: int = 14):
    """`Llama4Processor` with Llama-4-Scout's settings (336 px tiles, at most 16, 14 px patches, pixel shuffle
    0.5: 144 tokens a tile), or smaller ones for the tiny model."""
    tok = families.tokenizer("<|patch|>")
    ip = T.Llama4ImageProcessor(size={"height": size, "width": size}, max_patches=max_patches)
    return T.Llama4Processor(image_processor=ip, tokenizer=tok, patch_size=patch, pixel_shuffle_ratio=0.5,
                             chat_template=families.template("<|image|>"))


def _pixtral_processor(longest: int = 1540, patch: int = 14):
    """`PixtralProcessor` with Mistral-Small-3.1's settings (longest edge 1540, 14 px patches, merged 2x2)."""
    tok = families.tokenizer("[IMG]", image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]")
    ip = T.PixtralImageProcessor(size={"longest_edge": longest}, patch_size=patch)
    return T.PixtralProcessor(image_processor=ip, tokenizer=tok, patch_size=patch, spatial_merge_size=2,
                              chat_template=families.template("[IMG]"))


def _lfm2_no_markers(**settings):
    """LFM2-VL's processor writing no ``<|image_start|>`` / tile tokens (``use_image_special_tokens=False``): the
    adapter then has the processor's tiling arithmetic only."""
    processor = _lfm2_processor(**settings)
    processor.use_image_special_tokens = False
    return processor


def _inputs(processor, images, **kwargs):
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"} for _ in images] + [{"type": "text", "text": "describe"}]}],
        add_generation_prompt=True)
    return processor(images=[list(images)], text=[prompt], return_tensors="pt", **kwargs)


def _lfm2_tiles_pixels(processor, image):
    """The processor's tiles of `image` as [C, H, W] arrays (pixel values unpatched), do_normalize off."""
    out = processor.image_processor(images=[[image]], do_normalize=False, return_tensors="pt")
    patch = processor.image_processor.encoder_patch_size
    tiles = []
    for pv, (h, w) in zip(out["pixel_values"], out["spatial_shapes"].tolist()):
        a = pv[: h * w].reshape(h, w, patch, patch, 3).permute(4, 0, 2, 1, 3).reshape(3, h * patch, w * patch)
        tiles.append(a.numpy())
    return tiles


def _llama4_tiles_pixels(processor, image):
    out = processor.image_processor(images=[image], do_normalize=False, return_tensors="pt")
    return [t.float().numpy() for t in out["pixel_values"]]


def _pixtral_pixels(processor, image):
    out = processor.image_processor(images=[image], do_normalize=False, return_tensors="pt")
    return [out["pixel_values"][0].float().numpy()]


FAMILIES = {
    "lfm2_vl": (families.lfm2_vl, _lfm2_processor, _lfm2_tiles_pixels),
    "lfm2_vl_no_markers": (families.lfm2_vl, _lfm2_no_markers, _lfm2_tiles_pixels),
    "llama4": (families.llama4, _llama4_processor, _llama4_tiles_pixels),
    "mistral3": (families.mistral3, _pixtral_processor, _pixtral_pixels),
}


#: LFM2-VL cuts images over about 1024² pixels into 512 px tiles (and a thumbnail): the sizes above, doubled
LARGE = [(1280, 960), (600, 1000), (2000, 400)]
CASES = [(name, size) for name in sorted(FAMILIES) for size in SIZES] + [
    ("lfm2_vl", size) for size in LARGE] + [("lfm2_vl_no_markers", LARGE[-1])]


@pytest.mark.parametrize("name,size", CASES, ids=[f"{n}-{w}x{h}" for n, (w, h) in CASES])
def test_a_cell_painted_through_the_layout_lands_on_that_cell(name, size):
    build, make_processor, pixels = FAMILIES[name]
    model, _ = build()
    processor = make_processor()
    if name == "mistral3":  # the checkpoint's patch size (the adapter reads the model's config)
        model.config.vision_config.patch_size = processor.patch_size
    adapter = adapter_for(model, processor)
    width, height = size
    inputs = _inputs(processor, [Image.new("RGB", size)])
    layout = adapter.layouts(inputs)[0]
    tiles = adapter.sample_tiles(layout, inputs["input_ids"][0].tolist(), [size])
    kinds = [t.kind for t in tiles]
    assert sum(len(t.cells) for t in tiles) == len(layout.positions) or name == "mistral3"
    if name != "mistral3":  # one processed image per tile, in the prompt's order
        assert kinds == ["image"] or (kinds.count("overview") == 1 and kinds.count("crop") >= 2), kinds
    if size in LARGE:
        assert kinds.count("crop") >= 2, kinds
    black = pixels(processor, Image.new("RGB", size))
    assert len(black) == len(tiles)
    checked = sorted({0, len(tiles) // 2, len(tiles) - 1})  # first and middle crops, the overview (or the tile)
    for i, tile in ((i, tiles[i]) for i in checked):
        cell_area = (tile.box[2] - tile.box[0]) * (tile.box[3] - tile.box[1]) / len(tile.cells)
        on_image = [k for k in range(len(tile.cells)) if _cell_pixels(tile, k, width, height).sum() > 0.97 * cell_area]
        assert on_image, (name, tile)  # cells wholly on the image (a Llama 4 canvas's padding has none of it)
        ks = {on_image[0], on_image[-1]} if size in LARGE else {on_image[0], on_image[len(on_image) // 2], on_image[-1]}
        for k in sorted(ks):
            mask = _cell_pixels(tile, k, width, height)
            bright = _blocks(pixels(processor, _painted(mask))[i], tile.grid) - _blocks(black[i], tile.grid)
            r, c = divmod(k, tile.grid[1])
            assert bright[r, c] > 0.8, (name, size, tile.kind, k, bright.round(2))
            assert np.delete(bright.ravel(), k).max() < 0.2, (name, size, tile.kind, k, bright.round(2))


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_llama4_tiles_are_the_prompts_arrangement(size):
    """The tiles read from the prompt's separators are the processor's aspect ratio, and cover its canvas."""
    model, _ = families.llama4()
    processor = _llama4_processor()
    adapter = adapter_for(model, processor)
    image = Image.new("RGB", size)
    inputs = _inputs(processor, [image])
    rows, cols = processor.image_processor(images=[image], return_tensors="pt")["aspect_ratios"][0].tolist()
    layout = adapter.layouts(inputs)[0]
    assert adapter.arrangement(layout, inputs["input_ids"][0].tolist())[:2] == (rows, cols)


def _tiny_processor(name, model):
    if name == "lfm2_vl":  # the tiny model: 8 px patches merged 2x2, 32 px tiles
        return _lfm2_processor(encoder_patch_size=8, tile_size=32, min_image_tokens=4, max_image_tokens=16,
                               max_tiles=4)
    if name == "llama4":
        return _llama4_processor(size=32, max_patches=4, patch=8)
    return _pixtral_processor(longest=64, patch=model.config.vision_config.patch_size)


@pytest.mark.parametrize("name", ["lfm2_vl", "llama4", "mistral3"])
def test_the_tiny_models_trace_with_their_real_processors_as_eager_attends(name):
    """Two prompts, one with two images of different sizes, through the real processor: traced generation is
    token-identical to plain, per-head VAR (and per-image VAR) equals eager attention at 1e-5."""
    model, _ = FAMILIES[name][0]()
    processor = _tiny_processor(name, model)
    adapter = adapter_for(model, processor)
    images = tiny.random_images(3, seed=2, sizes=[(64, 48), (30, 50), (100, 20)])
    inputs = adapter.build_inputs([[images[0], images[2]], images[1]], ["compare", "describe"])
    plain = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4)
    model.set_attn_implementation("eager")
    try:
        eager = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, output_attentions=True,
                               return_dict_in_generate=True)
    finally:
        model.set_attn_implementation("sdpa")
    with afip_probe.trace(model, processor, array_dtype="float32") as rec:
        traced = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4)
    assert torch.equal(plain, traced) and torch.equal(eager.sequences, traced)
    is_image = inputs["input_ids"] == adapter.image_token_id
    pad = (inputs["attention_mask"] == 0).sum(-1)
    tr = rec.traces[0]
    assert tr.layout.num_images == 2 and rec.traces[1].image_var is None
    img = is_image[0].nonzero().flatten()
    owner = torch.tensor(tr.layout.image_of_slots())
    for t, step in enumerate(eager.attentions):
        rows = [a[0, :, -1, :].float() for a in step if a is not None]
        for layer, row in enumerate(rows):
            a = _at_positions(row, inputs["input_ids"].shape[1] + t)  # a chunk's keys at their positions
            np.testing.assert_allclose(tr.head["var"][t, layer], a[:, img].sum(-1).numpy(), atol=1e-5, rtol=0)
            for i in range(2):
                np.testing.assert_allclose(tr.image_var[t, layer, :, i], a[:, img[owner == i]].sum(-1).numpy(),
                                           atol=1e-5, rtol=0)
    tiles = adapter.sample_tiles(tr.layout, tr.prompt_ids, [images[0].size, images[2].size])
    assert {t.image for t in tiles} == {0, 1}
    assert all(set(t.cells) <= set(np.flatnonzero(owner.numpy() == t.image)) for t in tiles)
    assert int(pad[1]) >= 0
