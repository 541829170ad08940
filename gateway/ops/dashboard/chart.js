// A small bar chart drawn as inline SVG: no library, nothing fetched.
"use strict";
function barChart(points, opts) {
  const width = opts.width || 900, height = opts.height || 220, pad = 70;
  const max = Math.max(...points.map(p => p.value), 0) || 1;
  const step = (width - pad * 2) / Math.max(points.length, 1);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", opts.label || "chart");
  const text = (x, y, s, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor || "middle");
    t.textContent = s; svg.appendChild(t);
  };
  text(pad - 4, pad - 10, opts.format(max), "end");
  text(pad - 4, height - pad, opts.format(0), "end");
  points.forEach((p, i) => {
    const h = (p.value / max) * (height - pad * 2);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("class", "chart-bar");
    rect.setAttribute("x", pad + i * step + 1);
    rect.setAttribute("y", height - pad - h);
    rect.setAttribute("width", Math.max(step - 2, 1));
    rect.setAttribute("height", h);
    rect.dataset.day = p.label;
    rect.dataset.value = p.value;
    const title = document.createElementNS(ns, "title");
    title.textContent = `${p.label}: ${opts.format(p.value)}`;
    rect.appendChild(title);
    svg.appendChild(rect);
    if (i % 5 === 0 || i === points.length - 1) text(pad + i * step + step / 2, height - pad + 14, p.label.slice(5));
  });
  return svg;
}
