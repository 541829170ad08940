// The dashboard: plain JavaScript over the admin API. The master key lives in
// sessionStorage and travels only as a Bearer header, never in a URL.
"use strict";
const $ = sel => document.querySelector(sel);
const el = (tag, attrs, ...children) => {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else if (v !== undefined) node.setAttribute(k, v);
  });
  children.flat().forEach(c => node.append(c instanceof Node ? c : document.createTextNode(c ?? "")));
  return node;
};
// Numbers as people read them: 12,345 tokens; $1,234.50, or six decimals below a dollar ($0.000138).
const num = v => (v || 0).toLocaleString("en-US");
const usd = v => {
  v = v || 0;
  return "$" + (v >= 1 || v === 0 ? v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2})
                                  : v.toFixed(6));
};
const master = () => sessionStorage.getItem("gatewayMaster");
const ADMIN_OFF = "The admin API is disabled on this server: set GATEWAY_MASTER_KEY (`gateway init` writes one " +
                  "to .env) and restart it.";

async function api(method, path, body) {
  const resp = await fetch(path, {
    method, headers: {"Authorization": `Bearer ${master()}`, "Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) { signOut(); throw new Error("Signed out: the master key was refused."); }
  if (resp.status === 404 && path.startsWith("/admin/") && data.error && data.error.code === "not_found") {
    signOut(); adminOff(); throw new Error(ADMIN_OFF);
  }
  if (!resp.ok) throw new Error((data.error && data.error.message) || `HTTP ${resp.status}`);
  return data;
}

function signOut() {
  sessionStorage.removeItem("gatewayMaster");
  show();
}

function show() {
  const signedIn = !!master();
  $("#signin").hidden = signedIn;
  $("#nav").hidden = !signedIn;
  const page = (location.hash || "#keys").slice(1);
  document.querySelectorAll(".page").forEach(p => { p.hidden = !signedIn || p.id !== `page-${page}`; });
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.page === page));
  if (signedIn) ({keys: loadKeys, spend: loadSpend, routes: loadRoutes}[page] || loadKeys)().catch(report);
}

function report(err) { console.error(err); }

// The admin API answers 404 when the server has no master key: say so instead of "refused".
function adminOff() {
  $("#admin-off").hidden = false;
  $("#signin-form").hidden = true;
}

async function probeAdmin() {
  const resp = await fetch("/admin/keys").catch(() => null);
  if (resp && resp.status === 404) adminOff();
}

// ---- keys -------------------------------------------------------------
function limitInput(name, value, step) {
  return el("input", {class: "small", name, type: "number", value, step: step || "1", min: "0"});
}

function keyRow(k) {
  const share = k.max_budget > 0 ? Math.min(k.spend_period / k.max_budget, 1) : 1;
  const error = el("p", {class: "error", role: "alert"});
  const rpm = limitInput("rpm", k.rpm_limit), tpm = limitInput("tpm", k.tpm_limit);
  const budget = limitInput("max_budget", k.max_budget, "any");
  const save = el("button", {class: "secondary", type: "button", onclick: async () => {
    error.textContent = "";
    try {
      await api("PATCH", `/admin/keys/${k.id}`, {rpm: Number(rpm.value), tpm: Number(tpm.value),
                                                 max_budget: Number(budget.value)});
      await loadKeys();
    } catch (err) { error.textContent = err.message; }
  }}, "Save");
  const revoke = el("button", {class: "danger", type: "button", onclick: async () => {
    if (!confirm(`Revoke key "${k.name}" (${k.key_prefix}…)? Clients using it are refused at once.`)) return;
    try { await api("DELETE", `/admin/keys/${k.id}`); await loadKeys(); } catch (err) { error.textContent = err.message; }
  }}, "Revoke");
  const revoked = !!k.revoked_at;
  return el("tr", {"data-key-id": k.id, class: revoked ? "muted" : undefined},
    el("td", {}, k.name),
    el("td", {}, el("code", {}, k.key_prefix + "…")),
    el("td", {}, revoked ? num(k.rpm_limit) : rpm, el("div", {class: "muted"}, `${num(k.rpm_used)} used`)),
    el("td", {}, revoked ? num(k.tpm_limit) : tpm, el("div", {class: "muted"}, `${num(k.tpm_used)} used`)),
    el("td", {}, `${usd(k.spend_period)} / `, revoked ? usd(k.max_budget) : budget,
       el("div", {class: "bar", title: `${Math.round(share * 100)}% of budget`},
          el("span", {class: share >= 1 ? "over" : "", style: `width:${share * 100}%`}))),
    el("td", {}, k.budget_period),
    el("td", {}, k.models ? k.models.join(", ") : "all"),
    el("td", {}, revoked ? "revoked" : "active"),
    el("td", {}, revoked ? "" : [save, " ", revoke], error));
}

async function loadKeys() {
  const keys = await api("GET", "/admin/keys");
  $("#keys-table tbody").replaceChildren(...(keys.data.length ? keys.data.map(keyRow)
    : [emptyRow(9, "No keys yet: create one above, or with `gateway keys create`.")]));
}

$("#create-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const body = {name: form.get("name"), budget_period: form.get("budget_period")};
  for (const f of ["rpm", "tpm", "max_budget"]) if (form.get(f)) body[f] = Number(form.get(f));
  const models = String(form.get("models") || "").split(",").map(s => s.trim()).filter(Boolean);
  if (models.length) body.models = models;
  $("#create-error").textContent = "";
  try {
    const created = await api("POST", "/admin/keys", body);
    $("#secret").textContent = created.key;
    $("#secret-box").hidden = false;
    ev.target.reset();
    await loadKeys();
  } catch (err) { $("#create-error").textContent = err.message; }
});

$("#copy-secret").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText($("#secret").textContent); $("#copy-secret").textContent = "Copied"; }
  catch (err) { $("#copy-secret").textContent = "Select and copy"; }
});

// ---- spend ------------------------------------------------------------
const DAY = 86400000;
function isoDay(d) { return d.toISOString().slice(0, 10); }
function emptyRow(span, text) { return el("tr", {class: "empty"}, el("td", {colspan: String(span)}, text)); }

// Columns of the per-route and per-key tables; `cached` only once the ledger has cached tokens.
function spendColumns(rows) {
  const cols = [["Requests", r => num(r.requests)], ["Refused", r => r.refused == null ? "–" : num(r.refused)],
                ["Errors", r => r.errors == null ? "–" : num(r.errors)], ["Prompt tokens", r => num(r.prompt_tokens)]];
  if (rows.some(r => "cached_tokens" in r)) cols.push(["Cached", r => num(r.cached_tokens)]);
  cols.push(["Completion tokens", r => num(r.completion_tokens)], ["USD", r => usd(r.cost_usd)]);
  return cols;
}

function spendTable(id, first, firstTitle, rows, empty) {
  const cols = spendColumns(rows);
  $(`#${id} thead`).replaceChildren(el("tr", {}, el("th", {}, firstTitle),
                                       ...cols.map(([h]) => el("th", {class: "num"}, h))));
  $(`#${id} tbody`).replaceChildren(...(rows.length ? rows.map(r => el("tr", {}, el("td", {}, first(r)),
    ...cols.map(([, f]) => el("td", {class: "num"}, f(r))))) : [emptyRow(cols.length + 1, empty)]));
}

function summary(rows) {
  const sum = f => rows.reduce((a, r) => a + (r[f] || 0), 0);
  const items = [["Spend", usd(sum("cost_usd"))], ["Requests", num(sum("requests"))],
                 ["Refused", num(sum("refused"))], ["Errors", num(sum("errors"))],
                 ["Tokens", num(sum("prompt_tokens") + sum("completion_tokens"))]];
  return items.map(([k, v]) => el("div", {class: "stat"}, el("div", {class: "muted"}, k), el("strong", {}, v)));
}

async function loadSpend() {
  const since = $("#since").value;
  const q = since ? `&since=${since}` : "";
  const today = new Date(), first = new Date(today - 29 * DAY);
  // the chart: the last 30 days, or from `since` (at most 92 days) when a date is chosen
  let from = first;
  if (since) from = new Date(Math.max(Date.parse(since), today - 91 * DAY));
  const [days, models, keys] = await Promise.all([
    api("GET", `/admin/spend?by=day&since=${isoDay(from)}`),
    api("GET", `/admin/spend?by=model${q}`), api("GET", `/admin/spend?by=key${q}`)]);
  const byDay = Object.fromEntries(days.data.map(r => [r.day, r.cost_usd || 0]));
  const points = [];
  for (let t = Date.parse(isoDay(from)); t <= Date.parse(isoDay(today)); t += DAY) {
    const day = isoDay(new Date(t));
    points.push({label: day, value: byDay[day] || 0});         // a day without requests is a zero bar
  }
  const range = `${points[0].label} to ${points[points.length - 1].label}`;
  $("#spend-title").textContent = since ? `Spend since ${since} (UTC)` : "Spend, all time";
  $("#chart-title").textContent = `Spend per day (UTC), ${range}`;
  $("#spend-summary").replaceChildren(...summary(keys.data));
  const nothing = !keys.data.length;
  $("#spend-empty").hidden = !nothing;
  $("#spend-empty").textContent = since ? `No requests since ${since}.`
    : "No requests yet: spend shows here once a key has been used.";
  $("#day-chart").replaceChildren(barChart(points, {format: usd, label: `spend per day, ${range}`,
                                                   yTitle: "USD", xTitle: "day (UTC)"}));
  spendTable("spend-model", r => r.model || "(no route)", "Route", models.data, "No requests.");
  spendTable("spend-key", r => r.name || r.key_id, "Key", keys.data, "No requests.");
}

$("#spend-filter").addEventListener("submit", ev => { ev.preventDefault(); loadSpend().catch(report); });
$("#since-clear").addEventListener("click", () => { $("#since").value = ""; loadSpend().catch(report); });

// ---- routes -----------------------------------------------------------
async function loadRoutes() {
  const routes = await api("GET", "/admin/routes");
  const head = ["Provider", "Model", "Price in/out (USD per 1M)", "Weight", "Latency (avg TTFB)", "Error rate", "State"];
  const target = t => el("tr", {},
    el("td", {}, t.provider), el("td", {}, t.model), el("td", {}, `${t.price.input} / ${t.price.output}`),
    el("td", {}, String(t.weight)),
    el("td", {}, t.latency_ms == null ? "–" : `${t.latency_ms.toFixed(1)} ms`),
    el("td", {}, t.requests ? `${(100 * t.errors / t.requests).toFixed(1)}% of ${num(t.requests)}` : "–"),
    el("td", {class: t.cooling ? "cooling" : ""}, t.cooling ? `cooling ${t.cooling_seconds}s` : "ready"));
  $("#routes-list").replaceChildren(...routes.data.map(r => el("div", {class: "card", "data-route": r.name},
    el("h3", {}, r.name, r.aliases.length ? el("span", {class: "muted"}, `  (${r.aliases.join(", ")})`) : ""),
    el("p", {class: "muted"}, `strategy ${r.strategy} · retries ${r.retries} · timeout ${r.timeout}s`),
    el("div", {class: "scroll"}, el("table", {}, el("thead", {}, el("tr", {}, ...head.map(h => el("th", {}, h)))),
      el("tbody", {}, ...r.targets.map(target)))))));
}

// ---- wiring -----------------------------------------------------------
$("#signin-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  sessionStorage.setItem("gatewayMaster", $("#master").value);
  $("#master").value = "";
  try { await api("GET", "/admin/keys"); $("#signin-error").textContent = ""; show(); }
  catch (err) {
    $("#signin-error").textContent = err.message === ADMIN_OFF ? "" : "That master key was refused.";
  }
});
$("#signout").addEventListener("click", signOut);
window.addEventListener("hashchange", show);
show();
if (!master()) probeAdmin();
