/* Charts of the dashboard: time series, bars and gains curves through uPlot (vendored), a
 * ZIP-centroid scatter and an interval (forest) plot drawn on a canvas here. Every chart is a
 * <figure> with a caption, a role="img" element naming what it shows, and a legend in text. */
"use strict";

const Charts = (() => {
  const PALETTE = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];

  // Twelve distinct colours for the first segments (the largest), then golden-angle hues.
  const SEGMENT_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939"];

  function segmentColour(id) {
    if (id >= 0 && id < SEGMENT_COLOURS.length) return SEGMENT_COLOURS[id];
    // Golden-angle hues: neighbouring segment ids get far-apart colours, for any k.
    const hue = (id * 137.508) % 360;
    return `hsl(${hue.toFixed(1)}, 70%, ${id % 2 ? 38 : 48}%)`;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /* A figure: caption, the chart area (role img, labelled), a text legend. */
  function figure(parent, title, description) {
    const area = el("div", { class: "chart", role: "img", "aria-label": `${title}. ${description}` });
    const legend = el("ul", { class: "legend", "aria-label": `${title}: legend` });
    const fig = el("figure", { class: "card" }, el("figcaption", {}, el("strong", {}, title)), area, legend);
    parent.append(fig);
    return { fig, area, legend };
  }

  function legendItem(legend, colour, text) {
    legend.append(el("li", {}, el("span", { class: "swatch", style: `background:${colour}` }), text));
  }

  function width(area) {
    return Math.max(280, Math.floor(area.getBoundingClientRect().width || area.clientWidth || 560));
  }

  /* uPlot line chart. xs: numbers (seconds when time), series: [{label, values}]. */
  function lines(parent, { title, description, xs, series, time = true, height = 240, xLabel, yLabel, bars = false, yMax, xLabels }) {
    const { area, legend } = figure(parent, title, description);
    const opts = {
      width: width(area),
      height,
      legend: { show: false },
      cursor: { show: true, points: { show: false } },
      scales: { x: xLabels ? { time: false, range: [-0.5, xs.length - 0.5] } : bars && xs.length > 1 ? { time, range: [xs[0] - (xs[1] - xs[0]) / 2, xs[xs.length - 1] + (xs[1] - xs[0]) / 2] } : { time }, y: yMax === undefined ? { auto: true } : { range: [0, yMax] } },
      axes: [
        xLabels
          ? { label: xLabel, stroke: "#1b1f24", grid: { show: false }, splits: () => xs, values: () => xLabels }
          : { label: xLabel, stroke: "#1b1f24", grid: { stroke: "#e3e6ea" } },
        { label: yLabel, stroke: "#1b1f24", grid: { stroke: "#e3e6ea" } },
      ],
      series: [{}],
    };
    series.forEach((s, i) => {
      const colour = s.colour || PALETTE[i % PALETTE.length];
      opts.series.push({
        label: s.label,
        stroke: colour,
        width: s.width || 2,
        dash: s.dash,
        fill: bars ? colour + "cc" : undefined,
        points: { show: !bars && xs.length < 40 },
        paths: bars ? uPlot.paths.bars({ size: [0.6 / series.length, 80], align: series.length > 1 ? (i === 0 ? -1 : 1) : 0 }) : undefined,
      });
      legendItem(legend, colour, s.label);
    });
    const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], area);
    return plot;
  }

  function canvas(area, height) {
    const w = width(area);
    const ratio = window.devicePixelRatio || 1;
    const c = el("canvas", { width: Math.round(w * ratio), height: Math.round(height * ratio), style: `width:${w}px;height:${height}px` });
    area.append(c);
    const ctx = c.getContext("2d");
    ctx.scale(ratio, ratio);
    return { c, ctx, w, h: height };
  }

  /* ZIP centroids: points [zip, lat, lon, segment]; the contiguous states, equirectangular. */
  function zipMap(parent, { title, description, points, labels }) {
    const { area, legend } = figure(parent, title, description);
    const box = { lon0: -125, lon1: -66.5, lat0: 24.3, lat1: 49.5 };
    const inside = points.filter((p) => p[2] >= box.lon0 && p[2] <= box.lon1 && p[1] >= box.lat0 && p[1] <= box.lat1);
    const w = width(area);
    const aspect = (box.lat1 - box.lat0) / ((box.lon1 - box.lon0) * Math.cos((37 * Math.PI) / 180));
    const h = Math.round(w * aspect);
    const g = canvas(area, h).ctx;
    g.fillStyle = "#eef3f8";
    g.fillRect(0, 0, w, h);
    for (const [, lat, lon, seg] of inside) {
      const x = ((lon - box.lon0) / (box.lon1 - box.lon0)) * (w - 8) + 4;
      const y = ((box.lat1 - lat) / (box.lat1 - box.lat0)) * (h - 8) + 4;
      g.fillStyle = segmentColour(seg);
      g.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
    const shown = [...new Set(inside.map((p) => p[3]))].sort((a, b) => a - b);
    for (const id of shown) legendItem(legend, segmentColour(id), `${id}: ${labels[id] || "segment " + id}`);
    return { drawn: inside.length, hidden: points.length - inside.length };
  }

  /* Interval plot: rows [{label, value, lo, hi, colour}] on a shared axis with a zero line. */
  function intervals(parent, { title, description, rows, format = (v) => v.toFixed(3), unit = "" }) {
    const { area, legend } = figure(parent, title, description);
    const rowH = 46, top = 14, bottom = 30, left = 170, right = 24;
    const h = top + bottom + rowH * Math.max(rows.length, 1);
    const { ctx: g, w } = canvas(area, h);
    const finite = rows.flatMap((r) => [r.lo, r.hi, r.value]).filter((v) => typeof v === "number" && isFinite(v));
    let lo = Math.min(0, ...finite), hi = Math.max(0, ...finite);
    if (lo === hi) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    const x = (v) => left + ((v - lo) / (hi - lo)) * (w - left - right);
    g.fillStyle = "#ffffff";
    g.fillRect(0, 0, w, h);
    g.font = "13px system-ui, sans-serif";
    g.strokeStyle = "#c9ced6";
    g.fillStyle = "#1b1f24";
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      g.beginPath(); g.moveTo(x(v), top); g.lineTo(x(v), h - bottom); g.stroke();
      g.textAlign = "center";
      g.fillText(format(v) + unit, x(v), h - bottom + 18);
    }
    g.strokeStyle = "#1b1f24"; g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(x(0), top); g.lineTo(x(0), h - bottom); g.stroke();
    rows.forEach((r, i) => {
      const y = top + rowH * i + rowH / 2;
      const colour = r.colour || PALETTE[i % PALETTE.length];
      g.fillStyle = "#1b1f24"; g.textAlign = "right";
      g.fillText(r.label, left - 10, y + 4);
      if (typeof r.lo === "number" && typeof r.hi === "number") {
        g.strokeStyle = colour; g.lineWidth = 3;
        g.beginPath(); g.moveTo(x(r.lo), y); g.lineTo(x(r.hi), y); g.stroke();
        g.beginPath(); g.moveTo(x(r.lo), y - 7); g.lineTo(x(r.lo), y + 7); g.moveTo(x(r.hi), y - 7); g.lineTo(x(r.hi), y + 7); g.stroke();
      }
      if (typeof r.value === "number") {
        g.fillStyle = colour;
        g.beginPath(); g.arc(x(r.value), y, 6, 0, 2 * Math.PI); g.fill();
      }
      const text = typeof r.value === "number"
        ? `${r.label}: ${format(r.value)}${unit}` + (typeof r.lo === "number" ? ` (interval ${format(r.lo)}${unit} to ${format(r.hi)}${unit})` : "")
        : `${r.label}: not enough data yet`;
      legendItem(legend, colour, text);
    });
  }

  return { lines, zipMap, intervals, segmentColour, el, PALETTE };
})();
