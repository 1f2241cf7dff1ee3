"""The screenshots in docs/screenshots/: the heatmap, Fig. 3 (right), Fig. 4, Fig. 5 and the explorer of
organism stores, each written as ``<name>_<suffix>.png`` (at most 300 kB, downscaled when larger).

It runs the commands a user runs (`afip-probe figures`, `heatmap`, `explore`) and photographs the explorer in
a headless Chromium (as tests/test_explorer.py does). Make two stores first, e.g.::

    IM=$(python -c "from afip_probe.organism.dataset import heldout_dirs; print(heldout_dirs()[0])")
    afip-probe trace --model organism --images $IM --record maps --max-new-tokens 40 --max-images 40 \\
        --device cpu --out .cache/stores/scenes-a
    ls $IM/*.png | sed -n 41,80p > .cache/second40.txt
    afip-probe trace --model organism --images .cache/second40.txt --record maps --max-new-tokens 40 \\
        --device cpu --out .cache/stores/scenes-b
    python scripts/screenshots.py .cache/stores/scenes-a .cache/stores/scenes-b --suffix after

The "before" set was made the same way with the code of main at commit cfbbc37.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

LIMIT = 300_000  # bytes per screenshot
SHOTS = {"fig3_right": "figs/fig3_right_var_caption.png", "fig4": "figs/fig4_left_kl_entropy.png",
         "fig5": "figs/fig5_gap_roc.png", "heatmap": "heatmap.png", "explorer": "explorer.png"}


def afip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "afip_probe", *args], check=True)


def photograph(page: Path, out: Path, profile: Path) -> None:
    """The explorer page in a headless Chromium, with the last hallucinated token of the first sample selected."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.browser import chromium

    driver = chromium(profile)
    try:
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "heatmap").get_attribute("data-values"))
        hall = driver.find_elements(By.CSS_SELECTOR, ".tok[data-label=hallucinated]")
        if hall:
            hall[-1].click()
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def small_png(src: Path, dst: Path, limit: int = LIMIT) -> None:
    """`src` as a PNG of at most `limit` bytes at `dst` (downscaled step by step when larger)."""
    img = Image.open(src).convert("RGB")
    scale = 1.0
    while True:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        buf = io.BytesIO()
        (img if scale == 1.0 else img.resize(size, Image.LANCZOS)).save(buf, format="PNG", optimize=True)
        if buf.tell() <= limit:
            dst.write_bytes(buf.getvalue())
            return
        scale *= 0.85


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stores", nargs="+", help="trace stores at --record maps (the first is drawn by heatmap/explore)")
    p.add_argument("--suffix", required=True, help="before or after")
    p.add_argument("--sample", default="organism_val_02000001", help="the heatmap's sample")
    p.add_argument("--step", default="38", help="the heatmap's generated token")
    p.add_argument("--out", default="docs/screenshots")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        afip("figures", *args.stores, "--out", str(work / "figs"), "--resamples", "300", "--no-progress")
        afip("heatmap", args.stores[0], args.sample, "--step", args.step, "--out", str(work / "heatmap.png"))
        afip("explore", args.stores[0], "--out", str(work / "explorer"), "--no-progress")
        photograph(work / "explorer" / "index.html", work / "explorer.png", work / "profile")
        for name, rel in SHOTS.items():
            dst = out / f"{name}_{args.suffix}.png"
            small_png(work / rel, dst)
            print(f"{dst} ({dst.stat().st_size // 1000} kB)")
        shutil.rmtree(work / "profile", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
