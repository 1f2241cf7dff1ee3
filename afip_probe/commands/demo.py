"""`afip-probe demo`: the main job end to end on a model that needs no download.

Until the trained model organism is bundled (DESIGN §9), the demo saves a tiny random-weight
LLaVA with `save_pretrained`, traces it over the bundled COCO image and a few synthetic images
through the same code path as a real checkpoint, and prints what the store holds.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="trace a bundled model over example images and summarise the store")
    p.add_argument("--out", default="demo-out", help="output folder (default: %(default)s); replaced if it exists")
    p.add_argument("--images", nargs="*", help="images to trace (default: the shared COCO image + 3 synthetic)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.set_defaults(func=run)


def _default_images(folder: Path) -> list[Path]:
    from ..models import tiny

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    coco = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images"
    for src in sorted(coco.glob("*.jpg"))[:1]:
        paths.append(Path(shutil.copy(src, folder / src.name)))
    for i, img in enumerate(tiny.random_images(3, seed=7, sizes=[(64, 48)] * 3)):
        paths.append(folder / f"synthetic_{i}.png")
        img.save(paths[-1])
    return paths


def run(args: argparse.Namespace) -> int:
    from .. import store as st
    from ..models import tiny
    from ..run import trace_images

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    model_dir = out / "model"
    model, processor = tiny.tiny_llava(layers=4, heads=4, hidden=128)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    print(f"model: tiny random-weight LLaVA saved to {model_dir} (the trained organism replaces it, DESIGN §9)")
    images = [Path(p) for p in args.images] if args.images else _default_images(out / "images")
    summary = trace_images(str(model_dir), images, "Please describe this image in detail.", out / "store",
                           level="maps", max_new_tokens=args.max_new_tokens, batch_size=4, device="cpu")
    store = st.open(out / "store")
    tokens = store.tokens()
    print(summary.line())
    print(store.samples()[["sample_id", "status", "num_tokens", "grid_rows", "grid_cols"]].to_string(index=False))
    cols = ["sample_id", "step", "token_text", "var_mean", "attn_entropy_mean", "kl_mean", "token_entropy"]
    print(tokens[cols].head(8).to_string(index=False))
    print(f"store: {out / 'store'}  (open it with afip_probe.store.open)")
    return 1 if summary.failed else 0
