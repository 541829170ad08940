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
const usd = v => "$" + (v || 0).toFixed(v >= 1 ? 2 : 6);
const master = () => sessionStorage.getItem("gatewayMaster");

async function api(method, path, body) {
  const resp = await fetch(path, {
    method, headers: {"Authorization": `Bearer ${master()}`, "Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) { signOut(); throw new Error("Signed out: the master key was refused."); }
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
    el("td", {}, revoked ? String(k.rpm_limit) : rpm, el("div", {class: "muted"}, `${k.rpm_used} used`)),
    el("td", {}, revoked ? String(k.tpm_limit) : tpm, el("div", {class: "muted"}, `${k.tpm_used} used`)),
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
  $("#keys-table tbody").replaceChildren(...keys.data.map(keyRow));
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
function isoDay(d) { return d.toISOString().slice(0, 10); }

function spendRows(rows, first) {
  return rows.map(r => el("tr", {}, el("td", {}, first(r)), el("td", {}, String(r.requests)),
    el("td", {}, String(r.prompt_tokens || 0)), el("td", {}, String(r.completion_tokens || 0)),
    el("td", {}, usd(r.cost_usd))));
}

async function loadSpend() {
  const since = $("#since").value;
  const q = since ? `&since=${since}` : "";
  const start = new Date(Date.now() - 29 * 86400000);
  const [days, models, keys] = await Promise.all([
    api("GET", `/admin/spend?by=day&since=${since && since > isoDay(start) ? since : isoDay(start)}`),
    api("GET", `/admin/spend?by=model${q}`), api("GET", `/admin/spend?by=key${q}`)]);
  const byDay = Object.fromEntries(days.data.map(r => [r.day, r.cost_usd || 0]));
  const points = [];
  for (let i = 29; i >= 0; i--) {
    const day = isoDay(new Date(Date.now() - i * 86400000));
    points.push({label: day, value: byDay[day] || 0});
  }
  $("#day-chart").replaceChildren(barChart(points, {format: usd, label: "spend per day"}));
  $("#spend-model tbody").replaceChildren(...spendRows(models.data, r => r.model || "(none)"));
  $("#spend-key tbody").replaceChildren(...spendRows(keys.data, r => r.name || r.key_id));
}

$("#spend-filter").addEventListener("submit", ev => { ev.preventDefault(); loadSpend().catch(report); });

// ---- routes -----------------------------------------------------------
async function loadRoutes() {
  const routes = await api("GET", "/admin/routes");
  $("#routes-list").replaceChildren(...routes.data.map(r => el("div", {class: "card", "data-route": r.name},
    el("h3", {}, r.name, r.aliases.length ? el("span", {class: "muted"}, `  (${r.aliases.join(", ")})`) : ""),
    el("p", {class: "muted"}, `strategy ${r.strategy} · retries ${r.retries} · timeout ${r.timeout}s`),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Provider", "Model", "Price in/out", "Weight", "Latency (avg TTFB)",
                                                    "Error rate", "State"].map(h => el("th", {}, h)))),
      el("tbody", {}, ...r.targets.map(t => el("tr", {},
        el("td", {}, t.provider), el("td", {}, t.model), el("td", {}, `${t.price.input} / ${t.price.output}`),
        el("td", {}, String(t.weight)),
        el("td", {}, t.latency_ms == null ? "–" : `${t.latency_ms.toFixed(1)} ms`),
        el("td", {}, t.requests ? `${(100 * t.errors / t.requests).toFixed(1)}% of ${t.requests}` : "–"),
        el("td", {class: t.cooling ? "cooling" : ""}, t.cooling ? `cooling ${t.cooling_seconds}s` : "ready"))))))));
}

// ---- wiring -----------------------------------------------------------
$("#signin-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  sessionStorage.setItem("gatewayMaster", $("#master").value);
  $("#master").value = "";
  try { await api("GET", "/admin/keys"); $("#signin-error").textContent = ""; show(); }
  catch (err) { $("#signin-error").textContent = "That master key was refused."; }
});
$("#signout").addEventListener("click", signOut);
window.addEventListener("hashchange", show);
show();
