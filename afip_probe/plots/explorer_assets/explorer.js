// afip-probe explorer: a static page over trace stores (no server, no network).
// Data: window.AFIP_INDEX (samples, layers, ranges) and one AFIP.register(i, payload) per sample,
// loaded on demand from data/s<i>.js (or inline). Maps are uint8 per row with the row's maximum as scale.
"use strict";

const AFIP = (function () {
  const PAGE = 50;
  const DISPLAY = 320;  // heatmap width in CSS pixels
  const INFERNO = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                   [250, 193, 39], [252, 255, 164]];
  const payloads = {};
  const waiting = {};
  const state = { page: 0, group: [], step: 0, primary: null };
  let index = null;

  function register(i, payload) {
    payloads[i] = payload;
    (waiting[i] || []).forEach((f) => f(payload));
    delete waiting[i];
  }

  function load(i) {
    return new Promise((resolve, reject) => {
      if (payloads[i]) return resolve(payloads[i]);
      (waiting[i] = waiting[i] || []).push(resolve);
      if (waiting[i].length > 1) return;
      const s = document.createElement("script");
      s.src = "data/s" + i + ".js";
      s.onerror = () => reject(new Error("cannot load data/s" + i + ".js"));
      document.head.appendChild(s);
    });
  }

  function decode(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
    return out;
  }

  function color(x) {  // x in [0, 1] -> [r, g, b], inferno
    const t = Math.min(Math.max(x, 0), 1) * (INFERNO.length - 1);
    const k = Math.min(Math.floor(t), INFERNO.length - 2);
    const f = t - k;
    return INFERNO[k].map((c, j) => Math.round(c + f * (INFERNO[k + 1][j] - c)));
  }

  function layers() {
    const sel = document.getElementById("layer-range").value;
    if (sel !== "custom") return index.ranges[sel];
    const lo = +document.getElementById("layer-from").value;
    const hi = +document.getElementById("layer-to").value;
    const out = [];
    for (let l = Math.max(0, lo); l <= Math.min(hi, index.layers - 1); l++) out.push(l);
    return out.length ? out : [0];
  }

  // head mean over the chosen layers of one token's map: Float64Array [n], or null when not recorded
  function imageMap(p, step, head) {
    const key = head === undefined ? "maps" : "heads";
    if (!p[key]) return null;
    if (!p["_" + key]) p["_" + key] = decode(p[key]);
    const q = p["_" + key];
    const scales = head === undefined ? p.scales : p.hscales;
    const n = p.n;
    const L = index.layers;
    const H = index.heads || 1;
    const out = new Float64Array(n);
    const ls = layers();
    for (const l of ls) {
      const row = head === undefined ? step * L + l : (step * L + l) * H + head;
      const s = scales[row] / 255;
      for (let j = 0; j < n; j++) out[j] += q[row * n + j] * s / ls.length;
    }
    return out;
  }

  // one image of a sample (its size and tiles: p.images[k]) with the map of its own tiles
  function draw(canvas, img, p, values, vmax, width) {
    const scale = width / p.width;
    canvas.width = width;
    canvas.height = Math.round(p.height * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    if (!values) return;
    // each tile (the image, or one of its crops) is a grid of cells over its box of the image
    for (const tile of p.tiles) {
      const [x0, y0, x1, y1] = tile.box;
      const [rows, cols] = tile.grid;
      const cw = (x1 - x0) / cols, ch = (y1 - y0) / rows;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const [R, G, B] = color(vmax > 0 ? values[tile.cells[r * cols + c]] / vmax : 0);
          ctx.fillStyle = "rgba(" + R + "," + G + "," + B + ",0.6)";
          const x = (x0 + c * cw) * scale, y = (y0 + r * ch) * scale;
          ctx.fillRect(x, y, cw * scale + 0.5, ch * scale + 0.5);
        }
      }
    }
  }

  function colorbar(el, vmax) {
    el.innerHTML = "";
    const c = document.createElement("canvas");
    c.width = 14; c.height = 160;
    const ctx = c.getContext("2d");
    for (let y = 0; y < c.height; y++) {
      const [R, G, B] = color(1 - y / (c.height - 1));
      ctx.fillStyle = "rgb(" + R + "," + G + "," + B + ")";
      ctx.fillRect(0, y, c.width, 1);
    }
    // three ticks (max, half, 0) beside the bar, and what the colours are
    const ticks = document.createElement("div");
    ticks.className = "ticks";
    [vmax, vmax / 2, 0].forEach((v) => {
      const t = document.createElement("span");
      t.textContent = v === 0 ? "0" : String(+v.toPrecision(3));
      ticks.appendChild(t);
    });
    const scale = document.createElement("div");
    scale.className = "scale";
    scale.append(c, ticks);
    const what = document.createElement("span");
    what.className = "note";
    what.textContent = "attention";
    el.append(scale, what);
  }

  // a line chart of one metric along the caption: axes with ticks, object tokens marked (legend: chartLegend)
  function chart(p, metric, label) {
    const ys = p.metrics[metric];
    const W = 400, Hh = 96, left = 46, right = 8, top = 16, bottom = 26;
    const finite = ys.filter((v) => v !== null);
    if (!finite.length) return "";
    let lo = Math.min(...finite), hi = Math.max(...finite);
    if (hi === lo) { hi += 1e-9; }
    const last = Math.max(ys.length - 1, 1);
    const x = (i) => left + i / last * (W - left - right);
    const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (Hh - top - bottom);
    const fmt = (v) => (v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(1) : String(+v.toPrecision(3)));
    const pts = ys.map((v, i) => v === null ? null : x(i).toFixed(1) + "," + y(v).toFixed(1)).filter(Boolean);
    let svg = '<svg width="' + W + '" height="' + Hh + '" data-metric="' + metric + '">' +
      '<text class="chart-title" x="' + left + '" y="11">' + escapeHtml(label) + "</text>" +
      '<g class="axis y-axis"><line x1="' + left + '" x2="' + left + '" y1="' + top + '" y2="' + (Hh - bottom) + '"/>';
    [lo, (lo + hi) / 2, hi].forEach((v) => {
      svg += '<line x1="' + (left - 3) + '" x2="' + left + '" y1="' + y(v).toFixed(1) + '" y2="' + y(v).toFixed(1) + '"/>' +
        '<text class="tick" x="' + (left - 5) + '" y="' + (y(v) + 3).toFixed(1) + '" text-anchor="end">' + fmt(v) + "</text>";
    });
    svg += '</g><g class="axis x-axis"><line x1="' + left + '" x2="' + (W - right) + '" y1="' + (Hh - bottom) +
      '" y2="' + (Hh - bottom) + '"/>';
    Array.from(new Set([0, Math.round(last / 2), last])).forEach((i) => {
      svg += '<line x1="' + x(i).toFixed(1) + '" x2="' + x(i).toFixed(1) + '" y1="' + (Hh - bottom) + '" y2="' +
        (Hh - bottom + 3) + '"/><text class="tick" x="' + x(i).toFixed(1) + '" y="' + (Hh - bottom + 13) +
        '" text-anchor="middle">' + i + "</text>";
    });
    svg += '<text class="axis-label" x="' + ((left + W - right) / 2) + '" y="' + (Hh - 2) +
      '" text-anchor="middle">token position</text></g>' +
      '<polyline fill="none" stroke="#1565c0" stroke-width="1.2" points="' + pts.join(" ") + '"/>';
    ys.forEach((v, i) => {
      if (v === null) return;
      if (p.labels[i] === "hallucinated")
        svg += '<circle class="hall-mark" cx="' + x(i).toFixed(1) + '" cy="' + y(v).toFixed(1) + '" r="3" fill="#c62828"/>';
      else if (p.labels[i] === "real")
        svg += '<circle class="real-mark" cx="' + x(i).toFixed(1) + '" cy="' + y(v).toFixed(1) +
          '" r="3" fill="none" stroke="#2e7d32" stroke-width="1.2"/>';
    });
    const s = Math.min(state.step, ys.length - 1);
    return svg + '<line class="cursor" x1="' + x(s) + '" x2="' + x(s) + '" y1="' + top + '" y2="' + (Hh - bottom) +
      '" stroke="#555" stroke-dasharray="2,2"/></svg>';
  }

  // what the charts' marks mean, once above them
  function chartLegend() {
    return '<div class="chart-legend">' +
      '<span><svg width="12" height="10"><circle cx="6" cy="5" r="3" fill="#c62828"/></svg> hallucinated object token</span>' +
      '<span><svg width="12" height="10"><circle cx="6" cy="5" r="3" fill="none" stroke="#2e7d32" stroke-width="1.2"/></svg> ' +
      "real object token</span>" +
      '<span><svg width="16" height="10"><line x1="0" x2="16" y1="5" y2="5" stroke="#1565c0" stroke-width="1.2"/></svg> ' +
      "value along the caption</span>" +
      '<span><svg width="12" height="10"><line x1="6" x2="6" y1="0" y2="10" stroke="#555" stroke-dasharray="2,2"/></svg> ' +
      "selected token</span></div>";
  }

  function shade(p, panel) {
    const metric = document.getElementById("shade").value;
    const toks = panel.querySelectorAll(".tok");
    panel.querySelector(".caption").classList.toggle("shaded", metric !== "label");
    if (metric === "label") { toks.forEach((t) => { t.style.background = ""; }); return; }
    const vs = p.metrics[metric].filter((v) => v !== null);
    const lo = Math.min(...vs), hi = Math.max(...vs);
    toks.forEach((t, i) => {
      const v = p.metrics[metric][i];
      const a = v === null || hi === lo ? 0 : (v - lo) / (hi - lo);
      t.style.background = "rgba(21,101,192," + (0.08 + 0.6 * a).toFixed(3) + ")";
    });
  }

  function renderPanel(panel, p, primary) {
    const mapNote = p.maps ? "" : '<p class="note">no maps recorded: trace with --record maps (or full)</p>';
    const keyNote = '<p class="key"><span class="swatch" data-word="real">real</span> and ' +
      '<span class="swatch" data-word="hallucinated">hallucinated</span> object words (CHAIR labels)</p>';
    panel.innerHTML = "<h2>" + (p.cond ? escapeHtml(p.cond) + " · " : "") + escapeHtml(p.id) + "</h2>" + keyNote +
      '<div class="caption"></div><div class="figure"><div class="heatmap"' + (primary ? ' id="heatmap"' : "") +
      ">" + p.images.map((im, k) => '<figure class="image" data-image="' + k + '"><canvas></canvas>' +
        (p.images.length > 1 ? "<figcaption>image " + k + "</figcaption>" : "") + "</figure>").join("") +
      '</div><div class="colorbar"></div></div>' + mapNote +
      '<div class="heads"></div><div class="charts"></div>';
    const cap = panel.querySelector(".caption");
    p.tokens.forEach((text, i) => {
      const s = document.createElement("span");
      s.className = "tok";
      s.textContent = text;
      s.dataset.sample = p.id;
      s.dataset.step = i;
      s.dataset.label = p.labels[i];
      // every token of a labelled word carries its label (woman = wo + man), coloured as one word
      const word = p.words ? p.words[i] : p.labels[i];
      s.dataset.word = word;
      if (word !== "none") s.title = word + ": " + (p.objects[i] || objectOf(p, i));
      s.addEventListener("click", () => select(i));
      cap.appendChild(s);
    });
    let loaded = 0;
    p.images.forEach((info) => {
      const img = new Image();
      img.onload = () => { info._img = img; if (++loaded === p.images.length) { p._ready = true; update(); } };
      img.src = info.image;
    });
    shade(p, panel);
  }

  // the object of the labelled token that starts the word token i is in
  function objectOf(p, i) {
    let k = i;
    while (k > 0 && !p.objects[k] && p.words[k - 1] === p.words[i]) k--;
    return p.objects[k];
  }

  function update() {
    const panels = document.querySelectorAll("#view .panel");
    const maps = state.group.map((i) => {
      const p = payloads[i];
      return p ? imageMap(p, Math.min(state.step, p.tokens.length - 1)) : null;
    });
    let vmax = 0;
    maps.forEach((m) => { if (m) for (const v of m) vmax = Math.max(vmax, v); });
    state.group.forEach((i, k) => {
      const p = payloads[i], panel = panels[k];
      if (!p || !panel) return;
      const step = Math.min(state.step, p.tokens.length - 1);
      panel.querySelectorAll(".tok").forEach((t) => t.classList.toggle("selected", +t.dataset.step === step));
      const hm = panel.querySelector(".heatmap");
      hm.dataset.sample = p.id;
      hm.dataset.step = step;
      hm.dataset.values = maps[k] ? JSON.stringify(Array.from(maps[k], (v) => +v.toPrecision(6))) : "";
      const width = p.images.length > 1 ? DISPLAY / 2 : DISPLAY;
      if (p._ready) {
        hm.querySelectorAll("canvas").forEach((c, j) => draw(c, p.images[j]._img, p.images[j], maps[k], vmax, width));
        hm.dataset.drawn = performance.now().toFixed(1); // when the images and their maps were last painted
      }
      colorbar(panel.querySelector(".colorbar"), vmax);
      const heads = panel.querySelector(".heads");
      heads.innerHTML = "";
      if (p.heads && p._ready) {
        for (let h = 0; h < index.heads; h++) {
          const m = imageMap(p, step, h);
          p.images.forEach((info, j) => {
            const fig = document.createElement("figure");
            const c = document.createElement("canvas");
            draw(c, info._img, info, m, Math.max(...m), 96);
            const cap = document.createElement("figcaption");
            cap.textContent = "head " + h + (p.images.length > 1 ? ", image " + j : "");
            fig.append(c, cap);
            heads.appendChild(fig);
          });
        }
      }
      panel.querySelector(".charts").innerHTML = chartLegend() + ["var_all", "attn_entropy_all", "token_entropy"]
        .map((m) => chart(p, m, index.metrics[m])).join("");
    });
  }

  function select(step) {
    const longest = Math.max(...state.group.map((i) => (payloads[i] ? payloads[i].tokens.length : 1)));
    state.step = Math.max(0, Math.min(step, longest - 1));
    update();
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  function visible() {
    const only = document.getElementById("only-hall").checked;
    return index.samples.map((s, i) => [s, i]).filter(([s]) => !only || s.hall > 0);
  }

  function renderList() {
    const list = document.getElementById("sample-list");
    const items = visible();
    const pages = Math.max(1, Math.ceil(items.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    list.innerHTML = "";
    items.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(([s, i]) => {
      const li = document.createElement("li");
      li.dataset.index = i;
      li.dataset.sample = s.id;
      li.innerHTML = '<span class="counts"><span class="real">' + s.real + '</span> / <span class="hall">' +
        s.hall + "</span></span>" + escapeHtml((s.cond ? s.cond + " · " : "") + s.id) +
        '<br><span class="note">' + escapeHtml(s.text) + "</span>";
      li.addEventListener("click", () => show(i));
      if (state.group.includes(i)) li.classList.add("selected");
      list.appendChild(li);
    });
    const nav = document.getElementById("pages");
    nav.innerHTML = pages > 1 ? "page " + (state.page + 1) + " of " + pages + " " : "";
    if (pages > 1) {
      [["‹", -1], ["›", 1]].forEach(([t, d]) => {
        const b = document.createElement("button");
        b.textContent = t;
        b.addEventListener("click", () => { state.page = Math.max(0, Math.min(pages - 1, state.page + d)); renderList(); });
        nav.appendChild(b);
      });
    }
  }

  function show(i) {
    const image = index.samples[i].image;
    state.group = index.samples.map((s, k) => [s, k]).filter(([s]) => s.image === image).map(([, k]) => k);
    state.group.sort((a, b) => (a === i ? -1 : b === i ? 1 : a - b));
    state.step = 0;
    const view = document.getElementById("view");
    view.innerHTML = "";
    state.group.forEach(() => {
      const panel = document.createElement("div");
      panel.className = "panel";
      view.appendChild(panel);
    });
    renderList();
    return Promise.all(state.group.map((k, n) => load(k).then((p) => renderPanel(view.children[n], p, n === 0))))
      .then(update);
  }

  function init() {
    index = window.AFIP_INDEX;
    const range = document.getElementById("layer-range");
    Object.keys(index.ranges).concat(["custom"]).forEach((r) => {
      const o = document.createElement("option");
      o.value = r;
      o.textContent = r === "custom" ? "custom" : r + " (" + index.ranges[r][0] + "–" + index.ranges[r].slice(-1)[0] + ")";
      range.appendChild(o);
    });
    document.getElementById("layer-to").value = Math.max(0, index.layers - 1);
    range.addEventListener("change", () => {
      document.getElementById("custom-range").hidden = range.value !== "custom";
      update();
    });
    ["layer-from", "layer-to"].forEach((id) => document.getElementById(id).addEventListener("change", update));
    const shadeSel = document.getElementById("shade");
    Object.entries(index.metrics).forEach(([m, label]) => {
      const o = document.createElement("option");
      o.value = m;
      o.textContent = label;
      shadeSel.appendChild(o);
    });
    shadeSel.addEventListener("change", () => {
      document.querySelectorAll("#view .panel").forEach((panel, k) => shade(payloads[state.group[k]], panel));
    });
    document.getElementById("only-hall").addEventListener("change", () => { state.page = 0; renderList(); });
    document.addEventListener("keydown", (e) => {
      if (!state.group.length || e.target.tagName === "INPUT") return;
      if (e.key === "ArrowRight") { select(state.step + 1); e.preventDefault(); }
      if (e.key === "ArrowLeft") { select(state.step - 1); e.preventDefault(); }
    });
    renderList();
    const first = index.samples.findIndex((s) => s.hall > 0);
    show(first >= 0 ? first : 0);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else setTimeout(init, 0);
  return { register, show, select, state };
})();
