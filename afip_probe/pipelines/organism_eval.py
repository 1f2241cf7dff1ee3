"""CHAIR of a model on the organism's held-out scenes, and where its hallucinations come from.

Example (about a minute on 2 CPU cores for 500 scenes):
    >>> from afip_probe.pipelines.organism_eval import evaluate_heldout
    >>> report = evaluate_heldout("organism", n=500)       # doctest: +SKIP
    >>> round(report.overall["Recall"], 2) >= 0.8          # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..metrics.chair import Chair
from ..models import LoadedModel
from ..organism import catalog
from ..organism import dataset as sc
from .generation import caption_images
from .settings import GenerationSettings


@dataclass
class HeldoutReport:
    """CHAIR overall metrics plus the origin of each hallucinated mention."""

    n: int
    overall: dict[str, float]
    hallucinated_mentions: int
    companion_share: float  # share of hallucinated mentions that belong to the image's scene type
    top_hallucinated: list[tuple[str, int]] = field(default_factory=list)
    captions_file: str = ""

    def lines(self) -> list[str]:
        o = self.overall
        return [
            f"held-out scenes: {self.n}   captions: {self.captions_file}",
            f"CHAIRs {o['CHAIRs'] * 100:.1f} %   CHAIRi {o['CHAIRi'] * 100:.1f} %   Recall {o['Recall'] * 100:.1f} %"
            f"   Len {o['Len'] * 100:.1f} words",
            f"hallucinated mentions: {self.hallucinated_mentions}, of which {self.companion_share * 100:.1f} % are "
            "co-occurrence companions (same scene type as the image)",
            "most hallucinated: " + ", ".join(f"{w} ({n})" for w, n in self.top_hallucinated),
        ]


def scene_types(root: str | Path, split: str) -> dict[int, str]:
    data = json.loads((Path(root) / "annotations" / f"instances_{split}.json").read_text())
    return {img["id"]: img["scene_type"] for img in data["images"]}


def companion_analysis(result: Any, types: dict[int, str]) -> tuple[int, float, list[tuple[str, int]]]:
    """(hallucinated mentions, share that are companions of the scene type, most common ones)."""
    priors = {t.name: set(t.priors) for t in catalog.SCENE_TYPES}
    total = companions = 0
    counts: Counter[str] = Counter()
    for s in result.sentences:
        for m in s.mentions:
            if m.hallucinated:
                total += 1
                counts[m.node] += 1
                companions += m.node in priors.get(types.get(s.image_id, ""), set())
    return total, (companions / total if total else 0.0), counts.most_common(8)


def evaluate_heldout(
    settings: GenerationSettings | str = "organism",
    n: int = sc.HELDOUT_SIZE,
    out: str | Path | None = None,
    *,
    loaded: LoadedModel | None = None,
    modifiers: Any = (),
    progress: bool = True,
) -> HeldoutReport:
    """Caption `n` held-out scenes with `settings` (a model name takes the default settings with 96 new
    tokens and batches of 32) and score them with CHAIR against the scenes' annotations."""
    if isinstance(settings, str):
        settings = GenerationSettings(settings, max_new_tokens=96, batch_size=32)
    root = sc.ensure_split("val", n=max(n, sc.HELDOUT_SIZE), progress=progress)
    out = Path(out) if out is not None else root / "captions_organism.jsonl"
    if out.exists():
        out.unlink()  # a fresh evaluation each time
    rows = caption_images(settings, sc.image_paths(root, "val")[:n], out, loaded=loaded, modifiers=modifiers,
                          progress=progress)
    chair = Chair.from_coco(root / "annotations")
    result = chair.compute([(r["image_id"], r["caption"]) for r in rows])
    total, share, top = companion_analysis(result, scene_types(root, "val"))
    return HeldoutReport(n=len(rows), overall=result.overall, hallucinated_mentions=total, companion_share=share,
                         top_hallucinated=top, captions_file=str(out))


def report_json(report: HeldoutReport) -> str:
    return json.dumps(asdict(report), indent=1)
