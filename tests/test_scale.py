"""Sharded runs + merge, repeated kills + resume, verify, batching equals batch size 1 (issue: scale)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import afip_probe.store as st
from afip_probe.cli import main
from afip_probe.errors import StoreError
from afip_probe.models import tiny
from afip_probe.store.merge import merge
from afip_probe.store.verify import verify

from .faults import kill_at

N_IMAGES = 10


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    model, processor = tiny.tiny_llava(layers=2, heads=4, kv_heads=2, hidden=64, seed=2)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    (root / "images").mkdir()
    sizes = [(40 + 4 * i, 36 + 2 * i) for i in range(N_IMAGES)]
    for i, img in enumerate(tiny.random_images(N_IMAGES, seed=9, sizes=sizes)):
        img.save(root / "images" / f"COCO_val2014_{i + 1:012d}.png")
    return root


def _cmd(root, out, *extra):
    return [sys.executable, "-m", "afip_probe", "trace", "--model", str(root / "model"), "--images",
            str(root / "images"), "--out", str(out), "--max-new-tokens", "12", "--record", "maps",
            "--no-progress", "--device", "cpu", *map(str, extra)]


ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def _same_store(a, b):
    """Same samples, tokens and arrays (ids exact, floats to 1e-5)."""
    sa, sb = st.open(a), st.open(b)
    ra = sa.samples().sort_values("sample_id").reset_index(drop=True)
    rb = sb.samples().sort_values("sample_id").reset_index(drop=True)
    assert list(ra.sample_id) == list(rb.sample_id) and (ra.status == "ok").all()
    for col in ("output_text", "num_tokens", "image_id", "grid_rows", "grid_cols"):
        assert list(ra[col]) == list(rb[col]), col
    assert [list(x) for x in ra.generated_ids] == [list(x) for x in rb.generated_ids]
    ta, tb = sa.tokens(), sb.tokens()
    pd.testing.assert_frame_equal(ta[["sample_id", "step", "token_id", "token_text"]],
                                  tb[["sample_id", "step", "token_id", "token_text"]])
    np.testing.assert_allclose(ta.var_mean, tb.var_mean, atol=1e-5)
    for sid in ra.sample_id:
        xa, xb = sa.arrays(sid), sb.arrays(sid)
        assert set(xa) == set(xb)
        for k in xa:
            np.testing.assert_allclose(np.asarray(xa[k], np.float32), np.asarray(xb[k], np.float32),
                                       atol=1e-3 if k == "maps" else 1e-5, err_msg=f"{sid} {k}")


def test_two_shard_processes_merge_to_the_single_run(saved, tmp_path):
    single = tmp_path / "single"
    assert subprocess.run(_cmd(saved, single, "--batch-size", 1), env=ENV, capture_output=True).returncode == 0
    procs = [subprocess.Popen(_cmd(saved, tmp_path / f"s{i}", "--shard", f"{i}/2"), env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]  # default batch 8
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-1000:]
    assert len(st.open(tmp_path / "s0").samples()) == 5 and st.open(tmp_path / "s1").settings["shard"] == "1/2"
    assert main(["merge", str(tmp_path / "merged"), str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    _same_store(tmp_path / "merged", single)  # also: batched (8, left-padded) == batch size 1
    assert verify(tmp_path / "merged").ok
    assert "shard" not in st.open(tmp_path / "merged").settings


def test_shard_auto_from_environment(saved, tmp_path):
    env = dict(ENV, RANK="1", WORLD_SIZE="3", LOCAL_RANK="1")
    res = subprocess.run(_cmd(saved, tmp_path / "run", "--shard", "auto"), env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-1000:]
    store = st.open(tmp_path / "run.shard1of3")
    assert sorted(store.samples().image_id) == [2, 5, 8]


def test_merge_refuses_mixed_or_overlapping_shards(saved, tmp_path, capsys):
    for i, extra in enumerate([("--shard", "0/2"), ("--shard", "0/2"), ("--shard", "1/2", "--record", "stats")]):
        assert main(_cmd(saved, tmp_path / f"s{i}", *extra)[3:]) == 0
    assert main(["merge", str(tmp_path / "m1"), str(tmp_path / "s0"), str(tmp_path / "s1")]) == 2
    assert "in both" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "m2"), str(tmp_path / "s0"), str(tmp_path / "s2")]) == 2
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(StoreError):
        merge(tmp_path / "m3", [])
    assert main(["trace", *_cmd(saved, tmp_path / "x", "--shard", "3/2")[4:]]) == 2
    assert "0 <= i < N" in capsys.readouterr().err


def test_verify_finds_truncated_files_and_fix_lets_resume_redo_them(saved, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(_cmd(saved, out)[3:]) == 0
    assert main(["verify", str(out)]) == 0
    ids = sorted(st.open(out).samples().sample_id)
    tensors = out / "tensors" / f"{ids[1]}.safetensors"
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    tokens = out / "tokens" / f"{ids[3]}.parquet"
    tokens.write_bytes(tokens.read_bytes()[:100])
    report = verify(out)
    assert sorted(sid for sid, _ in report.problems) == [ids[1], ids[3]]
    assert main(["verify", str(out)]) == 1
    err = capsys.readouterr().out
    assert ids[1] in err and "truncated" in err
    with pytest.raises(StoreError, match="damaged or truncated"):
        st.open(out).arrays(ids[1])
    assert main(["verify", str(out), "--fix"]) == 1
    assert main(_cmd(saved, out, "--resume")[3:]) == 0
    assert verify(out).ok and len(st.open(out).samples("ok")) == N_IMAGES


# (where the writer stops, which sample of that process): after a commit, between a sample's tensors and
# its tokens, between its tokens and its row
KILL_POINTS = [("commit", 1), ("tensors", 2), ("tokens", 1)]


@pytest.mark.slow
def test_killed_repeatedly_at_chosen_points_then_resumed(saved, tmp_path):
    """SIGKILL a tracing subprocess three times at chosen points of the writer; each resume keeps finished work."""
    out, clean = tmp_path / "store", tmp_path / "clean"
    assert subprocess.run(_cmd(saved, clean, "--batch-size", 2), env=ENV).returncode == 0
    done = 0
    for where, k in KILL_POINTS:
        kill_at(_cmd(saved, out, "--batch-size", 2) + (["--resume"] if out.exists() else []), where, k, ENV)
        done += k if where == "commit" else k - 1  # samples committed by the killed run
        store = st.open(out)
        assert len(store.samples()) == done  # nothing finished is lost, nothing half-written counts
        assert len(store.tokens()) == store.samples().num_tokens.sum()
    res = subprocess.run(_cmd(saved, out, "--batch-size", 2, "--resume"), env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-1000:]
    assert f"{done} already done" in res.stdout
    report = verify(out)
    assert report.ok and report.samples_ok == N_IMAGES and report.leftovers == []
    _same_store(out, clean)


def test_torchrun_two_processes_shard_auto_then_merge(saved, tmp_path):
    """The launcher path (torchrun; accelerate launch sets the same RANK/WORLD_SIZE variables)."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    # --standalone: the rendezvous binds a free port (never the default 29500 another job may hold)
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "afip_probe.cli"] + _cmd(saved, tmp_path / "run", "--shard", "auto")[3:]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    shards = [tmp_path / "run.shard0of2", tmp_path / "run.shard1of2"]
    assert main(["merge", str(tmp_path / "merged"), *map(str, shards)]) == 0
    single = tmp_path / "single"
    assert main(_cmd(saved, single, "--batch-size", 1)[3:]) == 0
    _same_store(tmp_path / "merged", single)


def test_a_store_of_another_schema_version_is_one_clear_error(saved, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(_cmd(saved, out, "--max-images", 2)[3:]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="schema version 99, this afip-probe reads version 1"):
        st.open(out)
    for argv in (["verify", str(out)], ["figures", str(out), "--out", str(tmp_path / "f")],
                 _cmd(saved, out, "--max-images", 2, "--resume")[3:]):
        assert main(argv) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
        assert len(err) == 1 and "schema version 99" in err[0]


def test_merge_keeps_failed_samples_failed_and_resumable(saved, tmp_path):
    """A sample that failed in a shard is a failed row of the merged store, and `--resume` on the merged
    store redoes it (and only it)."""
    images = sorted((saved / "images").iterdir())[:4]
    missing = tmp_path / "late.png"
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(str(p) for p in [*images, missing]) + "\n")
    cmd = [*_cmd(saved, tmp_path / "x")[3:]]
    cmd[cmd.index("--images") + 1] = str(listing)
    for i in range(2):
        shard_cmd = list(cmd)
        shard_cmd[shard_cmd.index("--out") + 1] = str(tmp_path / f"s{i}")
        assert main(shard_cmd + ["--shard", f"{i}/2"]) == (1 if i == 0 else 0)  # late.png is in shard 0
    assert main(["merge", str(tmp_path / "merged"), str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    merged = st.open(tmp_path / "merged")
    rows = merged.samples().set_index("sample_id")
    assert rows.loc["late", "status"] == "failed" and "not found" in rows.loc["late", "error"]
    assert (rows.drop("late").status == "ok").all() and len(rows) == 5
    assert verify(tmp_path / "merged").ok
    tiny.random_images(1, seed=3)[0].save(missing)
    resume = list(cmd)
    resume[resume.index("--out") + 1] = str(tmp_path / "merged")
    assert main(resume + ["--resume"]) == 0
    rows = st.open(tmp_path / "merged").samples()
    assert len(rows) == 5 and (rows.status == "ok").all()
