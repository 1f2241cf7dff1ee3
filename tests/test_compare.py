"""`compare`, `chair-eval` and `pope-eval` end to end on a saved tiny LLaVA and a few organism scenes."""

from __future__ import annotations

import json

import pytest

from afip_probe import store as st
from afip_probe.cli import main
from afip_probe.errors import AfipError
from afip_probe.images import load_image
from afip_probe.metrics.comparison import BASELINE
from afip_probe.pipelines.comparison import compare, conditions_for
from afip_probe.pipelines.settings import GenerationSettings
from afip_probe.metrics.stats import bootstrap_ci
from afip_probe.models import adapter_for, tiny
from afip_probe.organism import dataset as sc


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    model, processor = tiny.tiny_llava(layers=3, heads=4, kv_heads=2, image_size=32, seed=1)
    model.save_pretrained(tmp / "model")
    processor.save_pretrained(tmp / "model")
    root = sc.write_split(tmp / "scenes", "val", 4, seed=0)
    return tmp, model, processor, root


def test_compare_store_tables_and_figures(setup):
    tmp, model, processor, root = setup
    specs = ["afip:layers=1-,tau=100,gamma=2", "pai:alpha=0.5"]
    settings = GenerationSettings(str(tmp / "model"), level="maps", max_new_tokens=8, batch_size=2, device="cpu")
    res = compare(settings, [root / "images" / "val"], tmp / "out", specs, annotations=root / "annotations",
                  progress=False)
    store = st.open(tmp / "out" / "store")
    samples = store.samples("ok")
    conds = [BASELINE, specs[0], specs[0] + ",history=off", specs[1]]
    assert sorted(samples.condition.unique()) == sorted(conds)
    assert (samples.groupby("condition").size() == 4).all()
    assert list(res.chair.condition) == conds and set(res.chair.columns) >= {"CHAIRs", "CHAIRi", "Recall", "Len"}
    assert len(res.paired) == 3 * 2 and res.paired.n.eq(4).all()
    for f in ("chair.csv", "paired.csv", "report.md", "figures/var_vs_position.png",
              "figures/attention_before_after.png"):
        assert (tmp / "out" / f).exists(), f
    # the baseline condition is plain greedy generation, token for token
    adapter = adapter_for(model, processor)
    base = samples[samples.condition == BASELINE].sort_values("sample_id")
    imgs = [load_image(p) for p in sc.image_paths(root, "val")]
    inputs = adapter.build_inputs(imgs, "Please describe this image in detail.")
    plain = model.generate(**inputs, max_new_tokens=8, do_sample=False)[:, inputs["input_ids"].shape[1]:]
    eos = model.generation_config.eos_token_id
    for ids, row in zip(plain.tolist(), base.itertuples()):
        cut = ids.index(eos) + 1 if eos in ids else len(ids)
        assert list(row.generated_ids) == ids[:cut]
    # the corrected condition records corrected rows next to the raw ones
    afip_id = samples[samples.condition == specs[0]].sample_id.iloc[0]
    assert "corrected/head/var" in store.arrays(afip_id)


def test_conditions_and_bootstrap():
    names = [n for n, _ in conditions_for(["afip", "hgai:alpha=0.2"])]
    assert names == [BASELINE, "afip", "afip:history=off", "hgai:alpha=0.2"]
    assert [n for n, _ in conditions_for(["afip:gamma=0.3"], history_ablation=False)] == [BASELINE, "afip:gamma=0.3"]
    with pytest.raises(AfipError):
        conditions_for(["afip", "afip:history=off"])  # the ablation would duplicate the second spec
    mean, lo, hi = bootstrap_ci([0.0, 0.1, 0.2, 0.3, 0.0, 0.1])
    assert lo <= mean <= hi and mean == pytest.approx(0.1166666, abs=1e-6)
    assert bootstrap_ci([0.0, 0.0]) == (0.0, 0.0, 0.0)


def test_chair_eval_and_pope_eval_cli(setup, tmp_path, capsys):
    tmp, _model, _processor, root = setup
    common = ["--model", str(tmp / "model"), "--images", str(root / "images" / "val"), "--no-progress",
              "--device", "cpu", "--batch-size", "3"]
    out1, out2 = tmp_path / "plain.jsonl", tmp_path / "noop.jsonl"
    assert main(["chair-eval", *common, "--annotations", str(root / "annotations"), "--out", str(out1),
                 "--max-new-tokens", "6"]) == 0
    assert "CHAIRs" in capsys.readouterr().out
    assert main(["chair-eval", *common, "--annotations", str(root / "annotations"), "--out", str(out2),
                 "--max-new-tokens", "6", "--correct", "afip:head_correction=off,history=off,gate=off"]) == 0
    rows1 = [json.loads(x) for x in out1.read_text().splitlines()]
    rows2 = [json.loads(x) for x in out2.read_text().splitlines()]
    assert len(rows1) == 4 and {"image_id", "caption"} <= rows1[0].keys()
    assert [r["caption"] for r in rows1] == [r["caption"] for r in rows2]  # all switches off: identical
    # resume: a rerun appends nothing
    assert main(["chair-eval", *common, "--annotations", str(root / "annotations"), "--out", str(out1),
                 "--max-new-tokens", "6"]) == 0
    assert len(out1.read_text().splitlines()) == 4

    questions = tmp_path / "q.jsonl"
    with questions.open("w") as f:
        for i, s in enumerate(sc.iter_scenes(0, "val", 4)):
            f.write(json.dumps({"question_id": i, "image": s.file_name, "text": s.questions[0][0],
                                "label": s.questions[0][1].rstrip(".").lower()}) + "\n")
    answers = tmp_path / "a.jsonl"
    assert main(["pope-eval", *common, "--questions", str(questions), "--out", str(answers)]) == 0
    printed = capsys.readouterr().out
    assert "Accuracy" in printed or "accuracy" in printed
    got = [json.loads(x) for x in answers.read_text().splitlines()]
    assert sorted(r["question_id"] for r in got) == [0, 1, 2, 3] and all(isinstance(r["text"], str) for r in got)


def test_compare_bad_input(setup, tmp_path, capsys):
    tmp, *_ = setup
    assert main(["compare", "--model", str(tmp / "model"), "--images", str(tmp_path / "none"), "--out",
                 str(tmp_path / "o"), "--correct", "afip"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["compare", "--model", str(tmp / "model"), "--images", str(tmp), "--out", str(tmp_path / "o2"),
                 "--correct", "bogus"]) == 2
    assert "unknown corrector" in capsys.readouterr().err
