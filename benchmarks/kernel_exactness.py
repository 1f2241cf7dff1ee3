"""Does tracing change what the model writes? Plain vs traced generation per attention implementation and dtype.

The tiny LLaVA (4 layers, random weights), a left-padded batch of three images, greedy, --tokens new tokens
(60, as issue #29 measured): for each implementation (eager, sdpa, flex_attention) and dtype (fp32, bf16,
fp16), generation is run plain and traced (exact; and single-read with --single-read) with the same model,
and the table gives whether the tokens are equal and the largest |logit difference| over the steps before
the first different token. `--tree DIR` runs the afip-probe of another checkout (e.g. a past revision in a
git worktree), so before and after are measured by the same script.

flex_attention runs uncompiled (torch's flex_attention and create_block_mask without torch.compile): torch
2.13's inductor fails to compile its CPU kernels for this model's shapes.

    python benchmarks/kernel_exactness.py [--tokens 60] [--single-read] [--tree ../before]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")
DTYPES = ("float32", "bfloat16", "float16")


def uncompiled_flex() -> None:
    import transformers.integrations.flex_attention as integration
    import transformers.masking_utils as masking
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    integration.WrappedFlexAttention.__call__ = lambda self: flex_attention
    masking.create_block_mask = lambda *a, **k: create_block_mask(*a, **{**k, "_compile": False})


def compare(impl: str, dtype: str, tokens: int, exact: bool) -> tuple[bool, float]:
    import torch

    import afip_probe
    from afip_probe.models import adapter_for, tiny

    model, processor = tiny.tiny_llava(layers=4, heads=4, kv_heads=2)
    model.to(getattr(torch, dtype))
    model.set_attn_implementation({"text_config": impl})
    images = tiny.random_images(3, seed=1, sizes=[(56, 56), (112, 56), (84, 84)])
    inputs = adapter_for(model, processor).build_inputs(images, ["describe", "please describe this image .",
                                                                 "is there a dog ?"])
    inputs = {k: v.to(model.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, output_logits=True,
              return_dict_in_generate=True)
    plain = model.generate(**inputs, **kw)
    with afip_probe.trace(model, processor, exact=exact):
        traced = model.generate(**inputs, **kw)
    same = torch.equal(plain.sequences, traced.sequences)
    p = inputs["input_ids"].shape[1]
    diff = (plain.sequences[:, p:] != traced.sequences[:, p:]).any(0).nonzero()
    first = int(diff[0]) if len(diff) else tokens
    worst = max(float((plain.logits[t].float() - traced.logits[t].float()).abs().max())
                for t in range(min(first + 1, tokens)))
    return same, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--single-read", action="store_true", help="trace with exact=False instead")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the afip-probe checkout to measure (default: this one)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    uncompiled_flex()
    mode = "single-read" if args.single_read else "exact"
    print(f"{args.tree.resolve()}: traced ({mode}) vs plain, tiny LLaVA, {args.tokens} new tokens, greedy")
    print("| dtype | " + " | ".join(IMPLEMENTATIONS) + " |\n|---|" + "---|" * len(IMPLEMENTATIONS))
    for dtype in DTYPES:
        cells = []
        for impl in IMPLEMENTATIONS:
            same, worst = compare(impl, dtype, args.tokens, not args.single_read)
            cells.append(f"{'tokens equal' if same else '**tokens differ**'}, logits Δ {worst:.2g}")
        print(f"| {dtype} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
