// A bar chart drawn as inline SVG: no library, nothing fetched. Axis titles, a y axis of round
// ticks with gridlines, a label under every few bars, and a title per bar (hover).
"use strict";

// Round tick steps (1, 2, 5 x 10^n) so the y axis reads $0, $0.05, $0.10 ... rather than $0.0371.
function niceTicks(max, count) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * power).find(s => s >= raw);
  const ticks = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

function barChart(points, opts) {
  const width = opts.width || 900, height = opts.height || 260;
  const left = 78, right = 16, top = 16, bottom = 52;
  const plotW = width - left - right, plotH = height - top - bottom;
  const ticks = niceTicks(Math.max(...points.map(p => p.value), 0), 4);
  const max = ticks[ticks.length - 1] || 1;
  const step = plotW / Math.max(points.length, 1);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", opts.label || "chart");
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    svg.appendChild(node);
    return node;
  };
  const y = v => top + plotH - (v / max) * plotH;
  ticks.forEach(t => {
    add("line", {class: "grid", x1: left, x2: width - right, y1: y(t), y2: y(t)});
    add("text", {class: "tick y-tick", x: left - 6, y: y(t) + 3, "text-anchor": "end"}, opts.format(t));
  });
  add("line", {class: "axis", x1: left, x2: width - right, y1: top + plotH, y2: top + plotH});
  add("text", {class: "axis-title", x: 12, y: top + plotH / 2, "text-anchor": "middle",
               transform: `rotate(-90 12 ${top + plotH / 2})`}, opts.yTitle || "");
  add("text", {class: "axis-title", x: left + plotW / 2, y: height - 6, "text-anchor": "middle"}, opts.xTitle || "");
  const every = Math.max(1, Math.ceil(points.length / 10));
  points.forEach((p, i) => {
    const h = (p.value / max) * plotH;
    const rect = add("rect", {class: "chart-bar", x: left + i * step + 1, y: top + plotH - h,
                              width: Math.max(step - 2, 1), height: h});
    rect.dataset.day = p.label;
    rect.dataset.value = p.value;
    const title = document.createElementNS(ns, "title");
    title.textContent = `${p.label}: ${opts.format(p.value)}`;
    rect.appendChild(title);
    const last = i === points.length - 1 && i % every >= every / 2;   // the last day too, unless crowded
    if (i % every === 0 || last) {
      add("text", {class: "tick x-tick", x: left + i * step + step / 2, y: top + plotH + 16, "text-anchor": "middle"},
          p.label.slice(5));
    }
  });
  return svg;
}
