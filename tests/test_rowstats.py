"""`row_stats` (the per-step summary behind every trace) against a loop-by-loop reference.

The fast code slices the image block when it can, reduces text keys part by part and never forms a
probability row; the reference below does none of that: per sample, layer and head it softmaxes
the masked row in float64 and applies the definitions of docs/design.md §5 key by key. The layouts cover
both code paths and their edges.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from afip_probe.hooks.rowstats import EPS, Workspace, image_index, mask_rows, row_stats
from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS

KV = 24


def _layout(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_image [B, KV], allowed [B, KV]) for one test layout."""
    b = 1 if name in ("single", "self-is-image", "two-blocks") else 3
    is_image = torch.zeros(b, KV, dtype=torch.bool)
    allowed = torch.ones(b, KV, dtype=torch.bool)
    if name == "single":  # one block: the sliced path
        is_image[:, 3:11] = True
    elif name == "shared-block-padded":  # same block in every sample, padding before it: sliced, masked text
        is_image[:, 6:14] = True
        allowed[1, :2] = False
        allowed[2, :5] = False
    elif name == "shifted-blocks":  # left padding moves the block: the gathered path
        for i, start in enumerate((3, 5, 7)):
            is_image[i, start: start + 8] = True
            allowed[i, : start - 3] = False
    elif name == "ragged":  # different image counts: padded index slots
        for i, (start, n) in enumerate(((2, 8), (4, 5), (6, 9))):
            is_image[i, start: start + n] = True
            allowed[i, : start - 2] = False
    elif name == "self-is-image":  # the query's own key is an image key (a prompt ending in the image)
        is_image[:, KV - 6:] = True
    elif name == "two-blocks":
        is_image[:, 2:6] = True
        is_image[:, 12:16] = True
    return is_image, allowed


def _reference(scores: torch.Tensor, is_image: torch.Tensor, allowed: torch.Tensor, generated_start: int | None = None):
    """Loops over [L, B, H, KV] scores; returns head [L, B, F, H] and layer [L, B, F] in float64. Keys from
    `generated_start` on (the query's own key included) are generated tokens, the other non-image keys prompt
    text."""
    n_l, n_b, n_h, kv = scores.shape
    head = torch.zeros(n_l, n_b, len(HEAD_FIELDS), n_h, dtype=torch.float64)
    layer = torch.zeros(n_l, n_b, len(LAYER_FIELDS), dtype=torch.float64)
    f = HEAD_FIELDS.index
    for li in range(n_l):
        for b in range(n_b):
            img = [i for i in range(kv) if is_image[b, i]]
            text = [j for j in range(kv - 1) if allowed[b, j] and not is_image[b, j]]
            probs, p_rows = [], []
            for h in range(n_h):
                row = [float(scores[li, b, h, j]) for j in range(kv)]
                seen = [j for j in range(kv) if allowed[b, j]]
                top = max(row[j] for j in seen)
                lse = top + math.log(sum(math.exp(row[j] - top) for j in seen))
                a = [math.exp(row[j] - lse) if allowed[b, j] else 0.0 for j in range(kv)]
                var = sum(a[i] for i in img)
                p = [a[i] / var for i in img]
                ent = -sum(x * math.log(x) for x in p if x > 0)
                vals = {"var": var, "img_max_score": max(row[i] for i in img),
                        "txt_max_score": max((row[j] for j in text), default=-math.inf),
                        "img_mean_score": sum(row[i] for i in img) / len(img),
                        "txt_mean_score": sum(row[j] for j in text) / max(len(text), 1),
                        "img_mean_prob": var / len(img), "txt_mean_prob": sum(a[j] for j in text) / max(len(text), 1),
                        "lse": lse, "img_entropy": ent}
                gen = [j for j in range(kv) if generated_start is not None and j >= generated_start]
                vals["generated_mass"] = sum(a[j] for j in gen if not is_image[b, j])
                vals["prompt_mass"] = sum(a[j] for j in range(kv) if j not in gen and not is_image[b, j])
                for name, v in vals.items():
                    head[li, b, f(name), h] = v
                probs.append([a[i] for i in img])
                p_rows.append(p)
            n = len(img)
            p_bar = [sum(p_rows[h][i] for h in range(n_h)) / n_h for i in range(n)]
            kls = [sum(p_rows[h][i] * (math.log(p_rows[h][i]) - math.log(p_bar[i])) for i in range(n) if p_rows[h][i] > 0)
                   for h in range(n_h)]
            for h in range(n_h):
                head[li, b, f("kl_to_mean"), h] = kls[h]
            a_bar = [sum(probs[h][i] for h in range(n_h)) / n_h for i in range(n)]
            total = sum(a_bar)
            layer[li, b, 0] = -sum(x * math.log(x + EPS) for x in a_bar)
            layer[li, b, 1] = -sum(x / total * math.log(x / total + EPS) for x in a_bar)
            layer[li, b, 2] = sum(kls) / n_h
    return head, layer


LAYOUTS = ["single", "shared-block-padded", "shifted-blocks", "ragged", "self-is-image", "two-blocks"]
GENERATED = {"prefill": None, "generated-4": KV - 4, "own-generated": KV - 1}


@pytest.mark.parametrize("layout,generated", [
    pytest.param(layout, start, id=f"{layout}-{name}") for layout in LAYOUTS for name, start in GENERATED.items()
    if start is None or layout != "self-is-image"])  # generated keys are never image keys
@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
def test_row_stats_equal_loop_reference(layout, masked, generated):
    """Every statistic, the lookback parts (prompt text, generated keys) included: at prefill (no generated
    key), with the last four keys generated, and with only the query's own key generated."""
    is_image, allowed = _layout(layout)
    index = image_index(is_image)
    assert (index.block is not None) == (layout in ("single", "shared-block-padded", "self-is-image"))
    assert index.ragged == (layout == "ragged")
    g = torch.Generator().manual_seed(zlib.crc32(layout.encode()))  # the same seed in every process
    scores = torch.randn(2, is_image.shape[0], 4, KV, generator=g) * 3  # [L, B, H, KV]
    hidden = ~allowed[None, :, None, :]
    rows = scores.masked_fill(hidden, float("-inf")) if masked else scores.clone()
    mask = allowed[:, None, None, :]  # a boolean [B, 1, q, KV] mask, as sdpa_mask gives
    rows, seen = mask_rows(rows, mask, is_image)
    work = Workspace()
    for _ in range(2):  # the second call reuses the scratch buffers
        st = row_stats(rows, is_image, seen, index, work, generated)
    head, layer = _reference(scores, is_image, allowed, generated)
    finite = torch.isfinite(head)
    assert torch.equal(finite, torch.isfinite(st.head))
    torch.testing.assert_close(st.head.double()[finite], head[finite], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(st.layer.double(), layer, atol=2e-5, rtol=1e-5)
    # head-mean image attention and the image scores, padded slots zero
    for b in range(is_image.shape[0]):
        img = is_image[b].nonzero().flatten()
        a = torch.softmax(scores[:, b].masked_fill(~allowed[b], float("-inf")).double(), -1)[..., img]
        n = img.numel()
        torch.testing.assert_close(st.img_mean_probs[:, b, :n].double(), a.mean(1), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(st.img_scores[:, b, :, :n], scores[:, b][..., img])
        assert (st.img_mean_probs[:, b, n:] == 0).all() and (st.img_scores[:, b, :, n:] == 0).all()
