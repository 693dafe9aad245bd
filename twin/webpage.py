"""HTML of the live page (served by :mod:`twin.web`; plotly.js comes from the local server, no CDN)."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>electrode-twin — live segments</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/static/plotly.min.js"></script>
<style>
 body { font-family: system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
 header { background: #1d2330; color: #fff; padding: 10px 18px; display: flex; gap: 24px; align-items: baseline;
          flex-wrap: wrap; }
 header h1 { font-size: 18px; margin: 0; }
 header .kv { font-size: 13px; opacity: .9; }
 header .kv b { font-variant-numeric: tabular-nums; }
 main { padding: 12px 18px; display: grid; grid-template-columns: 2fr 1fr; gap: 12px; }
 section { background: #fff; border-radius: 6px; padding: 8px 10px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
 section h2 { font-size: 14px; margin: 2px 0 6px; }
 .wide { grid-column: 1 / span 2; }
 table { border-collapse: collapse; width: 100%; font-size: 12px; font-variant-numeric: tabular-nums; }
 th, td { padding: 3px 6px; border-bottom: 1px solid #e4e6eb; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
 tr.bad td { background: #fde8e8; }
 tr.sel td { outline: 1px solid #3b6fd8; }
 #alerts li { font-size: 12px; margin-bottom: 3px; }
 select { font-size: 13px; }
 .muted { color: #6b7280; font-size: 12px; }
 #conn.off { color: #f87171; }
</style>
</head>
<body>
<header>
 <h1>electrode-twin</h1>
 <span class="kv">line <b id="line">–</b></span>
 <span class="kv">segments <b id="n-segments">0</b></span>
 <span class="kv">received <b id="received">0</b></span>
 <span class="kv">stored <b id="stored">0</b></span>
 <span class="kv">duplicates <b id="duplicates">0</b></span>
 <span class="kv">dead letters <b id="dead">0</b></span>
 <span class="kv">predictions <b id="predictions">0</b></span>
 <span class="kv">latency p50/p99 <b id="latency">–</b> ms</span>
 <span class="kv">model <b id="model">–</b></span>
 <span class="kv" id="conn">● live</span>
</header>
<main>
 <section class="wide">
  <h2>Predicted <select id="qty"></select> per segment
      <span class="muted">mean, 5–95 % band, spec limits dashed, gauge mean as dots</span></h2>
  <div id="trend" style="height:330px"></div>
 </section>
 <section>
  <h2>Distribution of segment <span id="sel-seg">–</span> <span class="muted" id="sel-info"></span></h2>
  <div id="dist" style="height:300px"></div>
 </section>
 <section>
  <h2>Alerts</h2>
  <ul id="alerts" class="muted"><li>none yet</li></ul>
 </section>
 <section class="wide">
  <h2>Latest segments <span class="muted">click a row to see its distribution</span></h2>
  <table id="segtable"><thead><tr><th>segment</th><th>batch</th><th>stage</th><th>values</th><th>method</th>
   <th>ESS</th><th>m_dry [mg/cm²]</th><th>h_cal [µm]</th><th>rho_cal [g/cm³]</th><th>capacity</th>
   <th>P(out of tol.)</th></tr></thead><tbody></tbody></table>
 </section>
</main>
<script>
"use strict";
const segs = new Map();          // "line/segment" -> latest prediction document
let selected = null, follow = true, dirty = false, quantities = [];
const QTY_DEFAULT = "m_dry";
const $ = (id) => document.getElementById(id);
const fmt = (x, d = 4) => (x === null || x === undefined) ? "–" : Number(x).toPrecision(d);
const keyOf = (p) => p.line + "/" + p.segment;

function addPrediction(p) {
  if (!p || p.segment === undefined) return;
  const k = keyOf(p), old = segs.get(k);
  if (old && old.id && p.id && old.id > p.id) return;
  segs.set(k, p);
  if (segs.size > 400) {
    const keys = [...segs.keys()].sort((a, b) => segs.get(a).segment - segs.get(b).segment);
    for (const kk of keys.slice(0, segs.size - 400)) segs.delete(kk);
  }
  if (follow) selected = k;
  for (const a of (p.alerts || [])) addAlert(a.message);
  dirty = true;
}

function fromStored(s) {
  if (!s.prediction) return null;
  return Object.assign({line: s.line, segment: s.segment, batch: s.batch}, s.prediction);
}

function addAlert(msg) {
  const ul = $("alerts");
  if (ul.dataset.empty !== "no") { ul.innerHTML = ""; ul.dataset.empty = "no"; }
  const li = document.createElement("li"); li.textContent = msg; ul.prepend(li);
  while (ul.children.length > 30) ul.removeChild(ul.lastChild);
}

function ordered() { return [...segs.values()].sort((a, b) => a.segment - b.segment); }

function updateQuantities() {
  const names = new Set();
  for (const p of segs.values()) for (const n of Object.keys(p.quantities || {})) names.add(n);
  const list = [...names];
  if (list.join() === quantities.join()) return;
  const cur = $("qty").value || QTY_DEFAULT;
  quantities = list;
  $("qty").innerHTML = list.map(n => `<option value="${n}">${n}</option>`).join("");
  $("qty").value = list.includes(cur) ? cur : (list.includes(QTY_DEFAULT) ? QTY_DEFAULT : list[0]);
}

function render() {
  if (!dirty) return;
  dirty = false;
  updateQuantities();
  const q = $("qty").value, rows = ordered();
  $("n-segments").textContent = rows.length;
  const x = [], mean = [], lo = [], hi = [], mx = [], my = [];
  let unit = "", spec = null;
  for (const p of rows) {
    const s = (p.quantities || {})[q]; if (!s) continue;
    x.push(p.segment); mean.push(s.mean); lo.push(s.p05); hi.push(s.p95); unit = s.unit;
    if (s.spec) spec = s.spec;
    const m = (p.measured || {})[q]; if (m) { mx.push(p.segment); my.push(m.mean); }
  }
  const traces = [
    {x, y: hi, mode: "lines", line: {width: 0}, showlegend: false, hoverinfo: "skip"},
    {x, y: lo, mode: "lines", fill: "tonexty", fillcolor: "rgba(59,111,216,0.2)", line: {width: 0}, name: "5–95 %"},
    {x, y: mean, mode: "lines+markers", line: {color: "#3b6fd8"}, marker: {size: 4}, name: "mean"},
    {x: mx, y: my, mode: "markers", marker: {color: "#111", size: 5}, name: "measured"},
  ];
  const shapes = [];
  if (spec) for (const v of spec) if (v !== null)
    shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, y0: v, y1: v, line: {dash: "dash", color: "#d33"}});
  Plotly.react("trend", traces, {margin: {l: 60, r: 10, t: 10, b: 40}, shapes,
    xaxis: {title: "segment"}, yaxis: {title: q + " [" + unit + "]"}, legend: {orientation: "h"}},
    {displayModeBar: false, responsive: true});
  renderDist(q);
  renderTable(rows.slice(-15).reverse());
}

function renderDist(q) {
  const p = segs.get(selected);
  if (!p) return;
  const s = (p.quantities || {})[q];
  $("sel-seg").textContent = p.segment;
  $("sel-info").textContent = `${p.stage}, ${p.method}, ESS ${fmt(p.ess, 3)}` + (p.batch ? `, batch ${p.batch}` : "");
  if (!s || !s.hist) return;
  const e = s.hist.edges, d = s.hist.density, xs = [], ws = [];
  for (let i = 0; i < d.length; i++) { xs.push((e[i] + e[i + 1]) / 2); ws.push(e[i + 1] - e[i]); }
  const shapes = [];
  if (s.spec) for (const v of s.spec) if (v !== null)
    shapes.push({type: "line", x0: v, x1: v, yref: "paper", y0: 0, y1: 1, line: {dash: "dash", color: "#d33"}});
  const m = (p.measured || {})[q];
  if (m) shapes.push({type: "line", x0: m.mean, x1: m.mean, yref: "paper", y0: 0, y1: 1, line: {color: "#111"}});
  Plotly.react("dist", [{type: "bar", x: xs, y: d, width: ws, marker: {color: "#3b6fd8"}, name: q}],
    {margin: {l: 50, r: 10, t: 10, b: 40}, shapes, bargap: 0,
     xaxis: {title: `${q} [${s.unit}]  mean ${fmt(s.mean)} ± ${fmt(s.std, 2)}` +
                    (s.p_out !== undefined ? `, P(out) ${fmt(s.p_out, 2)}` : "")},
     yaxis: {title: "density"}}, {displayModeBar: false, responsive: true});
}

function cell(p, n) { const s = (p.quantities || {})[n]; return s ? `${fmt(s.mean)} ± ${fmt(s.std, 2)}` : "–"; }

function renderTable(rows) {
  const tb = document.querySelector("#segtable tbody");
  tb.innerHTML = rows.map(p => {
    const bad = p.p_out !== null && p.p_out !== undefined && p.p_out > 0.05;
    const k = keyOf(p);
    return `<tr data-key="${k}" data-segment="${p.segment}" class="${bad ? "bad" : ""} ${k === selected ? "sel" : ""}">` +
      `<td>${p.segment}</td><td>${p.batch || (p.batch === undefined ? "" : "–")}</td><td>${p.stage}</td>` +
      `<td>${p.n_measurements}</td><td>${p.method}</td><td>${fmt(p.ess, 3)}</td><td>${cell(p, "m_dry")}</td>` +
      `<td>${cell(p, "h_cal")}</td><td>${cell(p, "rho_cal")}</td><td>${cell(p, "capacity")}</td>` +
      `<td>${p.p_out === null || p.p_out === undefined ? "–" : fmt(p.p_out, 2)}</td></tr>`;
  }).join("");
}

function setStatus(s) {
  $("line").textContent = s.line;
  const i = s.ingest || {};
  $("received").textContent = i.received; $("stored").textContent = i.stored;
  $("duplicates").textContent = i.duplicates; $("dead").textContent = i.dead_lettered;
  $("predictions").textContent = s.predictions; $("model").textContent = `${s.model}, ${s.samples} samples`;
  const l = s.latency_ms || {};
  $("latency").textContent = `${fmt(l.p50, 3)} / ${fmt(l.p99, 3)}`;
}

document.querySelector("#segtable tbody").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr"); if (!tr) return;
  selected = tr.dataset.key; follow = false; dirty = true;
});
$("qty").addEventListener("change", () => { dirty = true; });

async function loadStored() {
  const r = await fetch("/api/segments?last=200");
  const doc = await r.json();
  for (const s of doc.segments.reverse()) { const p = fromStored(s); if (p) addPrediction(p); }
  const st = await (await fetch("/api/status")).json(); setStatus(st);
  const al = await (await fetch("/api/alerts?last=10")).json();
  for (const a of al.alerts.reverse()) addAlert(a.message);
}

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("prediction", (ev) => addPrediction(JSON.parse(ev.data)));
  es.addEventListener("status", (ev) => setStatus(JSON.parse(ev.data)));
  es.onopen = () => { $("conn").className = "kv"; $("conn").textContent = "● live"; };
  es.onerror = () => { $("conn").className = "kv off"; $("conn").textContent = "● reconnecting"; };
}

loadStored().catch(console.error).finally(() => { dirty = true; render(); connect(); });
setInterval(render, 250);
</script>
</body>
</html>
"""
