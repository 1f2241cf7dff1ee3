"""What `trace(exact=False)` does to generation: the output drift of reading each decoding step once.

With ``exact=False`` a traced layer's decoding-step output is softmax(B)·V computed from the recorded
score row, instead of the model's own SDPA call. The two differ by float rounding. This script
generates every caption twice, plain and traced with ``exact=False`` (greedy, same inputs, batches
of --batch), and reports:

- greedy agreement: the share of captions whose tokens are identical, and of all generated tokens
  that match up to each caption's first difference;
- logit drift: the largest |logit difference| at any step before a caption's first different token
  (after it, the inputs differ and logits are not comparable).

Models: the organism on its 500 held-out scenes (split ``val``), and the wide random-weight model
(`generation_cost.wide_model`) on random images.

    python benchmarks/output_drift.py --organism 500 --wide 50 --tokens 64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation_cost import wide_model  # noqa: E402

import afip_probe  # noqa: E402
from afip_probe.models import LoadedModel, load, tiny  # noqa: E402
from afip_probe.organism import dataset as sc  # noqa: E402


def drift(m: LoadedModel, images: list[Any], tokens: int, batch: int) -> dict[str, Any]:
    kwargs = dict(max_new_tokens=tokens, do_sample=False, output_logits=True, return_dict_in_generate=True)
    same_captions, matched, total, worst = 0, 0, 0, 0.0
    for start in range(0, len(images), batch):
        chunk = images[start: start + batch]
        inputs = m.adapter.build_inputs(chunk, "Please describe this image in detail.")
        with torch.inference_mode():
            plain = m.model.generate(**inputs, **kwargs)
            with afip_probe.trace(m.model, m.processor, adapter=m.adapter, exact=False):
                fast = m.model.generate(**inputs, **kwargs)
        p_len = inputs["input_ids"].shape[1]
        a, b = plain.sequences[:, p_len:], fast.sequences[:, p_len:]
        steps = min(a.shape[1], b.shape[1])
        for i in range(len(chunk)):
            diff = (a[i, :steps] != b[i, :steps]).nonzero()
            first = int(diff[0]) if len(diff) else steps
            same_captions += int(first == steps and a.shape[1] == b.shape[1])
            matched += first
            total += steps
            for t in range(first + 1 if first < steps else steps):  # the first different token's logits too
                worst = max(worst, float((plain.logits[t][i] - fast.logits[t][i]).abs().max()))
    n = len(images)
    return {"captions": n, "identical_captions": same_captions, "identical_share": round(same_captions / n, 4),
            "tokens_before_first_difference_share": round(matched / max(total, 1), 4),
            "max_abs_logit_diff_before_divergence": worst}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--organism", type=int, default=500, help="held-out organism scenes (0: skip)")
    p.add_argument("--wide", type=int, default=50, help="wide-model captions on random images (0: skip)")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", default="benchmarks/results/output_drift.json")
    args = p.parse_args()
    torch.manual_seed(0)
    results = {}
    if args.organism:
        images = [sc.make_scene(0, "val", i).image for i in range(args.organism)]
        results["organism"] = drift(load("organism", device="cpu"), images, args.tokens, args.batch)
        print("organism", results["organism"], flush=True)
    if args.wide:
        images = tiny.random_images(args.wide, seed=3, sizes=[(640, 480)] * args.wide)
        results["wide"] = drift(wide_model(), images, args.tokens, args.batch)
        print("wide", results["wide"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"tokens": args.tokens, **results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
