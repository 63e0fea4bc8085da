// The Sluice console: polls the admin JSON every two seconds and renders each view with DOM
// calls only (no HTML strings built from data). The session cookie authorizes every request.
"use strict";

const POLL_MS = 2000;
const HISTORY = 60; // samples kept for sparklines and rates (two minutes at 2 s)
const VIEWS = ["overview", "targets", "slos", "incidents", "judge", "tenants"];
const WINDOWS = ["5m", "30m", "1h", "6h", "1d", "3d"];

const state = {
  data: {},
  metricSamples: [], // [{t, routes: {route: {req, err, cost, ttft: {le: count}}}}]
  sloHistory: new Map(), // "route/slo" -> [{budget, burn5m}]
  notes: new Map(), // incident id -> note being typed
  messages: new Map(), // incident id -> last action result
  lastOk: 0,
};

// ---- DOM helpers ----------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

function table(headers, rows, caption) {
  return h("div", { class: "scroll" },
    h("table", {},
      caption ? h("caption", { class: "muted" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.num ? "num" : null }, x.label || x)))),
      h("tbody", {}, rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "Nothing yet."))])));
}

function num(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return "∞";
  return Number(v).toFixed(digits);
}

function pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + " %"; }

function when(v) {
  if (v === null || v === undefined) return "—";
  const d = typeof v === "number" ? new Date(v) : new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleTimeString();
}

function sparkline(values, label) {
  const pts = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  const s = svg("svg", { class: "spark", viewBox: "0 0 120 24", role: "img", "aria-label": label });
  if (pts.length < 2) return s;
  const max = Math.max(...pts), min = Math.min(...pts);
  const span = max - min || 1;
  const step = 120 / (values.length - 1);
  const coords = [];
  values.forEach((v, i) => {
    if (v === null || v === undefined || !Number.isFinite(v)) return;
    coords.push(`${(i * step).toFixed(1)},${(22 - ((v - min) / span) * 20).toFixed(1)}`);
  });
  s.append(svg("polyline", { points: coords.join(" ") }));
  return s;
}

function burnClass(b) {
  if (b === null || b === undefined) return "muted";
  if (b >= 14.4) return "bad";
  if (b >= 1) return "warn";
  return "ok";
}

// ---- fetching ----------------------------------------------------------------------------

async function getJson(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } });
  if (r.status === 401) { location.reload(); throw new Error("signed out"); }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

async function poll() {
  try {
    const [targets, slo, incidents, judge, policy, metrics] = await Promise.all([
      getJson("/admin/targets"),
      getJson("/admin/slo"),
      getJson("/admin/incidents"),
      getJson("/admin/judge/recent"),
      getJson("/admin/policy"),
      fetch("/metrics", { credentials: "same-origin" }).then((r) => r.text()),
    ]);
    state.data = { targets, slo, incidents, judge, policy };
    sampleMetrics(metrics);
    sampleSlos(slo);
    state.lastOk = Date.now();
    render();
    const st = document.getElementById("status");
    st.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
    st.classList.remove("stale");
  } catch (e) {
    const st = document.getElementById("status");
    st.textContent = `Not updating: ${e.message}`;
    st.classList.add("stale");
  }
}

// ---- metrics (overview) ------------------------------------------------------------------

function parseLabels(s) {
  const out = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(s))) out[m[1]] = m[2].replace(/\\"/g, '"').replace(/\\\\/g, "\\");
  return out;
}

function sampleMetrics(text) {
  const routes = {};
  const of = (r) => (routes[r] ||= { req: 0, err: 0, cost: 0, ttft: {}, dur: {} });
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) continue;
    const line = raw.split(" # ")[0];
    const brace = line.indexOf("{");
    const close = line.lastIndexOf("}");
    if (brace < 0 || close < 0) continue;
    const name = line.slice(0, brace);
    const labels = parseLabels(line.slice(brace + 1, close));
    const value = parseFloat(line.slice(close + 1).trim().split(" ")[0]);
    if (!labels.route || Number.isNaN(value)) continue;
    if (name === "sluice_requests_total") {
      const r = of(labels.route);
      r.req += value;
      if (!["ok", "client_error", "cancelled"].includes(labels.outcome)) r.err += value;
    } else if (name === "sluice_cost_usd_total") {
      of(labels.route).cost += value;
    } else if (name === "gen_ai_client_operation_time_to_first_chunk_seconds_bucket") {
      const t = of(labels.route).ttft;
      t[labels.le] = (t[labels.le] || 0) + value;
    } else if (name === "gen_ai_client_operation_duration_seconds_bucket") {
      // A non-streamed answer's first token is its whole answer: the fallback for TTFT.
      const t = of(labels.route).dur;
      t[labels.le] = (t[labels.le] || 0) + value;
    }
  }
  state.metricSamples.push({ t: Date.now(), routes });
  if (state.metricSamples.length > HISTORY) state.metricSamples.shift();
}

function p95(buckets) {
  const les = Object.keys(buckets).sort((a, b) => parseFloat(a) - parseFloat(b));
  if (!les.length) return null;
  const total = buckets[les[les.length - 1]];
  if (!total) return null;
  for (const le of les) if (buckets[le] >= 0.95 * total) return parseFloat(le);
  return null;
}

function overviewRows() {
  const s = state.metricSamples;
  if (!s.length) return [];
  const last = s[s.length - 1];
  // Rates over the last minute (or since the console opened).
  const first = s.find((x) => last.t - x.t <= 60000) || s[0];
  const secs = (last.t - first.t) / 1000;
  const names = Object.keys(last.routes).sort();
  const rows = names.map((route) => {
    const a = last.routes[route], b = first.routes[route] || { req: 0, err: 0, cost: 0, ttft: {}, dur: {} };
    const dReq = a.req - b.req, dErr = a.err - b.err, dCost = a.cost - b.cost;
    const delta = (x, y) => Object.fromEntries(Object.keys(x).map((le) => [le, x[le] - (y[le] || 0)]));
    const windowed = secs > 0 && dReq > 0;
    const streamed = p95(windowed ? delta(a.ttft, b.ttft) : a.ttft);
    return {
      route,
      rate: secs > 0 ? dReq / secs : null,
      errors: windowed ? dErr / dReq : (a.req ? a.err / a.req : null),
      p95: streamed ?? p95(windowed ? delta(a.dur, b.dur) : a.dur),
      p95Of: streamed === null ? "whole answers" : "streams",
      spendHour: secs > 0 ? (dCost / secs) * 3600 : null,
      total: a.req,
    };
  });
  return rows;
}

function renderOverview(el) {
  const rows = overviewRows();
  const sum = (k) => rows.reduce((x, r) => x + (r[k] || 0), 0);
  const totalRate = sum("rate");
  const incidents = state.data.incidents?.open?.length ?? 0;
  // Out by passive health, or taken out by a remediation failover.
  const ejected = (state.data.targets?.routes || []).flatMap((r) => r.targets).filter((t) => t.health !== "healthy").length
    + (state.data.slo?.routes || []).reduce((n, r) => n + (r.remediation?.failover?.length || 0), 0);
  const paging = (state.data.slo?.routes || []).flatMap((r) => r.status).filter((s) => s.alert === "page").length;
  el.append(
    h("div", { class: "cards" },
      card("Requests / s", num(totalRate)),
      card("Spend / hour", "$" + num(sum("spendHour"), 4)),
      card("Open incidents", incidents, incidents ? "bad" : "ok"),
      card("Targets out", ejected, ejected ? "warn" : "ok"),
      card("SLOs paging", paging, paging ? "bad" : "ok")),
    h("h3", {}, "Per route (last minute)"),
    table(["Route", { label: "Req/s", num: true }, { label: "Error ratio", num: true }, { label: "p95 TTFT", num: true }, { label: "Spend/h (USD)", num: true }, { label: "Total", num: true }],
      rows.map((r) => h("tr", {},
        h("th", { scope: "row" }, r.route),
        h("td", { class: "num" }, num(r.rate)),
        h("td", { class: "num " + (r.errors > 0.05 ? "bad" : "") }, pct(r.errors)),
        h("td", { class: "num", title: `p95 of ${r.p95Of}` }, r.p95 === null ? "—" : (r.p95 === Infinity ? "over the largest bucket" : `≤ ${+(r.p95 * 1000).toFixed(1)} ms`), r.p95 !== null && r.p95Of !== "streams" ? h("span", { class: "muted" }, " (answer)") : null),
        h("td", { class: "num" }, num(r.spendHour, 4)),
        h("td", { class: "num" }, r.total)))));
}

function card(k, v, cls) {
  return h("div", { class: "card" }, h("div", { class: "v " + (cls || "") }, v), h("div", { class: "k" }, k));
}

// ---- targets -----------------------------------------------------------------------------

function renderTargets(el) {
  const t = state.data.targets;
  if (!t) return;
  const remedy = new Map();
  for (const r of state.data.slo?.routes || [])
    for (const f of r.remediation?.failover || [])
      remedy.set(`${r.route}/${f.target.provider}/${f.target.model}`, f);
  for (const route of t.routes) {
    el.append(h("h3", {}, `Route ${route.route} `, h("span", { class: "muted" }, `(${route.strategy}, retries ${route.retry_budget.retries_10s}/${route.retry_budget.requests_10s} in 10 s)`)));
    el.append(table(["Target", { label: "Weight", num: true }, "Health", "Ejected until", "Cooling until", { label: "EWMA TTFT ms", num: true }, { label: "In flight", num: true }, { label: "Failures", num: true }, "Remediation"],
      route.targets.map((x) => {
        const f = remedy.get(`${route.route}/${x.provider}/${x.model}`);
        return h("tr", {},
          h("th", { scope: "row" }, `${x.provider}/${x.model}`, x.fallback ? h("span", { class: "muted" }, " (fallback)") : null),
          h("td", { class: "num" }, x.weight),
          h("td", { class: x.health === "healthy" ? "ok" : "bad" }, x.health),
          h("td", {}, when(x.ejected_until)),
          h("td", {}, when(x.cooling_until)),
          h("td", { class: "num" }, num(x.ewma_ttft_ms, 0)),
          h("td", { class: "num" }, x.inflight),
          h("td", { class: "num" }, `${x.window_failures}/${x.window_requests}`),
          h("td", { class: f ? "bad" : "muted" }, f ? `failover ${pct(f.share)} (rule ${f.rule}, incident ${f.incident})` : "—"));
      })));
  }
}

// ---- SLOs --------------------------------------------------------------------------------

function sampleSlos(slo) {
  for (const r of slo.routes || []) {
    for (const s of r.status || []) {
      const key = `${s.route}/${s.slo}`;
      const hist = state.sloHistory.get(key) || [];
      hist.push({ budget: s.budget_remaining, burn: s.windows?.["5m"]?.burn ?? null });
      if (hist.length > HISTORY) hist.shift();
      state.sloHistory.set(key, hist);
    }
  }
}

function renderSlos(el) {
  const slo = state.data.slo;
  if (!slo) return;
  if (!slo.routes.length) el.append(h("p", { class: "muted" }, "No route has an SLO."));
  const paused = new Map((slo.paused_rules || []).map((p) => [p.rule, p]));
  for (const r of slo.routes) {
    el.append(h("h3", {}, `Route ${r.route}`));
    const statusRow = (s, label) => {
      const hist = state.sloHistory.get(`${s.route}/${s.slo}`) || [];
      return h("tr", {},
        h("th", { scope: "row" }, label),
        h("td", { class: "num" }, `${s.objective <= 1 ? +(s.objective * 100).toFixed(3) : s.objective} %`),
        h("td", { class: s.alert === "page" ? "bad" : s.alert === "ticket" ? "warn" : "ok" }, s.alert),
        h("td", { class: "num" }, pct(s.budget_remaining), " ", s.target ? null : sparkline(hist.map((x) => x.budget), `budget remaining of ${s.slo}`)),
        WINDOWS.map((w) => h("td", { class: "num " + burnClass(s.windows?.[w]?.burn) }, num(s.windows?.[w]?.burn))),
        h("td", {}, s.target ? null : sparkline(hist.map((x) => x.burn), `5 minute burn of ${s.slo}`)));
    };
    const headers = ["SLO", { label: "Objective", num: true }, "Alert", { label: "Budget left", num: true }, ...WINDOWS.map((w) => ({ label: `Burn ${w}`, num: true })), "5m burn trend"];
    el.append(table(headers, [
      ...r.status.map((s) => statusRow(s, s.slo)),
      ...r.targets.map((s) => statusRow(s, `${s.slo} · ${s.target.provider}/${s.target.model}`)),
    ]));
    const rem = r.remediation || {};
    const active = [
      ...(rem.failover || []).map((f) => `failover of ${f.target.provider}/${f.target.model} (${pct(f.share)}, rule ${f.rule}, incident ${f.incident})`),
      rem.downgrade_to ? `downgrade to ${rem.downgrade_to.model} (${pct(rem.downgrade_to.share)}, rule ${rem.downgrade_to.rule})` : null,
      rem.cache_fallback ? `cache fallback (${pct(rem.cache_fallback.share)}, rule ${rem.cache_fallback.rule})` : null,
      rem.shed ? `shedding priority ≤ ${rem.shed.max_priority} (${pct(rem.shed.share)}, rule ${rem.shed.rule})` : null,
    ].filter(Boolean);
    el.append(h("p", {}, h("strong", {}, "Remediation in force: "), active.length ? active.join("; ") : "none"));
    const rules = r.rules || [];
    if (rules.length) {
      el.append(table(["Rule", "When", "Does", "Mode", ""], rules.map((rule) => {
        const p = paused.get(rule.name);
        const mode = p ? `paused by ${p.by}` : rule.dry_run ? "dry-run" : "live";
        return h("tr", {},
          h("th", { scope: "row" }, rule.name),
          h("td", {}, `${rule.slo} burns ${plain(rule.burn)}${rule.no_healthy_target ? ", no healthy target" : ""}`),
          h("td", {}, plain(rule.action)),
          h("td", { class: p ? "warn" : "" }, mode),
          h("td", {}, h("button", { type: "button", "data-rule": rule.name, onclick: () => act(`/admin/rules/${encodeURIComponent(rule.name)}/${p ? "resume" : "pause"}`, null, null) }, p ? "Resume rule" : "Pause rule (dry-run)")));
      })));
    }
  }
}

// ---- incidents ---------------------------------------------------------------------------

// A config value as one short line: `page`, `downgrade_to: ["small"]`.
function plain(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "object") return String(v);
  return Object.entries(v).map(([k, x]) => `${k}: ${typeof x === "object" ? JSON.stringify(x) : x}`).join(", ");
}

// The burns an event was decided on: every window with one, e.g. `burn 1h 20.1, 6h 14.0`.
function burns(e) {
  const s = e.evidence?.[0];
  if (!s) return "no SLO evidence";
  const known = WINDOWS.filter((w) => typeof s.windows?.[w]?.burn === "number").map((w) => `${w} ${num(s.windows[w].burn, 1)}`);
  const who = s.target ? ` on ${s.target.provider}/${s.target.model}` : "";
  return known.length ? `burn${who} ${known.join(", ")}` : `burn${who} not known yet`;
}

function eventDetail(e) {
  switch (e.kind) {
    case "opened": return `trigger ${e.slo} ${plain(e.condition)}; ${burns(e)}`;
    case "action_taken": return `${e.applied?.action} ${e.applied?.model ?? ""}${e.applied?.target ? e.applied.target.provider + "/" + e.applied.target.model : ""} on ${pct(e.applied?.share)}; ${burns(e)}`;
    case "blocked": return `blocked: ${JSON.stringify(e.reason)}`;
    case "probe_result": return `probe says ${e.verdict} (burn ${num(e.burn)})`;
    case "reverted": return `guard ${e.guard_slo} burned on ${e.from}; now ${e.to ?? "the original"}`;
    case "unwound": return `unwound (${e.reason}) after ${Math.round((e.held || 0) / 1000)} s held, healthy ${Math.round((e.healthy_for || 0) / 1000)} s`;
    case "alerts_changed": return `alerts started: ${(e.started || []).join(", ") || "—"}; ended: ${(e.ended || []).join(", ") || "—"}`;
    case "operator": return `${e.op.replace("_", " ")} by ${e.by}${e.note ? ": “" + e.note + "”" : ""}`;
    case "resolved": return `resolved after ${Math.round((e.open_for || 0) / 1000)} s`;
    default: return "";
  }
}

function safeLink(url) {
  try {
    const u = new URL(url);
    if (u.protocol === "https:" || u.protocol === "http:") return h("a", { href: u.href, rel: "noopener noreferrer", target: "_blank" }, "runbook");
  } catch (_) { /* not a URL */ }
  return null;
}

async function act(path, id, note) {
  const body = note ? JSON.stringify({ note }) : "{}";
  let msg;
  try {
    const r = await fetch(path, { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" }, body });
    const v = await r.json().catch(() => ({}));
    msg = r.ok ? `Done (incident ${(v.incidents || []).join(", ")}).` : `Refused: ${v.error?.message ?? r.status}`;
    if (r.ok && id !== null) state.notes.delete(id);
  } catch (e) {
    msg = `Failed: ${e.message}`;
  }
  if (id !== null) state.messages.set(id, msg);
  else document.getElementById("status").textContent = msg;
  await poll();
}

function renderIncident(inc, open) {
  const id = inc.id;
  const noteInput = h("input", { type: "text", maxlength: 1000, placeholder: "Note (optional)", "aria-label": `Note for incident ${id}`, value: state.notes.get(id) || "", oninput: (ev) => state.notes.set(id, ev.target.value) });
  const note = () => noteInput.value.trim() || null;
  const target = inc.target ? ` ${inc.target.provider}/${inc.target.model}` : "";
  return h("article", { class: "incident" + (open ? " open" : ""), "data-incident": id },
    h("h3", {}, `#${id} ${inc.action}${target} on ${inc.route} `, h("span", { class: open ? "bad" : "muted" }, inc.state), inc.phase ? h("span", { class: "muted" }, ` · ${inc.phase}`) : null, inc.dry_run ? h("span", { class: "warn" }, " · dry-run") : null),
    h("p", { class: "muted" }, `rule ${inc.rule} · SLO ${inc.slo} · opened ${when(inc.opened_at_unix_ms)}`, inc.resolved_at_unix_ms ? ` · resolved ${when(inc.resolved_at_unix_ms)}` : "", inc.verdict ? ` · probe: ${inc.verdict}` : "", " ", inc.runbook_url ? safeLink(inc.runbook_url) : null),
    inc.hint ? h("p", {}, h("strong", {}, "Likely cause: "), inc.hint.text) : null,
    h("ol", { class: "timeline", "aria-label": `Timeline of incident ${id}` },
      inc.events_omitted ? h("li", { class: "muted" }, `${inc.events_omitted} events left out`) : null,
      inc.events.map((e) => h("li", { "data-kind": e.kind }, h("time", {}, when(e.at_unix_ms)), " ", h("strong", {}, e.kind), " ", e.dry_run ? "(dry-run) " : "", eventDetail(e)))),
    h("div", { class: "actions" },
      noteInput,
      h("button", { type: "button", onclick: () => act(`/admin/incidents/${id}/ack`, id, note()) }, "Acknowledge"),
      open && inc.phase === "active" ? h("button", { type: "button", class: "danger", onclick: () => act(`/admin/incidents/${id}/unwind`, id, note()) }, "Force unwind") : null,
      open && inc.rule && !String(inc.rule).startsWith("aiops") ? h("button", { type: "button", onclick: () => act(`/admin/rules/${encodeURIComponent(inc.rule)}/pause`, id, note()) }, "Pause rule") : null,
      state.messages.has(id) ? h("span", { class: "msg", role: "status" }, state.messages.get(id)) : null));
}

function renderIncidents(el) {
  const v = state.data.incidents;
  if (!v) return;
  el.append(h("h3", {}, `Open (${v.open.length})`));
  if (!v.open.length) el.append(h("p", { class: "muted" }, "No open incident."));
  for (const inc of v.open) el.append(renderIncident(inc, true));
  el.append(h("h3", {}, `Recent (${v.recent.length})`));
  for (const inc of v.recent.slice(0, 20)) el.append(renderIncident(inc, false));
}

// ---- judge -------------------------------------------------------------------------------

function renderJudge(el) {
  const verdicts = state.data.judge?.verdicts || [];
  const byRoute = new Map();
  for (const v of verdicts) {
    if (typeof v.score !== "number") continue;
    const list = byRoute.get(v.route) || [];
    list.push(v.score);
    byRoute.set(v.route, list);
  }
  el.append(h("h3", {}, "Score distribution per route"));
  el.append(table(["Route", { label: "Scored", num: true }, { label: "Mean", num: true }, "Distribution (0 → 1)"],
    [...byRoute.entries()].map(([route, scores]) => {
      const bins = new Array(10).fill(0);
      for (const s of scores) bins[Math.min(9, Math.max(0, Math.floor(s * 10)))]++;
      const max = Math.max(...bins) || 1;
      const chart = svg("svg", { class: "bars spark", viewBox: "0 0 120 24", role: "img", "aria-label": `scores of ${route}: ${bins.join(", ")}` },
        bins.map((b, i) => svg("rect", { x: i * 12 + 1, width: 10, y: 24 - (b / max) * 22, height: (b / max) * 22 })));
      return h("tr", {}, h("th", { scope: "row" }, route), h("td", { class: "num" }, scores.length), h("td", { class: "num" }, num(scores.reduce((a, b) => a + b, 0) / scores.length)), h("td", {}, chart));
    })));
  el.append(h("h3", {}, "Recent verdicts"));
  el.append(table(["Time", "Route", "Rubric", "Judge", "Outcome", { label: "Score", num: true }, "Label", "Request"],
    verdicts.slice(-50).reverse().map((v) => h("tr", {},
      h("td", {}, when(v.at_unix_ms)), h("td", {}, v.route), h("td", {}, v.rubric), h("td", {}, v.judge_model),
      h("td", { class: v.outcome === "scored" ? "ok" : "warn" }, typeof v.outcome === "string" ? v.outcome : JSON.stringify(v.outcome)),
      h("td", { class: "num" }, num(v.score)), h("td", {}, v.label ?? "—"), h("td", { class: "muted" }, v.request_id)))));
}

// ---- tenants -----------------------------------------------------------------------------

function renderTenants(el) {
  const spend = new Map((state.data.targets?.tenants || []).map((t) => [t.tenant, t]));
  const configured = state.data.policy?.policy?.tenants || {};
  const names = [...new Set([...Object.keys(configured), ...spend.keys()])].sort();
  const meter = (used, budget) => budget ? h("meter", { min: 0, max: budget, value: Math.min(used, budget), high: budget * 0.8, optimum: 0, "aria-label": `${num(used, 4)} of ${budget} USD` }) : null;
  const limits = (l) => Object.entries(l || {}).filter(([, v]) => v !== null).map(([k, v]) => `${k.replaceAll("_", " ")}: ${v}`).join(", ") || "none";
  el.append(table(["Tenant", { label: "Today (USD)", num: true }, "of daily budget", { label: "This month (USD)", num: true }, "of monthly budget", "Limits"],
    names.map((name) => {
      const s = spend.get(name) || { spend_day_usd: 0, spend_month_usd: 0 };
      const b = configured[name]?.budget || {};
      const day = b.usd_per_day ?? s.budget_day_usd, month = b.usd_per_month ?? s.budget_month_usd;
      const near = (used, budget) => budget && used >= budget * 0.8 ? "bad" : "";
      return h("tr", {},
        h("th", { scope: "row" }, name),
        h("td", { class: "num " + near(s.spend_day_usd, day) }, num(s.spend_day_usd, 4)),
        h("td", {}, meter(s.spend_day_usd, day), day ? ` ${num(day)} (${pct(s.spend_day_usd / day)})` : "no budget"),
        h("td", { class: "num " + near(s.spend_month_usd, month) }, num(s.spend_month_usd, 4)),
        h("td", {}, meter(s.spend_month_usd, month), month ? ` ${num(month)} (${pct(s.spend_month_usd / month)})` : "no budget"),
        h("td", { class: "wrap" }, limits(configured[name]?.limits)));
    })));
}

// ---- shell -------------------------------------------------------------------------------

const RENDER = { overview: renderOverview, targets: renderTargets, slos: renderSlos, incidents: renderIncidents, judge: renderJudge, tenants: renderTenants };

function current() {
  const v = location.hash.slice(1);
  return VIEWS.includes(v) ? v : "overview";
}

function render() {
  const view = current();
  for (const name of VIEWS) {
    const section = document.getElementById(`view-${name}`);
    section.classList.toggle("shown", name === view);
    const link = document.querySelector(`nav a[data-view="${name}"]`);
    if (name === view) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    if (name !== view) continue;
    const body = section.querySelector(".body");
    // Do not pull a half-typed note out from under the operator.
    if (body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") continue;
    const fresh = h("div", { class: "body" });
    RENDER[name](fresh);
    body.replaceWith(fresh);
  }
}

window.addEventListener("hashchange", render);
document.addEventListener("DOMContentLoaded", () => {
  render();
  poll();
  setInterval(poll, POLL_MS);
});
