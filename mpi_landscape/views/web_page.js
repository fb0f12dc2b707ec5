// The page's controller: plotly traces from the embedded data for the metric, split, height
// scale, view and frame the reader picks; on a live page (--serve) it polls data.json.
"use strict";
(function () {
  let DATA = JSON.parse(document.getElementById("landscape-data").textContent);
  const state = {metric: null, height: "auto", view: null, frame: 0};
  // nothing on the page may send the data anywhere: no "Share chart" (an upload) button
  const CONFIG = {responsive: true, displaylogo: false, showSendToCloud: false, showEditInChartStudio: false,
                  modeBarButtonsToRemove: ["sendChartToCloud", "sendDataToCloud"]};
  const GAP_COLOURS = [[0, "#ffffff"], [1, "#a8a8a8"]];  // not computed yet: white; diverged: grey
  const $ = (id) => document.getElementById(id);
  let draws = 0;

  const fmt = (v) => String(parseFloat(Number(v).toPrecision(6)));
  const coord = (v) => String(parseFloat(Number(v).toPrecision(4)));

  function splitOf(metric) {
    const i = metric.lastIndexOf("_");
    return i > 0 ? [metric.slice(0, i), metric.slice(i + 1)] : [null, metric];
  }

  function splits() {
    return [...new Set(DATA.metrics.filter((m) => m.endsWith("_loss")).map((m) => splitOf(m)[0]))];
  }

  function shownPanels() {
    return DATA.mode === "frames" ? [DATA.panels[state.frame]] : DATA.panels;
  }

  function isLog(metric) {
    const scale = DATA.scales[metric];
    if (state.height === "linear" || scale.positive_lo === null) return false;
    return state.height === "log" || scale.log;
  }

  function colours(metric, log) {
    const s = DATA.scales[metric];
    const range = log ? [Math.log10(s.positive_lo), Math.log10(s.hi)] : [s.lo, s.hi];
    const signed = s.signed && !log;
    return {range, colorscale: signed ? "RdBu" : "Viridis", mid: signed ? 0 : undefined,
            ticks: log ? logTicks(range[0], range[1]) : {}};
  }

  function logTicks(lo, hi) {
    for (const mantissas of [[1, 2, 5], [1, 1.5, 2, 3, 5, 7], [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9]]) {
      const tickvals = [], ticktext = [];
      for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
        for (const m of mantissas) {
          const t = Math.log10(m * Math.pow(10, k));
          if (t >= lo - 1e-9 && t <= hi + 1e-9) { tickvals.push(t); ticktext.push(fmt(m * Math.pow(10, k))); }
        }
      }
      if (tickvals.length >= 4) return {tickvals, ticktext};
    }
    return {};
  }

  const lift = (v, log) => (v === null || v === undefined ? null : (log ? (v > 0 ? Math.log10(v) : null) : v));

  function hoverTexts(panel, metric) {
    const md = panel.metrics[metric], nx = panel.x.length;
    const diverged = new Set(md.diverged);
    const head = DATA.panels.length > 1 ? panel.name + "<br>" : "";
    return panel.y.map((b, iy) => panel.x.map((a, ix) => {
      const index = iy * nx + ix, v = md.values[iy][ix];
      const what = diverged.has(index) ? `${metric}: diverged`
        : !panel.done[index] ? `${metric}: not computed yet`
        : v === null ? `${metric}: not a number` : `${metric} = ${fmt(v)}`;
      return `${head}α = ${coord(a)}<br>β = ${coord(b)}<br>${what}`;
    }));
  }

  function gapCells(panel, metric) {
    const md = panel.metrics[metric], nx = panel.x.length;
    const diverged = new Set(md.diverged);
    let any = false;
    const z = panel.y.map((_, iy) => panel.x.map((_, ix) => {
      const index = iy * nx + ix;
      if (diverged.has(index)) { any = true; return 1; }
      if (!panel.done[index]) { any = true; return 0; }
      return null;
    }));
    return any ? z : null;
  }

  function divergedPoints(panel, metric) {
    const nx = panel.x.length;
    const idx = panel.metrics[metric].diverged;
    return {x: idx.map((i) => panel.x[i % nx]), y: idx.map((i) => panel.y[Math.floor(i / nx)])};
  }

  function pathTexts(panel, metric) {
    const t = panel.trajectory, heights = panel.metrics[metric].trajectory;
    return t.x.map((a, i) => `epoch ${t.epochs[i]}<br>α = ${coord(a)}<br>β = ${coord(t.y[i])}` +
      (heights[i] === null ? "" : `<br>${metric} ≈ ${fmt(heights[i])}`));
  }

  function pathMarks(panel) {
    const t = panel.trajectory, last = t.x.length - 1;
    return [["start", [0], {symbol: "triangle-up", size: 11, color: "#2ca02c"}],
            ["end", [last], {symbol: "star", size: 14, color: "gold"}],
            ["lr drop", t.drops, {symbol: "circle", size: 8, color: "red"}]]
      .filter(([, indices]) => indices.length);
  }

  function contourTraces(panel, metric, log, c, showScale) {
    const md = panel.metrics[metric];
    const traces = [{
      type: "contour", name: metric, x: panel.x, y: panel.y,
      z: md.values.map((row) => row.map((v) => lift(v, log))),
      text: hoverTexts(panel, metric), hovertemplate: "%{text}<extra></extra>", hoverongaps: true,
      colorscale: c.colorscale, zauto: false, zmin: c.range[0], zmax: c.range[1], zmid: c.mid,
      ncontours: 24, contours: {coloring: "fill", showlines: true},
      line: {width: 0.5, color: "rgba(0,0,0,0.35)"}, showscale: showScale,
      colorbar: {title: {text: (log ? "log scale: " : "") + metric, side: "right"}, ...c.ticks},
    }];
    const gaps = gapCells(panel, metric);
    if (gaps) {
      traces.push({type: "heatmap", name: "gaps", x: panel.x, y: panel.y, z: gaps, zmin: 0, zmax: 1,
                   colorscale: GAP_COLOURS, showscale: false, hoverinfo: "skip", hoverongaps: false});
    }
    if (md.diverged.length) {
      const p = divergedPoints(panel, metric);
      traces.push({type: "scatter", mode: "markers", name: "diverged", x: p.x, y: p.y,
                   marker: {symbol: "x-thin", size: 8, line: {width: 1.5, color: "#333"}},
                   hovertemplate: "α = %{x:.4g}<br>β = %{y:.4g}<br>" + metric + ": diverged<extra></extra>"});
    }
    if (panel.trajectory) {
      const t = panel.trajectory;
      traces.push({type: "scatter", mode: "lines+markers", name: "trajectory", x: t.x, y: t.y,
                   text: pathTexts(panel, metric), hovertemplate: "%{text}<extra></extra>",
                   line: {color: "black", width: 1.2}, marker: {size: 4, color: "black"}});
      for (const [name, indices, marker] of pathMarks(panel)) {
        traces.push({type: "scatter", mode: "markers", name, x: indices.map((i) => t.x[i]),
                     y: indices.map((i) => t.y[i]), text: indices.map((i) => `${name}, epoch ${t.epochs[i]}`),
                     hovertemplate: "%{text}<extra></extra>",
                     marker: {...marker, line: {width: 1, color: "black"}}});
      }
    }
    return traces;
  }

  function surfaceTraces(panel, metric, log, c, showScale) {
    const md = panel.metrics[metric];
    const z = md.values.map((row) => row.map((v) => lift(v, log)));
    const traces = [{
      type: "surface", name: metric, x: panel.x, y: panel.y, z, surfacecolor: z,
      text: hoverTexts(panel, metric), hovertemplate: "%{text}<extra></extra>",
      colorscale: c.colorscale, cauto: false, cmin: c.range[0], cmax: c.range[1], cmid: c.mid,
      showscale: showScale, colorbar: {title: {text: (log ? "log scale: " : "") + metric}, ...c.ticks},
    }];
    if (md.diverged.length) {
      const p = divergedPoints(panel, metric);
      traces.push({type: "scatter3d", mode: "markers", name: "diverged", x: p.x, y: p.y,
                   z: p.x.map(() => c.range[0]), marker: {symbol: "x", size: 3, color: "#333"},
                   hovertemplate: "α = %{x:.4g}<br>β = %{y:.4g}<br>" + metric + ": diverged<extra></extra>"});
    }
    if (panel.trajectory) {
      const t = panel.trajectory, heights = md.trajectory.map((v) => lift(v, log));
      traces.push({type: "scatter3d", mode: "lines+markers", name: "trajectory", x: t.x, y: t.y, z: heights,
                   text: pathTexts(panel, metric), hovertemplate: "%{text}<extra></extra>",
                   line: {color: "black", width: 4}, marker: {size: 2, color: "black"}});
      for (const [name, indices, marker] of pathMarks(panel)) {
        traces.push({type: "scatter3d", mode: "markers", name, x: indices.map((i) => t.x[i]),
                     y: indices.map((i) => t.y[i]), z: indices.map((i) => heights[i]),
                     hovertemplate: name + "<extra></extra>",
                     marker: {size: 5, color: marker.color, symbol: name === "end" ? "diamond" : "circle"}});
      }
    }
    return traces;
  }

  function contourLayout(panel) {
    return {uirevision: "keep", margin: {l: 60, r: 10, t: 30, b: 50},
            xaxis: {title: {text: panel.xlabel}}, yaxis: {title: {text: panel.ylabel}},
            legend: {orientation: "h", y: -0.22}};
  }

  function surfaceLayout(panel, metric, log, c) {
    return {uirevision: "keep", margin: {l: 0, r: 0, t: 30, b: 0}, showlegend: false,
            scene: {xaxis: {title: {text: "α"}}, yaxis: {title: {text: "β"}},
                    zaxis: {title: {text: (log ? "log " : "") + metric}, range: c.range, ...c.ticks},
                    camera: {eye: {x: 1.6, y: -1.6, z: 1.1}}, aspectmode: "cube"}};
  }

  function buildPanels() {
    const host = $("panels");
    host.textContent = "";
    const count = DATA.mode === "frames" ? 1 : DATA.panels.length;
    for (let i = 0; i < count; i++) {
      const section = document.createElement("section");
      section.className = "panel";
      section.id = `panel-${i}`;
      section.innerHTML = `<div><h2 id="name-${i}"></h2><div class="panel-plots">` +
        `<div class="plot" id="surface-${i}"></div><div class="plot" id="contour-${i}"></div></div>` +
        `<p class="note" id="missing-${i}" hidden></p></div>` +
        `<aside class="side"><h3 id="summary-title-${i}">Summary</h3><table id="summary-${i}"></table>` +
        `<p class="note" id="summary-notes-${i}"></p>` +
        `<details id="provenance-box-${i}"><summary>Provenance</summary><table id="provenance-${i}"></table></details></aside>`;
      host.appendChild(section);
    }
  }

  function fillTable(table, rows) {
    table.textContent = "";
    for (const [label, text] of rows) {
      const tr = table.insertRow();
      tr.insertCell().textContent = label;
      tr.insertCell().textContent = text;
    }
  }

  function side(panel, i, metric) {
    const split = splitOf(metric)[0];
    const key = panel.summary[`${split}_loss`] ? `${split}_loss` : Object.keys(panel.summary)[0];
    const summary = key ? panel.summary[key] : {rows: [], notes: ["no loss in this file"]};
    $(`summary-title-${i}`).textContent = key ? `Summary of ${key} (python -m mpi_landscape.summary)` : "Summary";
    fillTable($(`summary-${i}`), summary.rows);
    $(`summary-notes-${i}`).textContent = summary.notes.join(" ");
    fillTable($(`provenance-${i}`), panel.provenance);
  }

  function draw() {
    if (!DATA.panels.length) { showProgress(); drawn(); return; }  // a live page waiting for its file
    const metric = state.metric, log = isLog(metric), c = colours(metric, log);
    const panels = shownPanels(), work = [];
    panels.forEach((panel, i) => {
      const last = i === panels.length - 1;
      $(`name-${i}`).textContent = panel.name + (panel.progress ? ` (${panel.progress})` : "");
      const surfaceDiv = $(`surface-${i}`), contourDiv = $(`contour-${i}`), missing = $(`missing-${i}`);
      const known = metric in panel.metrics;
      const has = known && panel.metrics[metric].values.some((row) => row.some((v) => v !== null));
      missing.hidden = has;
      missing.textContent = has ? "" : known ? `no finished point of ${metric} yet` : `${panel.file} has no ${metric}`;
      surfaceDiv.hidden = !has || state.view === "contour";
      contourDiv.hidden = !has || state.view === "surface";
      if (has && !surfaceDiv.hidden) {
        work.push(Plotly.react(surfaceDiv, surfaceTraces(panel, metric, log, c, last && contourDiv.hidden),
                               surfaceLayout(panel, metric, log, c), CONFIG));
      }
      if (has && !contourDiv.hidden) {
        work.push(Plotly.react(contourDiv, contourTraces(panel, metric, log, c, last), contourLayout(panel), CONFIG));
      }
      side(panel, i, metric);
    });
    showProgress();
    toLink();
    Promise.all(work).then(drawn);
  }

  function drawn() {  // counted in body[data-draws], so that a test can wait for a redraw
    draws += 1;
    document.body.dataset.draws = String(draws);
  }

  function showProgress() {
    const box = $("progress"), live = DATA.live;
    $("title").textContent = document.title = DATA.title;  // a live page learns it with its file
    if (live) {
      const pct = Math.floor(100 * live.fraction);
      const parts = [`${pct}% done (${live.points_done}/${live.points_total} points)`];
      if (live.shown) parts.push(`shown at ${live.shown}`);
      if (live.complete) parts.push("complete");
      else {
        if (live.points_per_second !== null) parts.push(`${fmt(live.points_per_second.toPrecision(3))} points/s`);
        if (live.eta_seconds !== null) parts.push(`ETA ${duration(live.eta_seconds)}`);
      }
      if (live.error) parts.push(live.error);
      box.textContent = parts.join(" · ");
      box.dataset.fraction = String(live.fraction);
    } else {
      const partial = shownPanels().map((p) => p.progress).filter((t) => t);
      box.textContent = partial.length && DATA.panels.length === 1 ? partial[0] : "";
    }
  }

  function duration(seconds) {
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
  }

  function fillControls() {
    const select = $("metric");
    select.textContent = "";
    for (const m of DATA.metrics) {
      const option = document.createElement("option");
      option.value = m;
      option.textContent = `${m}: ${DATA.labels[m]}`;
      select.appendChild(option);
    }
    if (!DATA.metrics.includes(state.metric)) {
      state.metric = DATA.metrics.includes("train_loss") ? "train_loss" : DATA.metrics[0];
    }
    select.value = state.metric;
    const box = $("splits");
    box.textContent = "";
    const names = splits();
    if (names.length > 1) {
      box.append("split ");
      for (const s of names) {
        const label = document.createElement("label");
        label.innerHTML = `<input type="radio" name="split" value="${s}"> ${s} `;
        box.appendChild(label);
      }
    }
    syncSplit();
    if (DATA.mode === "frames") {
      $("frames").hidden = false;
      $("frame").max = String(DATA.panels.length - 1);
    }
    showFrameName();
  }

  function syncSplit() {
    if (!state.metric) return;  // nothing to show yet
    const [split, kind] = splitOf(state.metric);
    for (const input of document.querySelectorAll('input[name="split"]')) {
      input.checked = input.value === split;
      input.disabled = !DATA.metrics.includes(`${input.value}_${kind}`);
    }
  }

  function showFrameName() {
    if (DATA.mode === "frames") {
      const panel = DATA.panels[state.frame];
      $("frame-name").textContent = `${state.frame + 1}/${DATA.panels.length}: ${panel.name}`;
    }
  }

  function listen() {
    $("metric").addEventListener("change", (e) => { state.metric = e.target.value; syncSplit(); draw(); });
    $("splits").addEventListener("change", (e) => {
      const kind = splitOf(state.metric)[1], wanted = `${e.target.value}_${kind}`;
      if (DATA.metrics.includes(wanted)) { state.metric = wanted; $("metric").value = wanted; }
      syncSplit();
      draw();
    });
    for (const input of document.querySelectorAll('input[name="height"]')) {
      input.addEventListener("change", (e) => { state.height = e.target.value; draw(); });
    }
    $("view").addEventListener("change", (e) => { state.view = e.target.value; draw(); });
    $("frame").addEventListener("input", (e) => { state.frame = Number(e.target.value); showFrameName(); draw(); });
  }

  function poll() {
    fetch("data.json", {cache: "no-store"})
      .then((response) => response.json())
      .then((fresh) => {
        const rebuild = fresh.panels.length !== DATA.panels.length ||
          fresh.metrics.join() !== DATA.metrics.join();
        DATA = fresh;
        if (rebuild) { fillControls(); buildPanels(); }
        draw();
      })
      .catch((error) => { $("progress").textContent = `cannot reach the server (${error}); retrying`; })
      .finally(() => { if (!(DATA.live && DATA.live.complete)) setTimeout(poll, 1000 * DATA.refresh_seconds); });
  }

  function fromLink() {  // page.html#metric=test_acc&view=contour&height=linear&frame=2 opens that view
    const wanted = new URLSearchParams(location.hash.slice(1));
    if (DATA.metrics.includes(wanted.get("metric"))) state.metric = wanted.get("metric");
    if (["both", "surface", "contour"].includes(wanted.get("view"))) state.view = wanted.get("view");
    if (["auto", "log", "linear"].includes(wanted.get("height"))) state.height = wanted.get("height");
    const frame = Number(wanted.get("frame"));
    if (DATA.mode === "frames" && Number.isInteger(frame) && frame >= 1 && frame <= DATA.panels.length) {
      state.frame = frame - 1;
    }
    $("view").value = state.view;
    $("frame").value = String(state.frame);
    for (const input of document.querySelectorAll('input[name="height"]')) input.checked = input.value === state.height;
  }

  function toLink() {  // the address names the view shown, so that it can be shared
    const frame = DATA.mode === "frames" ? `&frame=${state.frame + 1}` : "";
    try {
      history.replaceState(null, "", `#metric=${state.metric}&view=${state.view}&height=${state.height}${frame}`);
    } catch (error) {  // a page without an address of its own (a notebook's iframe) has no link to keep
    }
  }

  state.view = DATA.mode === "compare" ? "contour" : "both";
  fromLink();
  fillControls();
  buildPanels();
  listen();
  draw();
  if (DATA.refresh_seconds) setTimeout(poll, 1000 * DATA.refresh_seconds);
})();
