"""CHAIR against the reference outputs of four real caption sets; token labels; POPE."""

from __future__ import annotations

import json

import numpy as np
import pytest

from afip_probe.cli import main
from afip_probe.metrics import pope
from afip_probe.metrics.chair import Chair, load_captions
from afip_probe.metrics.labels import label_store
from afip_probe.models.tiny import llama_style_tokenizer, qwen_style_tokenizer
from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS, ImageLayout, SampleRow, SampleTrace, token_rows
from afip_probe import store as st
from afip_probe.store import StoreWriter

MODELS = ["llava-1.5", "minigpt4", "instructblip", "shikra"]


@pytest.fixture(scope="module")
def chair():
    return Chair.from_packaged()


@pytest.mark.parametrize("name", MODELS)
def test_chair_equals_reference_caption_by_caption(chair, data_dir, name):
    gold = json.loads((data_dir / "golden/chair" / f"{name}_greedy.json").read_text())
    captions, warnings = load_captions(data_dir / "captions" / f"{name}_greedy.jsonl")
    assert not warnings and len(captions) == len(gold["sentences"]) == 500
    result = chair.compute(captions)
    for got, ref in zip(result.sentences, gold["sentences"]):
        mine = got.to_reference()
        assert mine["image_id"] == ref["image_id"]
        assert mine["words"] == ref["words"]
        assert mine["mscoco_generated_words"] == ref["mscoco_generated_words"]
        assert mine["mscoco_hallucinated_words"] == ref["mscoco_hallucinated_words"]
        assert mine["hallucination_idxs"] == ref["hallucination_idxs"]
        assert set(mine["mscoco_gt_words"]) == set(ref["mscoco_gt_words"])
        assert mine["metrics"] == ref["metrics"]
    assert result.overall == gold["overall_metrics"]


def test_mention_spans_point_at_the_words(chair):
    caption = "Two Hot Dogs, a teddy bear and a toilet seat; the toilet's seat is up. A passenger jet flies."
    res = chair.evaluate(1, caption, gt={"hot dog", "toilet"})
    found = [(caption[m.char_start:m.char_end], m.node, m.hallucinated) for m in res.mentions]
    assert found == [
        ("Hot Dogs", "hot dog", False),
        ("teddy bear", "teddy bear", True),
        ("toilet seat", "toilet", False),
        ("toilet", "toilet", False),
        ("passenger jet", "airplane", True),  # one merged mention, as the reference merges it
    ]


def _write_store(tmp_path, tokenizer, text, image_id=1):
    ids = tokenizer(text, add_special_tokens=False).input_ids
    t, rng = len(ids), np.random.default_rng(0)
    tr = SampleTrace(
        prompt_ids=[1, 2, 3], generated_ids=ids, layout=ImageLayout([1], (1, 1)),
        head={f: rng.random((t, 2, 2)).astype(np.float32) for f in HEAD_FIELDS},
        layer={f: rng.random((t, 2)).astype(np.float32) for f in LAYER_FIELDS},
        token_entropy=rng.random(t).astype(np.float32), logprob=rng.random(t).astype(np.float32),
    )
    writer = StoreWriter(tmp_path / "store", {"model": "hand-built", "record_level": "stats"})
    out_text, tokens = token_rows("s1", tr, tokenizer)
    row = SampleRow("s1", image="", prompt="", model="hand-built", image_id=image_id, output_text=out_text)
    writer.write_sample(row, tr, tokens)
    return st.open(tmp_path / "store"), out_text


@pytest.mark.parametrize("make_tokenizer", [llama_style_tokenizer, qwen_style_tokenizer], ids=["llama", "qwen"])
def test_token_labels_on_hand_built_store(tmp_path, make_tokenizer):
    corpus = ["a dog and a frisbee", "two hot dogs and a teddy bear"] * 5
    tokenizer = make_tokenizer(corpus, vocab_size=300)
    text = "a dog and a frisbee near two hot dogs and a teddy bear"
    store, out_text = _write_store(tmp_path, tokenizer, text)
    assert out_text.strip() == text
    labelled = label_store(store, Chair({1: {"dog", "hot dog"}}))
    hits = labelled[labelled.label != "none"]
    assert list(hits.object) == ["dog", "frisbee", "hot dog", "teddy bear"]
    assert list(hits.label) == ["real", "hallucinated", "real", "hallucinated"]
    starts = {"dog": out_text.index("dog"), "frisbee": out_text.index("frisbee"),
              "hot dog": out_text.index("hot dogs"), "teddy bear": out_text.index("teddy bear")}
    for row in hits.itertuples():
        # the labelled token is the first generated token whose span covers the mention's first character
        assert row.char_start <= starts[row.object] < row.char_end, (row.object, row.token_text)
        earlier = labelled[labelled.step < row.step]
        assert not ((earlier.char_start <= starts[row.object]) & (starts[row.object] < earlier.char_end)).any()
    assert (labelled.label == "none").sum() == len(labelled) - 4


def test_labels_need_ground_truth(tmp_path):
    store, _ = _write_store(tmp_path, llama_style_tokenizer(), "a dog", image_id=77)
    labelled = label_store(store, Chair({1: {"dog"}}))
    assert (labelled.label == "none").all()
    assert "no ground truth" in labelled.attrs["warnings"][0]


def test_malformed_caption_file_gives_counted_warnings(tmp_path, capsys):
    f = tmp_path / "caps.jsonl"
    f.write_text('{"image_id": 226988, "caption": "A dog on a couch."}\nnot json\n{"caption": "no id"}\n'
                 '{"image_id": 999999999, "caption": "A cat."}\n{"image_id": 337443, "caption": "Nothing here."}\n')
    assert main(["chair", str(f)]) == 0
    out = capsys.readouterr()
    assert "2 scored, 3 warnings" in out.out
    assert "not valid JSON" in out.err and "no ground truth" in out.err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert main(["chair", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["chair", str(tmp_path / "missing.jsonl")]) == 2


def test_chair_from_coco_annotations(tmp_path):
    cats = [{"id": 18, "name": "dog"}, {"id": 34, "name": "frisbee"}, {"id": 62, "name": "chair"}]
    inst = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0}],
            "categories": cats}
    caps = {"images": inst["images"], "annotations": [{"id": 1, "image_id": 2, "caption": "A puppy on a sofa."}]}
    (tmp_path / "instances_val.json").write_text(json.dumps(inst))
    (tmp_path / "captions_val.json").write_text(json.dumps(caps))
    chair = Chair.from_coco(tmp_path)
    assert chair.gt == {1: {"dog"}, 2: {"dog", "couch"}}


# ------------------------------------------------------------------------------------------- POPE

@pytest.mark.parametrize("sampling", pope.SAMPLINGS)
def test_pope_scores_shipped_files(data_dir, tmp_path, sampling):
    qfile = data_dir / "pope" / f"coco_pope_{sampling}.json"
    qs, _ = pope.read_jsonl(qfile, "question")
    assert len(qs) == 3000
    own = tmp_path / "own.jsonl"
    pope.write_jsonl(({"question_id": q["question_id"], "text": "Yes, there is." if q["label"] == "yes"
                       else "No, there is not."} for q in qs), own)
    metrics, _ = pope.evaluate_files(qfile, own)
    assert metrics["accuracy"] == 1.0 and metrics["f1"] == 1.0
    all_yes = tmp_path / "yes.jsonl"
    pope.write_jsonl(({"question_id": q["question_id"], "text": "Yes"} for q in qs), all_yes)
    metrics, _ = pope.evaluate_files(qfile, all_yes)
    assert metrics["yes_ratio"] == 1.0 and metrics["accuracy"] == 0.5


def test_pope_answer_parsing():
    assert pope.parse_answer("No. But yes.") == "no"
    assert pope.parse_answer("Yes, there is no doubt.") == "no"  # the protocol's rule: any 'no' before the period
    assert pope.parse_answer("There is not a dog") == "no"
    assert pope.parse_answer("Yes. No.") == "yes"
    assert pope.parse_answer("no,") == "no"


def _fixture():
    names = ["person", "dog", "frisbee", "car", "bus", "cat", "cup", "fork"]
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    cid = {n: i + 1 for i, n in enumerate(names)}
    scenes = {1: ["person", "dog", "frisbee"], 2: ["person", "dog", "frisbee", "car"], 3: ["person", "car", "bus"],
              4: ["person", "car", "bus", "dog"], 5: ["cat", "cup", "fork"], 6: ["person", "car", "dog"]}
    anns, k = [], 1
    for img, objs in scenes.items():
        for o in objs:
            anns.append({"id": k, "image_id": img, "category_id": cid[o]})
            k += 1
    data = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in scenes], "annotations": anns, "categories": cats}
    return data, scenes


@pytest.mark.parametrize("sampling", pope.SAMPLINGS)
def test_pope_question_building_rules(sampling):
    data, scenes = _fixture()
    qs = pope.build_questions(data, sampling, num_images=10, num_per_image=2, seed=1)
    by_image = {}
    for q in qs:
        by_image.setdefault(int(q["image"].split(".")[0]), []).append(q)
    assert set(by_image) == set(scenes)
    freq = {"person": 5, "dog": 4, "car": 4, "frisbee": 2, "bus": 2, "cat": 1, "cup": 1, "fork": 1}
    for img, questions in by_image.items():
        assert [q["label"] for q in questions] == ["yes", "no"] * 2
        objs = [q["text"][len("Is there a "):-len(" in the image?")] for q in questions]
        pos, neg = objs[0::2], objs[1::2]
        assert set(pos) <= set(scenes[img])
        assert not set(neg) & set(scenes[img])
        absent = [n for n in freq if n not in scenes[img]]
        if sampling == "popular":
            assert neg == sorted(absent, key=lambda n: (-freq[n], n))[:2]
        if sampling == "adversarial":
            together = {n: sum(1 for objs2 in scenes.values() for p in scenes[img] if p in objs2 and n in objs2)
                        for n in absent}
            assert neg == sorted(absent, key=lambda n: (-together[n], n))[:2]


def test_pope_cli(data_dir, tmp_path, capsys):
    qfile = data_dir / "pope/coco_pope_random.json"
    ans = tmp_path / "a.jsonl"
    ans.write_text('{"question_id": 1, "text": "Yes"}\nbroken\n')
    assert main(["pope", str(qfile), str(ans)]) == 0
    out = capsys.readouterr()
    assert "questions : 1" in out.out and "not valid JSON" in out.err
    assert main(["pope", str(tmp_path / "none.json"), str(ans)]) == 2


def test_chair_cli_on_a_trace_store_writes_labels(tmp_path, capsys):
    import pandas as pd

    # COCO val2014 image 226988 has {dining table, person, pizza} in the packaged ground truth
    store, text = _write_store(tmp_path, llama_style_tokenizer(["a person with a pizza and a dog"] * 5),
                               "a person with a pizza and a dog", image_id=226988)
    out = tmp_path / "labels.parquet"
    assert main(["chair", str(store.root), "--labels", str(out), "-o", str(tmp_path / "c.json")]) == 0
    printed = capsys.readouterr().out
    assert "token labels: 2 real, 1 hallucinated" in printed
    labelled = pd.read_parquet(out)
    assert list(labelled.loc[labelled.label != "none", "object"]) == ["person", "pizza", "dog"]
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["overall_metrics"]["CHAIRi"] == pytest.approx(1 / 3)
