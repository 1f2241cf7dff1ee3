"""`afip-probe demo` end to end on a few scenes, and its output folder rule: it never deletes or
overwrites files it did not write."""

from __future__ import annotations

from afip_probe.cli import main

ARGS = ["--n", "24", "--max-new-tokens", "48", "--no-progress"]


def test_demo_writes_its_report_and_keeps_a_users_files(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *ARGS]) == 0
    report = (out / "report.md").read_text()
    assert "CHAIR (ground truth: the scenes' own COCO-format annotations)" in report
    assert "![fig2b_entropy](figures/fig2b_entropy.png)" in report
    assert (out / "figures" / "fig2b_entropy.png").stat().st_size > 1000
    assert "report:" in capsys.readouterr().out

    # a second run must be asked to replace the first, and then touches only the demo's own files
    (out / "my_notes.txt").write_text("mine")
    assert main(["demo", "--out", str(out), *ARGS]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--overwrite", *ARGS]) == 0
    assert (out / "my_notes.txt").read_text() == "mine"
    assert (out / "report.md").exists()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"]):
        assert main(["demo", "--out", str(folder), *ARGS, *extra]) == 2
        assert "not an afip-probe demo output" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]
    assert (folder / "thesis.tex").read_text() == "years of work"
