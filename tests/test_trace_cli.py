"""`afip-probe trace` end to end on a saved tiny LLaVA: store contents, bad input, SIGKILL + resume."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import afip_probe
import afip_probe.store as st
from afip_probe.cli import main
from afip_probe.models import adapter_for, tiny

from .faults import kill_at

NEW_TOKENS = 6


@pytest.fixture(scope="module")
def saved_llava(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_llava")
    model, processor = tiny.tiny_llava(layers=2, heads=4, kv_heads=2)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    images = root / "images"
    images.mkdir()
    for i, img in enumerate(tiny.random_images(4, seed=3)):
        img.save(images / f"COCO_val2014_{i + 1:012d}.jpg")
    return root / "model", images


def run_cli(*args: str) -> int:
    return main([*map(str, args), "--no-progress"] if args and args[0] == "trace" else list(map(str, args)))


def test_cli_trace_end_to_end(saved_llava, tmp_path):
    model_dir, images = saved_llava
    out = tmp_path / "store"
    rc = run_cli("trace", "--model", model_dir, "--images", images, "--out", out,
                 "--max-new-tokens", NEW_TOKENS, "--batch-size", 3, "--record", "maps", "--device", "cpu")
    assert rc == 0
    store = st.open(out)
    samples = store.samples()
    assert list(samples["sample_id"]) == [f"COCO_val2014_{i:012d}" for i in range(1, 5)]
    assert list(samples["image_id"]) == [1, 2, 3, 4]
    assert (samples["status"] == "ok").all()
    tokens = store.tokens()
    assert len(tokens) == samples["num_tokens"].sum()
    assert tokens.groupby("sample_id").size().tolist() == samples["num_tokens"].tolist()
    # token texts tile the output text
    for _, row in samples.iterrows():
        tok = tokens[tokens.sample_id == row.sample_id]
        assert "".join(tok.token_text) == row.output_text
        arrays = store.arrays(row.sample_id)
        assert arrays["head/var"].shape == (row.num_tokens, 2, 4)
        assert arrays["maps"].shape == (row.num_tokens, 2, 16)
        np.testing.assert_allclose(tok.var_mean, arrays["head/var"].mean(axis=(1, 2)), rtol=1e-6)

    # the same as tracing in-process with the Python API (the CLI adds nothing of its own)
    model = afip_probe.models.load(str(model_dir), device="cpu")
    from afip_probe.images import load_image

    imgs = [load_image(p) for p in sorted(images.iterdir())]
    inputs = model.adapter.build_inputs(imgs, "Please describe this image in detail.")
    with afip_probe.trace(model.model, model.processor) as rec:
        model.model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    for tr, (_, row) in zip(rec.traces, samples.iterrows()):
        assert tr.generated_ids == list(row.generated_ids)
        np.testing.assert_allclose(store.arrays(row.sample_id)["head/var"], tr.head["var"], atol=1e-5)


def test_single_read_is_recorded_in_the_manifest_and_records_the_same(saved_llava, tmp_path):
    """`--single-read` traces with exact=False: the manifest says so, the tokens and records equal the exact run's."""
    model_dir, images = saved_llava
    stores = {}
    for name, extra in (("exact", ()), ("single", ("--single-read",))):
        assert run_cli("trace", "--model", model_dir, "--images", images, "--out", tmp_path / name,
                       "--max-new-tokens", NEW_TOKENS, "--device", "cpu", *extra) == 0
        stores[name] = st.open(tmp_path / name)
    assert stores["exact"].settings["exact_outputs"] is True and stores["single"].settings["exact_outputs"] is False
    # which attention computed the outputs the tokens came from
    assert {s.settings["attn_implementation"] for s in stores.values()} == {"sdpa"}
    assert stores["exact"].settings["outputs"] == "the model's own sdpa attention, bit for bit"
    assert "softmax(B)·V in float32" in stores["single"].settings["outputs"]
    a, b = stores["exact"].samples(), stores["single"].samples()
    assert [list(x) for x in a.generated_ids] == [list(x) for x in b.generated_ids]
    for sid in a.sample_id:
        np.testing.assert_allclose(stores["exact"].arrays(sid)["head/var"], stores["single"].arrays(sid)["head/var"],
                                   atol=1e-5)


def test_bad_images_recorded_as_failed_and_run_goes_on(saved_llava, tmp_path, capsys):
    model_dir, images = saved_llava
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    listing = tmp_path / "list.txt"
    good = sorted(images.iterdir())[:2]
    listing.write_text("\n".join([str(good[0]), str(tmp_path / "missing.jpg"), str(tmp_path / "corrupt.jpg"), str(good[1])]))
    rc = run_cli("trace", "--model", model_dir, "--images", listing, "--out", tmp_path / "s",
                 "--max-new-tokens", 3, "--batch-size", 2)
    assert rc == 1
    captured = capsys.readouterr()
    assert "2 ok, 2 failed" in captured.out
    samples = st.open(tmp_path / "s").samples().set_index("sample_id")
    assert samples.loc["missing", "status"] == "failed" and "not found" in samples.loc["missing", "error"]
    assert samples.loc["corrupt", "status"] == "failed" and "cannot read image" in samples.loc["corrupt", "error"]
    assert (samples.drop(index=["missing", "corrupt"])["status"] == "ok").all()


def test_bad_arguments_are_one_line_errors(saved_llava, tmp_path, capsys):
    model_dir, images = saved_llava
    with pytest.raises(SystemExit) as exc:
        run_cli("trace", "--model", model_dir, "--images", images, "--out", tmp_path / "x", "--record", "everything")
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err

    assert run_cli("trace", "--model", model_dir, "--images", tmp_path / "nope", "--out", tmp_path / "y") == 2
    assert "no such file or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("trace", "--model", model_dir, "--images", empty, "--out", tmp_path / "y") == 2
    assert "no image files" in capsys.readouterr().err
    assert run_cli("trace", "--model", model_dir, "--images", images, "--out", tmp_path / "y", "--max-new-tokens", 0) == 2
    assert "at least 1" in capsys.readouterr().err


def test_text_only_model_is_a_clear_error(tmp_path, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=50)).save_pretrained(tmp_path / "llama")
    img = tmp_path / "a.png"
    tiny.random_images(1)[0].save(img)
    capsys.readouterr()
    assert run_cli("trace", "--model", tmp_path / "llama", "--images", img, "--out", tmp_path / "s") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "not a vision-language model" in err and "LLaVA-1.5" in err


def test_prompt_without_image_token_is_a_clear_error():
    model, processor = tiny.tiny_llava()
    adapter = adapter_for(model, processor)
    ids = processor.tokenizer(["USER: describe ASSISTANT:"], return_tensors="pt")
    with pytest.raises(afip_probe.AfipError, match="no image token"):
        with afip_probe.trace(model, processor):
            model.generate(**ids, max_new_tokens=2)
    assert adapter.model.config.text_config._attn_implementation == "sdpa"


def test_resume_refuses_other_settings(saved_llava, tmp_path, capsys):
    model_dir, images = saved_llava
    out = tmp_path / "s"
    assert run_cli("trace", "--model", model_dir, "--images", images, "--out", out, "--max-new-tokens", 2) == 0
    assert run_cli("trace", "--model", model_dir, "--images", images, "--out", out, "--max-new-tokens", 2) == 2
    assert "--resume" in capsys.readouterr().err
    assert run_cli("trace", "--model", model_dir, "--images", images, "--out", out, "--max-new-tokens", 2,
                   "--record", "full", "--resume") == 2
    assert "different settings" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    """Really kill a tracing subprocess with SIGKILL, check the store opens, resume to completion."""
    root = tmp_path
    model, processor = tiny.tiny_llava(layers=4, heads=4, hidden=128)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    (root / "images").mkdir()
    n = 24
    for i, img in enumerate(tiny.random_images(n, seed=5, sizes=[(40, 40)] * n)):
        img.save(root / "images" / f"img_{i:03d}.png")
    out = root / "store"
    cmd = [sys.executable, "-m", "afip_probe", "trace", "--model", str(root / "model"), "--images",
           str(root / "images"), "--out", str(out), "--max-new-tokens", "40", "--no-progress", "--device", "cpu"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    kill_at(cmd, "commit", 3, env)  # right after the third sample's row is committed
    store = st.open(out)
    n_before = len(store.samples())
    assert n_before == 3
    assert len(store.tokens()) == store.samples()["num_tokens"].sum()
    res = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"{n_before} already done" in res.stdout
    samples = st.open(out).samples()
    assert sorted(samples["sample_id"]) == [f"img_{i:03d}" for i in range(n)]
    assert (samples["status"] == "ok").all()
    tokens = st.open(out).tokens()
    assert not tokens.duplicated(["sample_id", "step"]).any()
    assert len(tokens) == samples["num_tokens"].sum()
    leftovers = [p for p in out.rglob("*.tmp")]
    assert leftovers == []  # files in flight at the kill are cleaned up by --resume


def test_python_api_store_roundtrip(tmp_path):
    model, processor = tiny.tiny_qwen2_vl()
    loaded = afip_probe.models.LoadedModel(model, processor, adapter_for(model, processor), "tiny-qwen")
    paths = []
    for i, img in enumerate(tiny.random_images(2, sizes=[(56, 56), (112, 56)])):
        paths.append(tmp_path / f"q{i}.png")
        img.save(paths[-1])
    from afip_probe.pipelines.settings import GenerationSettings
    from afip_probe.pipelines.tracing import trace_images

    settings = GenerationSettings(loaded.name, prompt="describe", level="full", max_new_tokens=4, batch_size=2)
    summary = trace_images(settings, paths, tmp_path / "s", loaded=loaded, progress=False)
    assert summary.ok == 2 and summary.failed == 0
    store = st.open(tmp_path / "s")
    rows = store.samples().set_index("sample_id")
    assert (rows.loc["q0", "grid_rows"], rows.loc["q0", "grid_cols"]) == (2, 2)
    assert (rows.loc["q1", "grid_rows"], rows.loc["q1", "grid_cols"]) == (2, 4)
    assert store.arrays("q1")["scores"].shape == (rows.loc["q1", "num_tokens"], 2, 4, 8)
    assert store.arrays("q1")["scores"].dtype == np.float16
    assert torch.is_tensor(torch.from_numpy(store.arrays("q0")["maps"]))
