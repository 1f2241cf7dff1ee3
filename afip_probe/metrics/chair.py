"""CHAIR (Rohrbach et al. 2018), exactly as the reference code used by OPERA / HGAI / AFIP (docs/design.md §6).

The algorithm: lower-case, NLTK `word_tokenize` and `pos_tag`, WordNet lemmatiser with the tag's
POS (noun by default), merge of two-word phrases (COCO double words, ``baby/adult <animal>``,
``passenger jet/train``, ``bow tie``, ``toilet seat``, ``wine glas``), the toilet/seat rule, and
synonym -> COCO category (node word). Reference quirks are kept on purpose, so that results equal
the published ones: synonyms with a leading space (`` motor bike``) never match, and
`hallucination_idxs` shift after the toilet/seat rule removes a word. Each mention also gets its
correct character span in the caption (for token labels).

Example:
    >>> chair = Chair.from_packaged()                                # doctest: +SKIP
    >>> res = chair.compute([(499775, "A bus and a dog on the street.")])   # doctest: +SKIP
    >>> res.overall["CHAIRi"]                                         # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import nltk
from nltk.corpus import wordnet
from nltk.stem import WordNetLemmatizer
from pycocotools.coco import COCO
from tqdm import tqdm  # text bars: tqdm.auto warns in a notebook without ipywidgets

from ..errors import AfipError, option
from ..jsonio import read_json

COCO_DOUBLE_WORDS = [
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "hot dog", "teddy bear", "home plate",
    "train track",
]
ANIMAL_WORDS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub"]
VEHICLE_WORDS = ["jet", "train"]
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
    "wordnet": "corpora/wordnet",
}


def packaged_nltk_data() -> Path:
    """The NLTK resources CHAIR needs, shipped in their smallest working form (see data/SOURCES.md)."""
    return Path(str(_data_file("nltk_data")))


def require_nltk() -> None:
    """Make the packaged NLTK resources findable (after ``NLTK_DATA`` and NLTK's own folders, which
    override them) and fail with one clear message if a resource is still missing (never downloads)."""
    packaged = str(packaged_nltk_data())
    if packaged not in nltk.data.path:
        nltk.data.path.append(packaged)
    missing = []
    for name, path in NLTK_RESOURCES.items():
        try:
            nltk.data.find(path)
        except LookupError:
            try:
                nltk.data.find(path.rstrip("/") + ".zip")
            except LookupError:
                missing.append(name)
    if missing:
        raise AfipError(
            f"CHAIR needs the NLTK resources punkt_tab, averaged_perceptron_tagger_eng and wordnet; missing: "
            f"{', '.join(missing)} (the copy shipped in {packaged} is incomplete: reinstall afip-probe), or "
            "point NLTK_DATA at a folder that has them"
        )


def _data_file(name: str) -> Any:
    return resources.files("afip_probe.metrics") / "data" / name


@dataclass
class Mention:
    """One COCO object mention in a caption."""

    word: str  # the (merged, lemmatised) word as CHAIR matched it
    node: str  # its COCO category (node word)
    hallucinated: bool
    char_start: int  # span in the original caption
    char_end: int
    word_index: int  # index into the lemma list (the correct one, unlike the reference's shifted idxs)


@dataclass
class CaptionResult:
    image_id: Any
    caption: str
    words: list[str]  # the reference's `words` (after two-word merging)
    generated: list[str]  # node words of every mention (mscoco_generated_words)
    hallucinated: list[tuple[str, str]]  # (word, node) (mscoco_hallucinated_words)
    hallucination_idxs: list[int]
    gt: set[str]
    mentions: list[Mention]
    metrics: dict[str, float]

    @property
    def recalled(self) -> set[str]:
        """Ground-truth objects the caption mentions."""
        return set(self.generated) & self.gt

    def to_reference(self) -> dict[str, Any]:
        """The reference's per-caption dict (plus `mentions`)."""
        return {
            "image_id": self.image_id,
            "caption": self.caption,
            "mscoco_hallucinated_words": [list(h) for h in self.hallucinated],
            "mscoco_gt_words": sorted(self.gt),
            "mscoco_generated_words": self.generated,
            "hallucination_idxs": self.hallucination_idxs,
            "words": self.words,
            "metrics": self.metrics,
            "mentions": [m.__dict__ for m in self.mentions],
        }


@dataclass
class ChairResult:
    sentences: list[CaptionResult]
    overall: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    labels: Any = None  # a store's token table with CHAIR labels, when asked for (`afip_probe.chair(labels=...)`)

    def to_json(self) -> dict[str, Any]:
        return {
            "sentences": [s.to_reference() for s in self.sentences],
            "overall_metrics": self.overall,
            "warnings": self.warnings,
        }

    def table(self) -> str:
        """The overall metrics as the reference prints them (percent, one decimal)."""
        return "\n".join(f"{k.ljust(10)}: {v * 100:.1f}" for k, v in self.overall.items())


def _char_spans(caption: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Spans of word_tokenize tokens (of caption.lower()) in the original caption."""
    lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in caption)
    spans, cursor = [], 0
    for tok in tokens:
        candidates = [tok] + (['"'] if tok in ("``", "''") else [])
        best = None
        for cand in candidates:
            pos = lowered.find(cand, cursor)
            if pos != -1 and (best is None or pos < best[0]):
                best = (pos, pos + len(cand))
        if best is None:
            spans.append((cursor, cursor))
            continue
        spans.append(best)
        cursor = best[1]
    return spans


class Chair:
    """The CHAIR evaluator: synonyms + per-image ground-truth node words."""

    def __init__(self, gt: Mapping[Any, Iterable[str]], synonyms_text: str | None = None):
        require_nltk()
        text = synonyms_text if synonyms_text is not None else _data_file("synonyms.txt").read_text()
        synonyms = [s.strip().split(", ") for s in text.splitlines()]
        self.mscoco_objects: set[str] = set()
        self.inverse_synonym_dict: dict[str, str] = {}
        for synonym in synonyms:
            self.mscoco_objects.update(synonym)
            for s in synonym:
                self.inverse_synonym_dict[s] = synonym[0]
        self.double_word_dict = {w: w for w in COCO_DOUBLE_WORDS}
        for animal in ANIMAL_WORDS:
            self.double_word_dict[f"baby {animal}"] = animal
            self.double_word_dict[f"adult {animal}"] = animal
        for vehicle in VEHICLE_WORDS:
            self.double_word_dict[f"passenger {vehicle}"] = vehicle
        self.double_word_dict["bow tie"] = "tie"
        self.double_word_dict["toilet seat"] = "toilet"
        self.double_word_dict["wine glas"] = "wine glass"
        self.gt: dict[Any, set[str]] = {k: set(v) for k, v in gt.items()}

    # ------------------------------------------------------------------ ground truth
    @classmethod
    def from_packaged(cls) -> "Chair":
        """Ground truth for all 123,287 COCO 2014 images, shipped with the package (no COCO download)."""
        return cls(packaged_ground_truth())

    @classmethod
    def load(cls, annotation_dir: str | os.PathLike | None = None) -> "Chair":
        """`from_coco(annotation_dir)` when a folder is given, else the packaged COCO 2014 ground truth."""
        return cls.from_coco(annotation_dir) if annotation_dir else cls.from_packaged()

    @classmethod
    def for_images(cls, images: Iterable[str | os.PathLike], annotations: str | os.PathLike | None = None) -> "Chair":
        """Ground truth chosen from the images, never from the model: `annotations` when given; else
        the COCO-format dataset the images belong to (an ``annotations/instances_*.json`` folder next to
        their folder or one or two levels up, as the organism's scenes and a COCO download lay out) and
        the packaged COCO 2014 objects for images outside such a dataset (COCO file names)."""
        if annotations:
            return cls.from_coco(annotations)
        folders = sorted({d for d in (annotation_dir_for(Path(str(p))) for p in images)}, key=str)
        if folders == [None]:
            return cls.from_packaged()
        sources = [cls.from_coco(d) if d is not None else cls.from_packaged() for d in folders]
        if len(sources) == 1:
            return sources[0]
        merged: dict[Any, set[str]] = {}
        for d, src in zip(folders, sources):
            clash = next((k for k in src.gt if k in merged and merged[k] != src.gt[k]), None)
            if clash is not None:
                raise AfipError(f"image id {clash} has different ground truth in the datasets of these images "
                                f"({d or 'packaged COCO 2014'}); evaluate them separately or give {option('annotations')}")
            merged.update(src.gt)
        return cls(merged)

    @classmethod
    def from_coco(cls, annotation_dir: str | os.PathLike) -> "Chair":
        """Ground truth as the reference builds it: instance categories, then caption objects, of every
        ``instances_*.json`` / ``captions_*.json`` in `annotation_dir` (COCO 2014 train+val, or any
        COCO-format dataset such as the model organism's scenes)."""
        root = Path(annotation_dir)
        inst_files = sorted(root.glob("instances_*.json"))
        cap_files = sorted(root.glob("captions_*.json"))
        if not inst_files:
            raise AfipError(f"no instances_*.json in {root}: give the folder of COCO-format annotation files")
        chair = cls({})
        gt: dict[Any, list[str]] = defaultdict(list)
        for f in inst_files:
            coco = _load_coco(f)
            names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
            for ann in coco.loadAnns(coco.getAnnIds()):
                gt[ann["image_id"]].append(chair.inverse_synonym_dict[names[ann["category_id"]]])
            for img_id in coco.getImgIds():
                gt.setdefault(img_id, [])
        for f in cap_files:
            coco = _load_coco(f)
            for ann in coco.loadAnns(coco.getAnnIds()):
                gt[ann["image_id"]].extend(chair.caption_to_words(ann["caption"])[1])
        chair.gt = {k: set(v) for k, v in gt.items()}
        return chair

    # ------------------------------------------------------------------ the algorithm
    def caption_to_words(self, caption: str) -> tuple[list[str], list[str], list[int], list[str], list[Mention]]:
        """words, node words, reference idxs, merged words, and mentions with char spans."""
        tokens = nltk.word_tokenize(caption.lower())
        tagged = nltk.pos_tag(tokens)
        wnl = WordNetLemmatizer()
        lemmas = [wnl.lemmatize(w, pos=_wordnet_pos(tag, wordnet) or wordnet.NOUN) for w, tag in tagged]

        i = 0
        double_words: list[str] = []
        idxs: list[int] = []
        extent: list[tuple[int, int]] = []  # lemma range each merged word covers
        while i < len(lemmas):
            idxs.append(i)
            double_word = " ".join(lemmas[i : i + 2])
            if double_word in self.double_word_dict:
                double_words.append(self.double_word_dict[double_word])
                extent.append((i, i + 1))
                i += 2
            else:
                double_words.append(lemmas[i])
                extent.append((i, i))
                i += 1
        words = double_words
        kept = list(range(len(words)))
        if "toilet" in words and "seat" in words:
            kept = [k for k in kept if words[k] != "seat"]
            words = [w for w in words if w != "seat"]
        # the reference's idxs (misaligned after the toilet/seat rule, kept for fidelity)
        ref_idxs = [idxs[k] for k, w in enumerate(words) if w in self.mscoco_objects]
        true_pos = [kept[k] for k, w in enumerate(words) if w in self.mscoco_objects]
        words = [w for w in words if w in self.mscoco_objects]
        node_words = [self.inverse_synonym_dict[w] for w in words]

        spans = _char_spans(caption, tokens)
        mentions = []
        for w, node, k in zip(words, node_words, true_pos):
            first, last = extent[k]
            mentions.append(Mention(w, node, False, spans[first][0], spans[last][1], first))
        return words, node_words, ref_idxs, double_words, mentions

    def evaluate(self, image_id: Any, caption: str, gt: Iterable[str] | None = None) -> CaptionResult:
        """CHAIR of one caption against `gt` (default: the evaluator's ground truth for image_id)."""
        gt_objects = set(gt) if gt is not None else self.gt.get(image_id, set())
        words, node_words, idxs, raw_words, mentions = self.caption_to_words(caption)
        hallucinated, h_idxs = [], []
        for word, node, idx, mention in zip(words, node_words, idxs, mentions):
            if node not in gt_objects:
                hallucinated.append((word, node))
                h_idxs.append(idx)
                mention.hallucinated = True
        res = CaptionResult(image_id, caption, raw_words, list(node_words), hallucinated, h_idxs, gt_objects,
                            mentions, metrics={})
        res.metrics = {
            "CHAIRs": int(bool(hallucinated)),
            "CHAIRi": len(hallucinated) / float(len(words)) if words else 0.0,
            "Recall": len(res.recalled) / len(gt_objects) if gt_objects else 0.0,
            "Len": 0.0,
        }
        return res

    def compute(self, captions: Iterable[tuple[Any, str]], progress: bool = False) -> ChairResult:
        """Per-caption results and overall CHAIRs, CHAIRi, Recall, Len (Len = 0.01 x mean words)."""
        sentences, warnings = [], []
        n_h_caps = h_words = coco_words = len_words = recall_n = gt_n = 0
        for image_id, caption in tqdm(list(captions), desc="CHAIR", disable=not progress):
            if image_id not in self.gt:
                warnings.append(f"image id {image_id!r} has no ground truth; caption skipped")
                continue
            res = self.evaluate(image_id, caption)
            sentences.append(res)
            n_h_caps += res.metrics["CHAIRs"]
            h_words += len(res.hallucinated)
            coco_words += len(res.generated)
            len_words += len(res.words)
            recall_n += len(res.recalled)
            gt_n += len(res.gt)
        n = len(sentences)
        overall = {
            "CHAIRs": n_h_caps / n if n else 0.0,
            "CHAIRi": h_words / coco_words if coco_words else 0.0,
            "Recall": recall_n / gt_n if gt_n else 0.0,
            "Len": 0.01 * len_words / n if n else 0.0,
        }
        if n and not coco_words:
            warnings.append("no caption mentions a COCO object: CHAIRi is 0 by convention")
        return ChairResult(sentences, overall, warnings)


COCO_FILE = re.compile(r"COCO_(train|val)2014_\d+$")


def annotation_dir_for(image: Path) -> Path | None:
    """The ``annotations`` folder of the COCO-format dataset `image` belongs to, or None for COCO 2014
    file names (the packaged objects serve those) and images outside any such dataset."""
    if COCO_FILE.match(image.stem):
        return None
    for path in dict.fromkeys([image, image.resolve()]):  # a link to an image of a dataset: that dataset
        for parent in list(path.parents)[:3]:
            folder = parent / "annotations"
            if folder.is_dir() and any(folder.glob("instances_*.json")):
                return folder.resolve()
    return None


def _wordnet_pos(tag: str, wordnet: Any) -> str | None:
    if tag.startswith("J"):
        return wordnet.ADJ
    if tag.startswith("V"):
        return wordnet.VERB
    if tag.startswith("N"):
        return wordnet.NOUN
    if tag.startswith("R"):
        return wordnet.ADV
    return None


def _load_coco(path: Path) -> Any:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as e:
        raise AfipError(f"{path} is not a COCO-format annotation file ({e})") from e


@lru_cache(maxsize=1)
def packaged_ground_truth() -> dict[int, set[str]]:
    """{image_id: set of node words} for every COCO 2014 image (shipped, derived by the reference build)."""
    with _data_file("coco2014_gt_objects.json.gz").open("rb") as fh:
        data = json.loads(gzip.decompress(fh.read()))
    return {int(k): set(v) for k, v in data.items()}


def load_captions(path: str | os.PathLike, image_id_key: str = "image_id",
                  caption_key: str = "caption") -> tuple[list[tuple[Any, str]], list[str]]:
    """(image_id, caption) pairs from a .json list or .jsonl file, and warnings for skipped lines."""
    p = Path(path)
    if not p.exists():
        raise AfipError(f"caption file not found: {p}")
    records: list[tuple[int, Any]] = []
    warnings: list[str] = []
    if p.suffix == ".json":
        data = read_json(p, "caption file")
        if isinstance(data, dict) and "sentences" in data:
            data = data["sentences"]
        if not isinstance(data, list):
            raise AfipError(f"{p} must hold a JSON list of {{{image_id_key!r}, {caption_key!r}}} objects")
        records = list(enumerate(data, start=1))
    elif p.suffix == ".jsonl":
        for lineno, line in enumerate(p.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((lineno, json.loads(line)))
            except json.JSONDecodeError:
                warnings.append(f"line {lineno}: not valid JSON, skipped")
    else:
        raise AfipError(f"unsupported caption file {p.name}: use .json or .jsonl (or a trace store folder)")
    out = []
    for lineno, obj in records:
        if not isinstance(obj, dict) or image_id_key not in obj or caption_key not in obj:
            warnings.append(f"line {lineno}: no {image_id_key!r} and {caption_key!r} keys, skipped")
            continue
        if not isinstance(obj[caption_key], str):
            warnings.append(f"line {lineno}: {caption_key!r} is not text, skipped")
            continue
        image_id = obj[image_id_key]
        if isinstance(image_id, str) and image_id.isdigit():
            image_id = int(image_id)
        out.append((image_id, obj[caption_key]))
    return out, warnings
