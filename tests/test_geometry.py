"""Image geometry of the tiled families, against the processors' and models' own arithmetic.

Processor settings are those of the real checkpoints (named per family); images are non-square
(640x480 and 300x500). Two independent checks:
- which slot is which cell: LLaVA-NeXT / OneVision features coded with their crop, row and column go
  through the model's own `pack_image_features`; the layout's cells must find them there;
- where each cell lies on the image: the pixels the layout assigns to one cell are painted white and
  the real image processor must put that white on that cell of that tile, and nowhere else in it
  (as `test_plots.test_llava_processor_puts_the_region_on_the_patch` does for LLaVA-1.5).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from PIL import Image

from afip_probe.models import adapter_for
from afip_probe.models.llava_next import llava_next_geometry
from afip_probe.plots.heatmap import tiles_heat
from afip_probe.records.layout import ImageLayout

from . import families

SIZES = [(640, 480), (300, 500)]


def _layout(processor, image_token_id, image, **call):
    """The prompt ids and image-token layout the processor writes for one image (`call`: the call's settings)."""
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe"}]}],
        add_generation_prompt=True)
    ids = processor(images=[[image]], text=[prompt], return_tensors="pt", **call)["input_ids"][0]
    positions = (ids == image_token_id).nonzero().flatten().tolist()
    return ids.tolist(), ImageLayout(positions=positions, grid=(1, len(positions)))


def _cell_pixels(tile, k, width, height):
    """[H, W] bool: the pixels of the original image that cell k of `tile` covers, through the layout."""
    values = np.zeros(1 + max(tile.cells))
    values[tile.cells[k]] = 1.0
    return tiles_heat(values, [tile], width, height, kinds=(tile.kind,)) == 1.0


def _blocks(img: np.ndarray, grid) -> np.ndarray:
    """Mean brightness of each cell block of a processed tile [C, S, S]."""
    rows, cols = grid
    a = img.mean(0)
    h, w = a.shape[0] // rows, a.shape[1] // cols
    return a[: rows * h, : cols * w].reshape(rows, h, cols, w).mean(axis=(1, 3))


def _painted(mask: np.ndarray) -> Image.Image:
    img = np.zeros((*mask.shape, 3), np.uint8)
    img[mask] = 255
    return Image.fromarray(img)


# ----------------------------------------------------------------------------- crop families
def _idefics3(smol: bool):
    """Idefics3-8B-Llama3 (364 px tiles, 1456 px longest edge, 169 tokens) or SmolVLM-256M-Instruct (512 px
    tiles, 2048 px longest edge, 64 tokens)."""
    model, _ = families.idefics3(smol)
    settings = dict(longest=2048, tile=512, seq=64) if smol else dict(longest=1456, tile=364, seq=169)
    proc = families.idefics3_processor(families.idefics3_tokenizer(), smol, **settings)
    ip = proc.image_processor
    return model, proc, lambda image: ip(images=[[image]], do_normalize=False, return_tensors="np")["pixel_values"][0], {}


def _got_ocr2(aya: bool):
    """InternVL3 (448 px crops, 1 to 12, 256 tokens each) or Aya Vision 8B (364 px crops, 1 to 12, 169 tokens)."""
    model, _ = families.aya_vision() if aya else families.internvl()
    tok = families.tokenizer("<image>") if aya else families.internvl_tokenizer()
    proc = families.got_ocr2_processor(tok, aya, crop=364, max_crops=12, seq=169) if aya else \
        families.got_ocr2_processor(tok, aya, crop=448, max_crops=12, seq=256)
    ip = proc.image_processor
    return model, proc, lambda image: ip(images=[image], do_normalize=False, return_tensors="np")["pixel_values"], {}


def _gemma3_pan_and_scan(call_time: bool = False):
    """Gemma 3 4B with pan-and-scan (896 px, crops of at least 256 px, at most 4, 256 tokens each): saved in the
    processor's settings, or (`call_time`) off there and asked for in the call, as Gemma 3's model card does
    (``processor(..., do_pan_and_scan=True)``)."""
    model, _ = families.gemma3()
    model.config.mm_tokens_per_image = 256
    proc = families.gemma3_processor(families.gemma3_tokenizer(), size=896, pan_and_scan=not call_time, min_crop=256,
                                     seq=256)
    call = {"do_pan_and_scan": True} if call_time else {}
    ip, settings = proc.image_processor, {**proc.images_kwargs, **call}  # what the processor passes on
    return model, proc, lambda image: ip(images=[[image]], do_normalize=False, return_tensors="np",
                                         **settings)["pixel_values"], call


CROP_FAMILIES = {
    "idefics3": lambda: _idefics3(False),
    "smolvlm": lambda: _idefics3(True),
    "internvl": lambda: _got_ocr2(False),
    "aya_vision": lambda: _got_ocr2(True),
    "gemma3_pan_and_scan": _gemma3_pan_and_scan,
    "gemma3_pan_and_scan_call": lambda: _gemma3_pan_and_scan(call_time=True),
}


@pytest.mark.parametrize("size", SIZES + [(1000, 200)], ids=["640x480", "300x500", "1000x200"])
@pytest.mark.parametrize("name", sorted(CROP_FAMILIES))
def test_a_cell_painted_through_the_layout_lands_on_that_cell(name, size):
    model, processor, pixels, call = CROP_FAMILIES[name]()
    adapter = adapter_for(model, processor)
    width, height = size
    ids, layout = _layout(processor, adapter.image_token_id, Image.new("RGB", size), **call)
    tiles = adapter.tiles(layout, ids, width, height)
    kinds = [t.kind for t in tiles]
    if kinds != ["image"]:  # Gemma 3 cuts no crops from a 300x500 image (they would be under 256 px)
        assert kinds.count("overview") == 1 and kinds.count("crop") >= 2, kinds
    assert sum(len(t.cells) for t in tiles) == len(layout.positions)  # every image token is some tile's cell
    black = pixels(Image.new("RGB", size))
    assert len(black) == len(tiles)  # one processed image per tile, in the prompt's order
    crops = [i for i, t in enumerate(tiles) if t.kind == "crop"] or [0]
    overview = kinds.index("overview") if "overview" in kinds else 0
    for i, k in ((crops[0], 0), (crops[-1], len(tiles[crops[-1]].cells) // 2 + 1), (overview, 5)):
        tile = tiles[i]
        mask = _cell_pixels(tile, k, width, height)
        assert mask.any()
        lit = pixels(_painted(mask))
        bright = _blocks(lit[i], tile.grid) - _blocks(black[i], tile.grid)
        r, c = divmod(k, tile.grid[1])
        assert bright[r, c] > 0.8, (name, tile.kind, k, bright.round(2))
        assert np.delete(bright.ravel(), k).max() < 0.2, (name, tile.kind, k, bright.round(2))


# ----------------------------------------------------------------------------- LLaVA-NeXT, OneVision
PINPOINTS_NEXT = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # llava-v1.6
PINPOINTS_OV = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]  # llava-onevision (anyres_max_9)


def _llava_next(onevision: bool):
    """A tiny LLaVA-NeXT (llava-v1.6: CLIP 336/14, its pinpoints) or OneVision (SigLIP 384/14) with the real
    geometry, and its real image processor settings."""
    tok = families.tokenizer()
    text = families.text_config(T.Qwen2Config if onevision else T.LlamaConfig, tok)
    if onevision:
        vision = T.SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      image_size=384, patch_size=14)
        cfg = T.LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=tok.image_token_id,
                                     image_grid_pinpoints=PINPOINTS_OV, vision_feature_select_strategy="full",
                                     vision_aspect_ratio="anyres_max_9")
        model = T.LlavaOnevisionForConditionalGeneration(cfg).eval()
        ip = T.LlavaOnevisionImageProcessor(size={"height": 384, "width": 384}, image_grid_pinpoints=PINPOINTS_OV)
    else:
        cfg = T.LlavaNextConfig(vision_config=families._clip(336, 14), text_config=text,
                                image_token_index=tok.image_token_id, image_grid_pinpoints=PINPOINTS_NEXT,
                                vision_feature_select_strategy="default")
        model = T.LlavaNextForConditionalGeneration(cfg).eval()
        ip = T.LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                       image_grid_pinpoints=PINPOINTS_NEXT)
    return model, ip, cfg


@pytest.mark.parametrize("size", SIZES + [(1000, 200)], ids=["640x480", "300x500", "1000x200"])
@pytest.mark.parametrize("onevision", [False, True], ids=["llava_next", "llava_onevision"])
def test_llava_next_cells_are_where_pack_image_features_puts_them(onevision, size):
    """Features coded (crop, row, column) through the model's `pack_image_features`: the base tile's cells are
    crop 0 row-major; the crop tile's cells are one unpadded block of the stitched crops, row-major; the
    remaining slots are the newline embedding."""
    model, ip, cfg = _llava_next(onevision)
    adapter = adapter_for(model)
    width, height = size
    p = cfg.vision_config.image_size // cfg.vision_config.patch_size
    num_crops = ip(images=[Image.new("RGB", size)], return_tensors="np")["pixel_values"].shape[1]
    coded = torch.zeros(num_crops, p * p, 3)
    coded[:, :, 0] = torch.arange(num_crops)[:, None].float()
    coded[:, :, 1] = (torch.arange(p * p) // p).float()
    coded[:, :, 2] = (torch.arange(p * p) % p).float()
    newline = torch.full((3,), -1.0)
    sizes = torch.tensor([[height, width]])
    if onevision:
        packed = model.model.pack_image_features([coded], sizes, image_newline=newline,
                                                 vision_aspect_ratio=cfg.vision_aspect_ratio)[0]
    else:
        packed = model.model.pack_image_features([coded], sizes, cfg.vision_feature_select_strategy,
                                                 image_newline=newline)[0]
    packed = torch.cat(packed) if isinstance(packed, (list, tuple)) else packed  # [N, 3]
    layout = ImageLayout(positions=list(range(packed.shape[0])), grid=(1, packed.shape[0]))
    base, crop = adapter.tiles(layout, [], width, height)
    assert (base.kind, crop.kind) == ("overview", "crop")
    base_rows = packed[list(base.cells)]
    assert (base_rows[:, 0] == 0).all() and base_rows[:, 1].tolist() == [float(i // p) for i in range(p * p)]
    cells = set(base.cells) | set(crop.cells)
    assert (packed[[i for i in range(len(packed)) if i not in cells]] == -1).all()  # the rest: newlines
    rows, cols = crop.grid
    if onevision and len(crop.cells) < (packed[:, 0] > 0).sum():  # pooled: bilinear mixes, check the shape only
        assert len(packed) == p * p + rows * (cols + 1)
        return
    best = T.image_processing_utils.select_best_resolution((height, width), cfg.image_grid_pinpoints)
    across = best[1] // cfg.vision_config.image_size
    feats = packed[list(crop.cells)]  # [rows*cols, 3]
    k = feats[:, 0].long() - 1
    canvas_r = (k // across) * p + feats[:, 1].long()
    canvas_c = (k % across) * p + feats[:, 2].long()
    r = torch.arange(rows).repeat_interleave(cols)
    c = torch.arange(cols).repeat(rows)
    assert len(set((canvas_r - r).tolist())) == 1 and len(set((canvas_c - c).tolist())) == 1


@pytest.mark.parametrize("size", SIZES + [(1000, 200)], ids=["640x480", "300x500", "1000x200"])
def test_llava_next_crop_cell_painted_through_the_layout_lands_on_that_cell(size):
    """The crop tile's box: the pixels the layout gives one unpadded cell, painted white, land on that feature of
    the processor's stitched crops (and the base tile's cell on the base image)."""
    model, ip, cfg = _llava_next(False)
    adapter = adapter_for(model)
    width, height = size
    p, crop_px = 24, 336
    best_h, best_w = T.image_processing_utils.select_best_resolution((height, width), cfg.image_grid_pinpoints)
    down, across = best_h // crop_px, best_w // crop_px

    def canvas(image):  # the processor's crops stitched back: [C, best_h, best_w]
        pv = ip(images=[image], do_normalize=False, return_tensors="np")["pixel_values"][0]
        crops = pv[1: 1 + down * across].reshape(down, across, 3, crop_px, crop_px)
        return crops.transpose(2, 0, 3, 1, 4).reshape(3, best_h, best_w), pv[0]

    n = p * p
    _, (rows, cols), _ = llava_next_geometry((height, width), cfg.image_grid_pinpoints, crop_px, 14)
    layout_n = n + rows * (cols + 1)
    base, crop = adapter.tiles(ImageLayout(list(range(layout_n)), (1, layout_n)), [], width, height)
    black_canvas, black_base = canvas(Image.new("RGB", size))
    feature_grid = (best_h // 14, best_w // 14)
    # which canvas feature holds crop cell (0, 0): the unpadded block's corner
    top = (feature_grid[0] - rows) // 2 if width / height > feature_grid[1] / feature_grid[0] else 0
    left = (feature_grid[1] - cols) // 2 if top == 0 and width / height <= feature_grid[1] / feature_grid[0] else 0
    for k in (cols + 1, (rows // 2) * cols + cols // 2, rows * cols - 2):
        mask = _cell_pixels(crop, k, width, height)
        lit, _ = canvas(_painted(mask))
        bright = _blocks(lit, feature_grid) - _blocks(black_canvas, feature_grid)
        r, c = divmod(k, cols)
        assert bright[top + r, left + c] > 0.8, (k, bright.round(1))
        others = bright.copy()
        others[top + r, left + c] = 0
        assert others.max() < 0.2
    mask = _cell_pixels(base, p + 3, width, height)
    _, lit_base = canvas(_painted(mask))
    bright = _blocks(lit_base, (p, p)) - _blocks(black_base, (p, p))
    assert bright[1, 3] > 0.8 and np.delete(bright.ravel(), p + 3).max() < 0.2


# ----------------------------------------------------------------------------- traced stores
@pytest.mark.parametrize("name", ["llava_next", "idefics3"])
def test_heatmap_of_a_tiled_trace_is_one_stitched_map_over_the_whole_image(name, tmp_path):
    """Traced through the pipeline, the samples table keeps the tiles; `afip-probe heatmap` draws one map
    stitched from the crops that covers the whole image (the overview beside it), equal to the recorded map
    placed cell by cell on the crops' boxes."""
    import matplotlib.pyplot as plt

    from afip_probe import store as st
    from afip_probe.cli import main
    from afip_probe.models import LoadedModel
    from afip_probe.pipelines.settings import GenerationSettings
    from afip_probe.pipelines.tracing import trace_images
    from afip_probe.plots.store_maps import image_attention, tiles_of, token_heatmap
    from afip_probe.records import read_tiles

    model, processor = families.BUILDERS[name]()
    loaded = LoadedModel(model, processor, adapter_for(model, processor), name)
    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate([(64, 48), (30, 50)]):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), np.uint8)).save(
            images / f"im{i}.png")
    settings = GenerationSettings(model=name, level="maps", max_new_tokens=3, batch_size=2)
    trace_images(settings, sorted(images.iterdir()), tmp_path / "store", loaded=loaded, progress=False)
    store = st.open(tmp_path / "store")
    for _, row in store.samples("ok").iterrows():
        tiles = read_tiles(row.tiles)
        assert {t.kind for t in tiles} == {"crop", "overview"}
        assert tiles == tiles_of(store, row)
        assert main(["heatmap", str(store.root), row.sample_id, "--step", "1", "--out",
                     str(tmp_path / f"{row.sample_id}.png")]) == 0
        fig = token_heatmap(store, row.sample_id, step=1)
        assert len(fig.axes) >= 2  # the stitched crops, the overview (and a colour bar)
        drawn = np.ma.filled(fig.axes[0].images[1].get_array(), np.nan)
        width, height = int(row.image_width), int(row.image_height)
        # the crops cover the image, LLaVA-NeXT's up to the feature rows unpadding drops at its edges
        ys, xs = np.mgrid[0:height, 0:width] + 0.5
        inside = np.zeros((height, width), bool)
        for t in tiles:
            if t.kind == "crop":
                inside |= (xs >= t.box[0]) & (xs < t.box[2]) & (ys >= t.box[1]) & (ys < t.box[3])
        np.testing.assert_array_equal(np.isfinite(drawn), inside)
        assert inside.mean() > 0.85, name
        values = image_attention(store, row.sample_id, 1)
        np.testing.assert_allclose(drawn, tiles_heat(values, [t for t in tiles if t.kind == "crop"], width, height))
        plt.close("all")


# ----------------------------------------------------------------------------- one-grid families
def merged_patches_image(pixel_values: np.ndarray, thw, merge: int, patch: int, temporal: int) -> np.ndarray:
    """[C, H, W] from the patches Qwen2-VL's (and GLM-4V's) image processor flattens merge window by merge window:
    rows (t, h/m, w/m, m, m), columns (C, T, p, p)."""
    _, gh, gw = (int(v) for v in thw)
    a = pixel_values.reshape(gh // merge, gw // merge, merge, merge, 3, temporal, patch, patch)[:, :, :, :, :, 0]
    return a.transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * patch, gw * patch)


def _qwen_like(name):
    """Qwen3-VL-8B (16 px patches merged 2x2, 64·32² to 16384·32² pixels) or GLM-4.1V-9B (14 px patches merged
    2x2, shortest edge 112², longest 28·28·15000) image processors."""
    model, _ = families.BUILDERS[name]()
    if name == "glm4v":
        ip = T.Glm4vImageProcessor(size={"shortest_edge": 12544, "longest_edge": 11760000}, patch_size=14,
                                   merge_size=2, temporal_patch_size=2)
    else:
        ip = T.Qwen2VLImageProcessor(min_pixels=65536, max_pixels=16777216, patch_size=16, merge_size=2,
                                     temporal_patch_size=2)
    inputs = lambda image: ip(images=[image], return_tensors="pt")  # noqa: E731
    pixels = lambda image: merged_patches_image(  # noqa: E731
        ip(images=[image], do_normalize=False, return_tensors="np")["pixel_values"],
        inputs(image)["image_grid_thw"][0], ip.merge_size, ip.patch_size, ip.temporal_patch_size)
    return model, ip, lambda image: {"input_ids": None, **inputs(image)}, pixels


def _paligemma():
    """PaliGemma 2 3B (224 px, 14 px patches: a 16x16 grid)."""
    model, _ = families.paligemma(2)
    model.config.vision_config.image_size, model.config.vision_config.patch_size = 224, 14
    ip = T.SiglipImageProcessor(size={"height": 224, "width": 224})
    return model, ip, None, lambda image: ip(images=[image], do_normalize=False, return_tensors="np")["pixel_values"][0]


@pytest.mark.parametrize("size", SIZES + [(1000, 200)], ids=["640x480", "300x500", "1000x200"])
@pytest.mark.parametrize("name", ["glm4v", "paligemma", "qwen3_vl"])
def test_one_grid_families_put_a_painted_cell_on_that_cell(name, size):
    """The grid of the families that show the image once (from `image_grid_thw`, or the fixed square), through
    the adapter's layout and tiles: a painted cell lands on that merged patch of the processor's pixels."""
    model, ip, inputs_of, pixels = _paligemma() if name == "paligemma" else _qwen_like(name)
    adapter = adapter_for(model, None)
    width, height = size
    blank = Image.new("RGB", size)
    if inputs_of is None:  # PaliGemma: a fixed number of tokens
        side = 224 // 14
        ids = torch.full((1, side * side), adapter.image_token_id)
    else:
        thw = inputs_of(blank)["image_grid_thw"]
        ids = torch.full((1, int(thw.prod()) // 4), adapter.image_token_id)
    inputs = {"input_ids": ids} if inputs_of is None else {"input_ids": ids, "image_grid_thw": thw}
    layout = adapter.layouts(inputs)[0]
    (tile,) = adapter.sample_tiles(layout, ids[0].tolist(), [size])
    black = pixels(blank)
    for k in (0, len(tile.cells) // 2 + tile.grid[1] // 3, len(tile.cells) - 1):
        mask = _cell_pixels(tile, k, width, height)
        bright = _blocks(pixels(_painted(mask)), tile.grid) - _blocks(black, tile.grid)
        r, c = divmod(k, tile.grid[1])
        assert bright[r, c] > 0.8, (name, k, bright.round(2))
        assert np.delete(bright.ravel(), k).max() < 0.2, (name, k, bright.round(2))


def test_gemma3_call_time_pan_and_scan_gives_each_image_its_own_crops():
    """Three images in one prompt, pan-and-scan asked for in the call: the adapter reads from the prompt which
    blocks are crops of which image; each image gets as many crop tiles as the image processor made for it
    (`num_crops`), the blocks before the crops are overviews, an image too square for crops is one tile."""
    model, processor, _, call = _gemma3_pan_and_scan(call_time=True)
    adapter = adapter_for(model, processor)
    images = [Image.new("RGB", (640, 480)), Image.new("RGB", (300, 500)), Image.new("RGB", (1000, 400))]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}] * 3 + [{"type": "text", "text": "compare"}]}],
        add_generation_prompt=True)
    inputs = dict(processor(images=[images], text=[prompt], return_tensors="pt", **call))
    layout = adapter.layouts(inputs)[0]
    tiles = adapter.sample_tiles(layout, inputs["input_ids"][0].tolist(), [im.size for im in images])
    crops = processor.image_processor(images=[images], return_tensors="np", **{**processor.images_kwargs, **call})
    assert list(crops["num_crops"]) == [2, 0, 3]
    for i, n in enumerate(crops["num_crops"]):
        kinds = [t.kind for t in tiles if t.image == i]
        assert kinds == (["overview"] + ["crop"] * int(n) if n else ["image"]), (i, kinds)
