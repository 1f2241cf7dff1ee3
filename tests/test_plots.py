"""Figures check their content, not only that they render; heatmaps land where the processor put the patch."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import stats as sps  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from afip_probe.plots import findings as pf  # noqa: E402
from afip_probe.plots.heatmap import draw_heatmap, draw_tiled, head_grid, pixel_heat  # noqa: E402
from afip_probe.records.layout import processor_region, single_tile  # noqa: E402


def synthetic_table(model: str = "m1", n_captions: int = 30, length: int = 40, seed: int = 0) -> pd.DataFrame:
    """A token table with the paper's signals planted: hallucinations late, at low VAR, high entropy."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_captions):
        for step in range(length):
            rel = (step + 0.5) / length
            var = 0.6 - 0.3 * rel + rng.normal(scale=0.05)
            is_obj = rng.random() < 0.25
            hall = is_obj and rng.random() < 0.15 + 0.6 * rel * (var < 0.45)
            kl = abs(rng.normal(0.3, 0.1)) + 0.2 * hall
            rows.append({
                "model": model, "condition": "", "sample_id": f"{model}-{c}", "image_id": c, "step": step,
                "relative_position": rel, "token_text": " w", "label": "hallucinated" if hall else "real" if is_obj else "none",
                "object": "dog" if is_obj else "", "mention": "", "token_entropy": kl * 2 + rng.normal(scale=0.2),
                "logprob": -1.0, "attn_entropy_all": 1.5 + 0.4 * hall + rng.normal(scale=0.3), "var_all": var,
                "kl_all": kl, "peak_gap_all": rng.normal() + hall, "mean_gap_all": rng.normal() + 0.5 * hall,
            })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_fig2b_entropy_distributions(table):
    fig = pf.entropy_distributions(table)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("attention entropy (Eq. 1)")
    assert _legend_texts(fig) == ["real object tokens", "hallucinated object tokens"]
    obj = table[table.label != "none"]
    n_real, n_hall = (obj.label == "real").sum(), (obj.label == "hallucinated").sum()
    assert f"(n={n_real})" in ax.get_title() and f"(n={n_hall})" in ax.get_title()
    p = sps.mannwhitneyu(obj[obj.label == "real"].attn_entropy_all, obj[obj.label == "hallucinated"].attn_entropy_all).pvalue
    assert f"{p:.2e}" in ax.get_title() or f"{p:.3f}" in ax.get_title()


def test_fig3_left_one_curve_per_model():
    t1, t2 = synthetic_table("m1"), synthetic_table("m2", length=30, seed=1)
    fig = pf.var_by_position(pd.concat([t1, t2]), min_count=5)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["m1", "m2"] == _legend_texts(fig)
    assert len(ax.collections) == 2  # the two ± std bands
    x, y = lines[1].get_data()
    want = t2.groupby("step").var_all.mean()
    np.testing.assert_array_equal(x, want.index.to_numpy())
    np.testing.assert_allclose(y, want.to_numpy())
    assert ax.get_xlabel() == "generated token position" and "visual attention ratio" in ax.get_ylabel()


def test_fig3_right_one_panel_per_caption_with_its_objects_named(table):
    fig = pf.var_per_caption(table, n=5)
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 5
    shown = table[table.label == "hallucinated"].sample_id.drop_duplicates()[:5].tolist()
    for ax, sid in zip(panels, shown):
        cap = table[table.sample_id == sid]
        assert ax.get_title().startswith(sid)
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), cap.var_all)
        hall, real = ax.collections[0].get_offsets(), ax.collections[1].get_offsets()  # x: hallucinated, o: real
        np.testing.assert_allclose(np.asarray(hall)[:, 1], cap[cap.label == "hallucinated"].var_all)
        np.testing.assert_allclose(np.asarray(real)[:, 1], cap[cap.label == "real"].var_all)
        assert len(ax.texts) == (cap.label != "none").sum()  # every object token named
    obj = table[table.label != "none"]
    cut = np.quantile(obj.var_all, 0.3)
    low = (obj[obj.var_all <= cut].label == "hallucinated").mean()
    assert f"lowest 30% vs the rest: {low:.3f}" in fig.get_suptitle()
    assert _legend_texts(fig) == ["hallucinated object token", "real object token"]


def slow_groups(df, q=5):
    """Quantile groups by sorting, with a loop."""
    obj = df[df.label != "none"].reset_index(drop=True)
    order = sorted(range(len(obj)), key=lambda i: (obj.kl_all[i], i))
    group = [0] * len(obj)
    for rank, i in enumerate(order):
        group[i] = min(rank * q // len(obj), q - 1)
    return obj.assign(group=group)


def test_fig4_left_groups_cis_and_correlation(table):
    fig = pf.kl_entropy_groups(table, n_resamples=500)
    ax = fig.axes[0]
    ref = slow_groups(table)
    containers = ax.containers  # the two errorbar containers
    assert len(containers) == 2
    for k, label in enumerate(("real", "hallucinated")):
        want = [ref[(ref.group == g) & (ref.label == label)].token_entropy.mean() for g in range(5)]
        got = containers[k].lines[0].get_ydata()
        np.testing.assert_allclose(got, want)
    bars = fig.axes[1].patches
    np.testing.assert_allclose([b.get_height() for b in bars],
                               [(ref[ref.group == g].label == "hallucinated").mean() for g in range(5)])
    r = sps.spearmanr(ref.kl_all, ref.token_entropy).statistic
    assert f"Spearman r = {r:.3f}" in ax.get_title()
    t = pf.kl_entropy_table(table, n_resamples=500)
    assert ((t.ci_low <= t.token_entropy) & (t.token_entropy <= t.ci_high)).all()


def test_fig4_axis_label_names_the_grouping_apart_from_the_quantity(table):
    ax = pf.kl_entropy_groups(table, n_resamples=50).axes[0]
    top, bottom = ax.get_xlabel().split("\n")
    assert top == "quantile group of cross-head KL (Eq. 3), layers: all"
    assert bottom == "(Q1 lowest … Q5 highest)"


def test_fig5_roc_auc_in_title(table):
    fig = pf.gap_roc(table)
    ax = fig.axes[0]
    obj = table[table.label != "none"]
    y = obj.label == "hallucinated"
    assert len(ax.get_lines()) == 3
    assert _legend_texts(fig) == ["peak gap T − V, layers: all", "mean gap (pre-softmax), layers: all",
                                  "chance (AUC 0.5)"]
    for name, col in (("peak gap T − V", "peak_gap_all"), ("mean gap (pre-softmax)", "mean_gap_all")):
        assert f"{name} {roc_auc_score(y, obj[col]):.3f}" in ax.get_title()
    assert ax.get_xlabel() == "false positive rate" and ax.get_ylabel() == "true positive rate"


def test_every_figure_draws_every_table_and_names_it():
    """Two tables: each figure draws both (its own numbers in each panel), titled by their names."""
    t1, t2 = synthetic_table("m1"), synthetic_table("m2", n_captions=20, seed=3)
    figs = pf.all_figures({"run-a": t1, "run-b": t2}, n_resamples=50, title="model: m · stores: run-a, run-b")
    for fig in figs.values():
        assert fig.get_suptitle().startswith("model: m · stores: run-a, run-b")
    for stem in ("fig2b_entropy", "fig5_gap_roc"):
        titles = [ax.get_title() for ax in figs[stem].axes]
        assert [t.split("\n")[0] for t in titles] == ["run-a", "run-b"], stem
    for k, t in enumerate((t1, t2)):
        obj = t[t.label != "none"]
        y = obj.label == "hallucinated"
        assert f"peak gap T − V {roc_auc_score(y, obj.peak_gap_all):.3f}" in figs["fig5_gap_roc"].axes[k].get_title()
        p = sps.mannwhitneyu(obj[~y].attn_entropy_all, obj[y].attn_entropy_all).pvalue
        assert f"{p:.2e}" in figs["fig2b_entropy"].axes[k].get_title() or \
            f"{p:.3f}" in figs["fig2b_entropy"].axes[k].get_title()
        r = sps.spearmanr(obj.kl_all, obj.token_entropy).statistic
        assert f"Spearman r = {r:.3f}" in figs["fig4_left_kl_entropy"].axes[k].get_title()
    assert [line.get_label() for line in figs["fig3_left_var_position"].axes[0].get_lines()] == ["run-a", "run-b"]
    right = [ax.get_title().split(" · ")[0] for ax in figs["fig3_right_var_caption"].axes if ax.get_lines()]
    assert right == ["run-a"] * 3 + ["run-b"] * 3


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("n_tables", [1, 2])
def test_legends_sit_off_the_data(n_tables):
    """Every legend of every Findings figure lies outside every axes' data area, whole inside the figure."""
    tables = {f"run-{k}": synthetic_table(f"m{k}", seed=k) for k in range(n_tables)}
    for stem, fig in pf.all_figures(tables, n_resamples=50).items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert legends, stem
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0, (stem, box, fig.bbox)
            for ax in fig.axes:
                if ax.get_visible() and ax.axison:
                    assert not _overlaps(box, ax.get_window_extent(renderer)), (stem, legend, ax.get_title())


# ----------------------------------------------------------------------------- heatmaps
def test_one_hot_patch_lights_exactly_its_region():
    grid = (4, 6)
    region = (10.0, 5.0, 70.0, 45.0)  # 60 x 40 px box in an 80 x 50 image: 10 x 10 px patches
    for k in (0, 7, 23):
        values = np.zeros(24)
        values[k] = 1.0
        heat = pixel_heat(values, grid, region, 80, 50)
        r, c = divmod(k, 6)
        want = np.zeros((50, 80), bool)
        want[5 + 10 * r: 15 + 10 * r, 10 + 10 * c: 20 + 10 * c] = True
        np.testing.assert_array_equal(heat == 1.0, want)
        outside = np.ones((50, 80), bool)
        outside[5:45, 10:70] = False
        assert np.isnan(heat[outside]).all() and (heat[~outside & ~want] == 0).all()
        fig = draw_heatmap(Image.new("RGB", (80, 50)), values, grid, region=region)
        drawn = fig.axes[0].images[1].get_array()
        np.testing.assert_array_equal(np.ma.filled(drawn, -1) == 1.0, want)


@pytest.mark.parametrize("draw", ["draw_heatmap", "draw_tiled"])
def test_colour_bar_ticks_are_distinct_and_whole(draw):
    """The colour bar of a real map's scale (small values) has a few tick labels, all different, each drawn whole
    inside the figure (a clipped '0.025' reads '0.02', the same as '0.020'); its colours are opaque."""
    values = np.linspace(0.0, 0.0273, 64)
    image = Image.new("RGB", (96, 96))
    fig = (draw_heatmap(image, values, (8, 8)) if draw == "draw_heatmap"
           else draw_tiled(image, values, single_tile(64, (8, 8), (0, 0, 96, 96))))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bar = fig.axes[-1]
    lo, hi = bar.get_ylim()
    shown = [t for t in bar.yaxis.get_major_ticks() if lo <= t.get_loc() <= hi]
    texts = [t.label2.get_text() or t.label1.get_text() for t in shown]
    assert len(texts) >= 3 and len(set(texts)) == len(texts), texts
    for t in shown:
        label = t.label2 if t.label2.get_visible() else t.label1
        box = label.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (label.get_text(), box, fig.bbox)
    assert "attention" in bar.get_ylabel()
    assert fig.axes[0].images[1].colorbar.solids.get_alpha() == 1.0


def _patch_brightness(pixel_values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean of each patch block of a [C, H, W] processed image."""
    img = pixel_values.mean(0)
    rows, cols = grid
    h, w = img.shape[0] // rows, img.shape[1] // cols
    return img[: rows * h, : cols * w].reshape(rows, h, cols, w).mean(axis=(1, 3))


@pytest.mark.parametrize("size,pad", [((640, 480), False), ((300, 500), False), ((640, 480), True)])
def test_llava_processor_puts_the_region_on_the_patch(size, pad):
    """Paint white exactly the pixels `pixel_heat` assigns to one patch; the real image processor must
    put that white on that patch and nowhere else (up to resampling at the edges)."""
    from transformers import CLIPImageProcessor
    from transformers.models.llava import LlavaImageProcessor

    cfg = dict(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48}, do_normalize=False)
    proc = LlavaImageProcessor(do_pad=True, **cfg) if pad else CLIPImageProcessor(**cfg)
    grid = (6, 6)  # 8 px patches on the 48 px input
    region = processor_region(proc.to_dict(), *size)
    black = _patch_brightness(np.asarray(proc(images=Image.new("RGB", size), return_tensors="np")["pixel_values"][0]), grid)
    # with padding, the top and bottom patch rows are mostly pad: check patches inside the image
    for k in ((14, 21, 27) if pad else (0, 14, 35)):
        onehot = np.zeros(36)
        onehot[k] = 1
        lit = pixel_heat(onehot, grid, region, *size) == 1.0
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[lit] = 255
        pv = np.asarray(proc(images=Image.fromarray(img), return_tensors="np")["pixel_values"][0])
        bright = _patch_brightness(pv, grid) - black
        r, c = divmod(k, 6)
        assert bright[r, c] > 0.8, (k, bright.round(2))
        others = np.delete(bright.ravel(), k)
        assert others.max() < 0.2, (k, bright.round(2))


def test_qwen2_vl_processor_puts_the_region_on_the_merged_patch():
    from afip_probe.models import tiny
    from afip_probe.models.qwen2_vl import Qwen2VLAdapter

    model, processor = tiny.tiny_qwen2_vl("qwen2_vl")
    adapter = Qwen2VLAdapter(model, processor)
    ip = processor.image_processor
    width, height = 140, 84
    out = ip(images=Image.new("RGB", (width, height)), return_tensors="np")
    _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
    merge, ps, tp = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    grid = (gh // merge, gw // merge)
    region = adapter.image_region(width, height)
    for k in (0, grid[0] * grid[1] - 1, grid[1] + 1):
        onehot = np.zeros(grid[0] * grid[1])
        onehot[k] = 1
        lit = pixel_heat(onehot, grid, region, width, height) == 1.0
        img = np.zeros((height, width, 3), np.uint8)
        img[lit] = 255
        pv = np.asarray(ip(images=Image.fromarray(img), return_tensors="np", do_normalize=False)["pixel_values"])
        # [t*gh*gw, C*tp*ps*ps] in merge-block order -> brightness per merged cell
        cells = pv.reshape(grid[0], grid[1], merge * merge, -1).mean(axis=(2, 3))
        r, c = divmod(k, grid[1])
        assert cells[r, c] > 0.8 and np.delete(cells.ravel(), k).max() < 0.2, cells.round(2)
    assert tp >= 1 and ps > 0


def test_head_grid_one_panel_per_head():
    rows = np.random.default_rng(0).random((6, 16))
    fig = head_grid(Image.new("RGB", (32, 32)), rows, (4, 4))
    titled = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert [ax.get_title() for ax in titled] == [f"head {h}" for h in range(6)]
    for h, ax in enumerate(titled):
        np.testing.assert_allclose(ax.images[1].get_array()[0, 0], rows[h, 0], rtol=1e-6)
