"""The explorer page, driven in a real headless Chromium: clicks and arrow keys move the selection, the
drawn map is the stored one, a compare store shows its conditions side by side, no console errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import afip_probe.store as st
from afip_probe.cli import main
from afip_probe.records import array_name

from .browser import chromium

SCENES = 8


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from afip_probe.organism.dataset import heldout_dirs

    root = tmp_path_factory.mktemp("explorer")
    images, _ = heldout_dirs(progress=False)
    assert main(["trace", "--model", "organism", "--images", str(images), "--out", str(root / "full"), "--record",
                 "full", "--max-new-tokens", "40", "--max-images", str(SCENES), "--device", "cpu", "--no-progress"]) == 0
    picked = root / "picked"
    picked.mkdir()
    for p in sorted(images.iterdir())[:3]:
        os.symlink(p, picked / p.name)
    assert main(["compare", "--images", str(picked), "--out", str(root / "cmp"), "--correct",
                 "afip:layers=2-,gamma=2,tau=100", "--no-history-ablation", "--max-new-tokens", "24",
                 "--device", "cpu", "--no-progress"]) == 0
    return root


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def _open(browser, page):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.resolve().as_uri())
    browser.get_log("browser")  # start each page with an empty console
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element("id", "heatmap").get_attribute("data-values"))
    return browser.find_element("id", "heatmap")


def _errors(browser):
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _expected(store, sample, step, layers):
    maps = np.asarray(store.arrays(sample)[array_name("maps")], dtype=np.float32)[step]  # [L, n]
    return maps[layers].mean(axis=0), maps[layers].max(axis=1)


def test_clicks_and_arrow_keys_select_tokens_and_draw_the_stored_map(stores, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    assert main(["explore", str(stores / "full"), "--out", str(tmp_path / "ex"), "--no-progress"]) == 0
    heatmap = _open(browser, tmp_path / "ex" / "index.html")
    store = st.open(stores / "full")
    hall = browser.find_elements(By.CSS_SELECTOR, ".tok[data-label=hallucinated]")
    assert hall, "the first sample shown has a hallucinated token"
    token = hall[-1]
    sample, step = token.get_attribute("data-sample"), int(token.get_attribute("data-step"))
    token.click()
    assert heatmap.get_attribute("data-sample") == sample and int(heatmap.get_attribute("data-step")) == step
    drawn = np.array(json.loads(heatmap.get_attribute("data-values")))
    expect, scales = _expected(store, sample, step, list(range(4)))
    np.testing.assert_allclose(drawn, expect, atol=float(scales.max()) / 255, rtol=0)  # uint8 per (token, layer)
    assert "selected" in token.get_attribute("class")

    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    assert int(heatmap.get_attribute("data-step")) == step + 1
    nxt = browser.find_element(By.CSS_SELECTOR, f'.tok[data-sample="{sample}"][data-step="{step + 1}"]')
    assert "selected" in nxt.get_attribute("class") and "selected" not in token.get_attribute("class")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    assert int(heatmap.get_attribute("data-step")) == step

    # the late layers only, and one map per head (a full store)
    browser.find_element(By.CSS_SELECTOR, "#layer-range option[value=late]").click()
    expect, scales = _expected(store, sample, step, [3])
    np.testing.assert_allclose(np.array(json.loads(heatmap.get_attribute("data-values"))), expect,
                               atol=float(scales.max()) / 255, rtol=0)
    assert len(browser.find_elements(By.CSS_SELECTOR, ".panel .heads canvas")) == 4
    # every token of the caption is on the page, with its label
    tokens = store.tokens([sample])
    shown = browser.find_elements(By.CSS_SELECTOR, f'.tok[data-sample="{sample}"]')
    assert [t.get_attribute("data-step") for t in shown] == [str(s) for s in tokens.step]
    # the filter keeps only samples with hallucinations
    listed = len(browser.find_elements(By.CSS_SELECTOR, "#sample-list li"))
    browser.find_element(By.ID, "only-hall").click()
    kept = browser.find_elements(By.CSS_SELECTOR, "#sample-list li")
    assert 0 < len(kept) < listed and all(int(li.find_element(By.CSS_SELECTOR, ".hall").text) > 0 for li in kept)
    shot = tmp_path / "explorer.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("AFIP_EXPLORER_SCREENSHOT"):  # how docs/explorer.png is made
        shutil.copy(shot, os.environ["AFIP_EXPLORER_SCREENSHOT"])
    assert _errors(browser) == []


def test_a_compare_store_shows_its_conditions_side_by_side(stores, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    assert main(["explore", str(stores / "cmp" / "store"), "--out", str(tmp_path / "ex"), "--no-progress"]) == 0
    _open(browser, tmp_path / "ex" / "index.html")
    panels = browser.find_elements(By.CSS_SELECTOR, "#view .panel")
    titles = [p.find_element(By.TAG_NAME, "h2").text for p in panels]
    assert len(panels) == 2 and titles[0].split(" · ")[1].split("/")[1] == titles[1].split(" · ")[1].split("/")[1]
    assert {t.split(" · ")[0] for t in titles} == {"baseline", "afip:layers=2-,gamma=2,tau=100"}
    for _ in range(3):
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    maps = [p.find_element(By.CSS_SELECTOR, ".heatmap") for p in panels]
    assert [m.get_attribute("data-step") for m in maps] == ["3", "3"]  # synchronised by step
    assert maps[0].get_attribute("data-sample") != maps[1].get_attribute("data-sample")
    store = st.open(stores / "cmp" / "store")
    for m in maps:
        expect, scales = _expected(store, m.get_attribute("data-sample"), 3, list(range(4)))
        np.testing.assert_allclose(np.array(json.loads(m.get_attribute("data-values"))), expect,
                                   atol=float(scales.max()) / 255, rtol=0)
    assert _errors(browser) == []


def _word_spans(tokens):
    """{step of a labelled token: the steps of its whole word}, from the caption text alone: the tokens from the
    labelled one on whose text, joined, first covers the mention as written (``wo`` + ``ma`` + ``n.`` ⊇ woman)."""
    texts = tokens.token_text.tolist()
    spans = {}
    for k in np.flatnonzero(tokens.label.astype(str).isin(["real", "hallucinated"]).to_numpy()):
        word, joined, end = str(tokens.mention.iloc[k]).lower(), "", k
        while len(joined.lstrip()) < len(word):
            joined += texts[end]
            end += 1
        assert joined.lstrip().lower().startswith(word)
        spans[int(k)] = list(range(k, end))
    return spans


def test_whole_words_are_coloured_and_the_charts_have_axes_and_keys(stores, browser, tmp_path):
    """Every token of a labelled word has the word's colour (not only its first); each chart has axes with
    distinct ticks and a marked object token per label; keys explain the marks and the counts; the title
    names the model and the store."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from afip_probe.metrics.table import token_table

    assert main(["explore", str(stores / "full"), "--out", str(tmp_path / "ex"), "--no-progress"]) == 0
    _open(browser, tmp_path / "ex" / "index.html")
    assert "model: organism · store: full" in browser.title
    assert browser.find_element(By.ID, "title").text == "model: organism · store: full"
    key = browser.find_element(By.ID, "list-key").text
    assert "real" in key and "hallucinated" in key

    table = token_table(st.open(stores / "full"))
    split = {sid: _word_spans(t.reset_index(drop=True)) for sid, t in table.groupby("sample_id", sort=False)}
    sid = next(s for s, spans in split.items() if any(len(v) > 1 for v in spans.values()))  # e.g. wo|man
    browser.find_element(By.CSS_SELECTOR, f'#sample-list li[data-sample="{sid}"]').click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element("id", "heatmap").get_attribute("data-sample") == sid)
    toks = browser.find_elements(By.CSS_SELECTOR, f'#view .panel .caption .tok[data-sample="{sid}"]')
    colour = [browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor", t) for t in toks]
    tokens = table[table.sample_id == sid].reset_index(drop=True)
    in_word = {s for steps in split[sid].values() for s in steps}
    blank = {colour[i] for i in range(len(toks)) if i not in in_word}
    assert len(blank) == 1
    for first, steps in split[sid].items():
        assert {colour[s] for s in steps} == {colour[first]} and colour[first] not in blank, (first, steps)
    assert len({colour[f] for f in split[sid] if tokens.label[f] == "real"}) == 1

    panel = browser.find_element(By.CSS_SELECTOR, "#view .panel")
    assert "hallucinated object token" in panel.find_element(By.CSS_SELECTOR, ".chart-legend").text
    charts = panel.find_elements(By.CSS_SELECTOR, ".charts svg[data-metric]")
    assert [c.get_attribute("data-metric") for c in charts] == ["var_all", "attn_entropy_all", "token_entropy"]
    for chart in charts:
        for axis in ("x-axis", "y-axis"):
            ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, f".{axis} text.tick")]
            assert len(ticks) >= 2 and len(set(ticks)) == len(ticks), (axis, ticks)
        assert chart.find_element(By.CSS_SELECTOR, ".axis-label").text == "token position"
        assert len(chart.find_elements(By.CSS_SELECTOR, ".hall-mark")) == (tokens.label == "hallucinated").sum()
        assert len(chart.find_elements(By.CSS_SELECTOR, ".real-mark")) == (tokens.label == "real").sum()
    assert _errors(browser) == []


def test_the_notebook_view_is_the_same_page_inline(stores, browser, tmp_path):
    """`afip_probe.explore(store)` in Jupyter: one document, data and images inline, same page."""
    import afip_probe
    from afip_probe.plots.explorer import inline_page

    view = afip_probe.explore(str(stores / "full"), max_samples=3)
    assert view._repr_html_().startswith("<iframe srcdoc=")
    page = tmp_path / "inline.html"
    page.write_text(inline_page([str(stores / "full")], max_samples=3))
    assert "src=\"data/" not in page.read_text() and "<link" not in page.read_text()
    heatmap = _open(browser, page)
    assert heatmap.get_attribute("data-sample") and _errors(browser) == []


def test_the_explorer_folder_follows_the_output_rule(stores, tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["explore", str(stores / "full"), "--out", str(out), "--no-progress", "--max-samples", "2"]) == 0
    (out / "mine.txt").write_text("mine")
    assert main(["explore", str(stores / "full"), "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["explore", str(stores / "full"), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert (out / "mine.txt").read_text() == "mine"
    assert len(list((out / "data").glob("s*.js"))) == SCENES


#: model output can hold anything: a caption or token that ends the script element in any letter case
SCRIPT_PAYLOAD = "</SCRIPT><h6>x</h6><SCRIPT>window.pwned=1;document.title='x'</SCRIPT>\u2028<!--"
#: file and folder names cannot hold '/': markup that runs when parsed as HTML
NAME_PAYLOAD = "n<h6>n<img src=q onerror=\"window.pwned=1\">"


def _planted_store(stores, root):
    """A store whose sample ids, image file names and store name carry NAME_PAYLOAD and whose captions and
    tokens carry SCRIPT_PAYLOAD."""
    import pyarrow.parquet as pq

    images = root / "images"
    images.mkdir()
    for i, row in enumerate(st.open(stores / "full").samples("ok").head(2).itertuples()):
        os.symlink(row.image, images / f"{NAME_PAYLOAD}{i}.png")
    store = root / f"store{NAME_PAYLOAD}"
    assert main(["trace", "--model", "organism", "--images", str(images), "--out", str(store),
                 "--record", "maps", "--max-new-tokens", "6", "--device", "cpu", "--no-progress"]) == 0
    for kind, column in (("samples", "output_text"), ("tokens", "token_text")):
        for f in (store / kind).glob("*.parquet"):
            frame = pq.read_table(f).to_pandas()
            frame[column] = [SCRIPT_PAYLOAD + str(v) for v in frame[column]]
            frame.to_parquet(f, index=False)
    return store


def _assert_nothing_ran(browser):
    from selenium.webdriver.common.by import By

    assert browser.execute_script("return window.pwned === undefined")
    assert browser.find_elements(By.TAG_NAME, "h6") == []
    assert browser.find_elements(By.CSS_SELECTOR, "img[src=q]") == []
    assert not browser.title.startswith("x")
    shown = " ".join(t.text for t in browser.find_elements(By.CSS_SELECTOR, ".tok"))
    assert "</SCRIPT><h6>x</h6>" in shown  # the payload is shown as text, not dropped


def test_model_output_and_names_cannot_inject_markup_on_disk_or_inline(stores, browser, tmp_path):
    from afip_probe.plots.explorer import Explorer

    store = _planted_store(stores, tmp_path)
    assert {s.sample_id for s in st.open(store).samples("ok").itertuples()} == {f"{NAME_PAYLOAD}0", f"{NAME_PAYLOAD}1"}
    assert main(["explore", str(store), "--out", str(tmp_path / "ex"), "--no-progress"]) == 0
    _open(browser, tmp_path / "ex" / "index.html")
    _assert_nothing_ran(browser)
    assert NAME_PAYLOAD in browser.find_element("id", "title").text
    assert _errors(browser) == []

    # the notebook view: the page inside an iframe's srcdoc
    page = tmp_path / "notebook.html"
    page.write_text("<!doctype html><html><body>" + Explorer([str(store)], max_samples=2)._repr_html_() + "</body></html>")
    browser.get(page.resolve().as_uri())
    browser.switch_to.frame(browser.find_element("tag name", "iframe"))
    from selenium.webdriver.support.ui import WebDriverWait

    # the page drew its first map, or a payload broke out (then the asserts below say which)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return window.pwned !== undefined || document.querySelector('h6') !== null || "
        "(document.getElementById('heatmap') || {dataset: {}}).dataset.values !== undefined"))
    _assert_nothing_ran(browser)
    browser.switch_to.default_content()
    assert browser.execute_script("return window.pwned === undefined")
