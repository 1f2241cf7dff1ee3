"""The model organism: scene generator, training script, bundled checkpoint (docs/design.md §9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from afip_probe.metrics.chair import Chair
from afip_probe.organism import checkpoint_dir
from afip_probe.organism import dataset as sc
from afip_probe.pipelines.organism_training import TrainConfig, train

SMALL = dict(layers=2, heads=2, hidden=32, intermediate=64, vision_layers=1, vision_hidden=32, vocab_size=300,
             batch_size=4, train_scenes=24, warmup=2)


def test_same_seed_same_bytes(tmp_path):
    a = sc.write_split(tmp_path / "a", "val", 25, seed=3)
    b = sc.write_split(tmp_path / "b", "val", 25, seed=3)
    c = sc.write_split(tmp_path / "c", "val", 25, seed=4)
    for name in ("instances_val.json", "captions_val.json", "questions_val.jsonl"):
        assert (a / "annotations" / name).read_bytes() == (b / "annotations" / name).read_bytes()
        assert (a / "annotations" / name).read_bytes() != (c / "annotations" / name).read_bytes()
    for pa, pb in zip(sc.image_paths(a, "val"), sc.image_paths(b, "val")):
        assert pa.read_bytes() == pb.read_bytes()


def test_coco_format_and_content(tmp_path):
    root = sc.write_split(tmp_path, "val", 60, seed=0)
    inst = json.loads((root / "annotations" / "instances_val.json").read_text())
    caps = json.loads((root / "annotations" / "captions_val.json").read_text())
    assert len(inst["images"]) == 60 and len(caps["annotations"]) == 120
    cats = {c["id"]: c["name"] for c in inst["categories"]}
    assert len(cats) >= 24 and cats[1] == "person" and cats[67] == "dining table" and cats[72] == "tv"
    per_image = Counter(a["image_id"] for a in inst["annotations"])
    assert min(per_image.values()) >= 1 and max(per_image.values()) <= 8 and len(per_image) == 60
    for a in inst["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64
    # pycocotools reads it, and CHAIR's ground truth equals the annotated categories
    chair = Chair.from_coco(root / "annotations")
    for img in inst["images"]:
        names = {cats[a["category_id"]] for a in inst["annotations"] if a["image_id"] == img["id"]}
        assert chair.gt[img["id"]] == names


def test_every_caption_is_exact_under_chair():
    """Each caption names every present category and nothing else, as CHAIR parses it."""
    chair = Chair({})
    for cat in sc.CATEGORIES:
        for noun in cat.nouns:
            assert chair.caption_to_words(f"There is a {noun} here.")[1] == [cat.name]
        for noun in cat.plural:
            assert chair.caption_to_words(f"There are two {noun} here.")[1] == [cat.name]
    for s in sc.iter_scenes(0, "val", 150):
        for caption in s.captions:
            res = chair.evaluate(s.image_id, caption, gt=s.categories)
            assert res.hallucinated == [] and set(res.generated) == s.categories, caption


def test_cooccurrence_priors():
    scenes = [s.categories for s in sc.iter_scenes(0, "train", 3000)]
    p = lambda c: sum(c in s for s in scenes) / len(scenes)  # noqa: E731
    given = lambda b, a: sum(b in s and a in s for s in scenes) / max(1, sum(a in s for s in scenes))  # noqa: E731
    for a, b in [("fork", "knife"), ("tv", "remote"), ("dog", "frisbee")]:
        assert given(b, a) > 2 * p(b)  # companions co-occur well above chance...
        assert given(b, a) < 0.95  # ...but not always


def test_training_is_deterministic_and_saves_a_plain_llava(tmp_path):
    cfg = TrainConfig(steps=3, **SMALL)
    log1 = train(cfg, tmp_path / "ckpt", progress=False)
    log2 = train(cfg, None, progress=False)
    assert [round(x, 4) for x in log1["loss"]] == [round(x, 4) for x in log2["loss"]]
    assert log1["loss"][0] > 0
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tmp_path / "ckpt")
    processor = AutoProcessor.from_pretrained(tmp_path / "ckpt")
    assert model.config.text_config.num_hidden_layers == 2 and processor.tokenizer.pad_token == "<pad>"


CHECK_SCRIPT = r"""
import json, sys
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
path, image = sys.argv[1], sys.argv[2]
model = LlavaForConditionalGeneration.from_pretrained(path)
processor = AutoProcessor.from_pretrained(path)
conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Please describe this image in detail."}]}]
prompt = processor.apply_chat_template(conv, add_generation_prompt=True)
inputs = processor(images=Image.open(image), text=prompt, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=60, do_sample=False)
print(json.dumps({"caption": processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True),
                  "afip": any(m.startswith("afip_probe") for m in sys.modules)}))
"""


def test_bundled_checkpoint_loads_with_plain_transformers(tmp_path):
    ckpt = checkpoint_dir()
    size = sum(f.stat().st_size for f in ckpt.iterdir())
    assert size < 15 * 2**20
    root = sc.write_split(tmp_path, "val", 3, seed=0)
    image = sc.image_paths(root, "val")[0]
    env = dict(os.environ, PYTHONPATH="")
    out = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, str(ckpt), str(image)], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["afip"]
    scene = sc.make_scene(0, "val", 0)
    res = Chair({}).evaluate(scene.image_id, result["caption"], gt=scene.categories)
    assert res.generated, result["caption"]  # it names COCO objects
    assert res.recalled, (result["caption"], scene.categories)  # and finds at least one that is there


@pytest.mark.slow
def test_organism_recalls_and_still_hallucinates():
    """Small form of the held-out evaluation (the full 500-scene numbers are in the README)."""
    from afip_probe.pipelines.organism_eval import evaluate_heldout

    report = evaluate_heldout("organism", n=150, progress=False)
    o = report.overall
    assert o["Recall"] >= 0.75
    assert 0.15 <= o["CHAIRs"] <= 0.75 and 0.03 <= o["CHAIRi"] <= 0.35
    assert report.companion_share > 0.5
