// claude-pm's dashboard: the session table and a session page, live from the daemon's event
// stream (server-sent events). No framework and nothing from a CDN: the daemon serves this
// file itself. State-changing requests carry the page's CSRF token.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const PAGE_SIZE = 100;
const sessions = new Map();
let sortKey = "name";
let page = 0;
let current = null; // the session page's name
let chart = { points: [] };
let logAbort = null;
let relistTimer = null;
let listSeq = null; // the newest event the first list included
window.__firstTablePaint = null;

const $ = (sel) => document.querySelector(sel);

function bytes(n) {
  if (n == null) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${n} B` : `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ${units[u]}`;
}

function duration(secs) {
  const s = Math.max(0, Math.floor(secs));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
}

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": CSRF };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  if (r.status === 401) { location.href = "/"; throw new Error("signed out"); }
  // The list names the newest event it includes; the event stream starts after it.
  const seq = r.headers.get("X-Event-Seq");
  if (seq !== null && listSeq === null) listSeq = seq;
  const text = await r.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch (_) { value = { error: text }; }
  if (!r.ok) { const e = new Error((value && value.error) || r.statusText); e.field = value && value.field; e.status = r.status; throw e; }
  return value;
}

// ---- the table ----

function shownRows() {
  const f = $("#filter").value.trim().toLowerCase();
  let rows = [...sessions.values()].filter((s) => !f || s.name.toLowerCase().includes(f) || s.state.includes(f));
  const num = (v) => (v == null ? -1 : v);
  const by = {
    name: (a, b) => a.name.localeCompare(b.name),
    state: (a, b) => a.state.localeCompare(b.state) || a.name.localeCompare(b.name),
    cpu: (a, b) => num(b.cpu_percent) - num(a.cpu_percent) || a.name.localeCompare(b.name),
    rss: (a, b) => num(b.rss_bytes) - num(a.rss_bytes) || a.name.localeCompare(b.name),
    restarts: (a, b) => b.restarts - a.restarts || a.name.localeCompare(b.name),
  }[sortKey];
  return rows.sort(by);
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderTable() {
  const rows = shownRows();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  page = Math.min(page, pages - 1);
  $("#page").textContent = `${page + 1} / ${pages}`;
  const now = Date.now() / 1000;
  const body = document.createElement("tbody");
  for (const s of rows.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)) {
    const tr = document.createElement("tr");
    tr.dataset.name = s.name;
    const health = s.health_summary || "-";
    tr.append(
      cell(s.name, "name"),
      cell(s.state, `state state-${s.state}`),
      cell(s.pid == null ? "-" : String(s.pid), "pid num"),
      cell(s.cpu_percent == null ? "-" : s.cpu_percent.toFixed(1), "cpu num"),
      cell(bytes(s.rss_bytes), "rss num"),
      cell(s.processes == null ? "-" : String(s.processes), "procs num"),
      cell(health.split(":")[0], health.startsWith("healthy") || health === "-" ? "health" : "health unhealthy"),
      cell(String(s.restarts), "restarts num"),
      cell(s.turns == null ? "-" : String(s.turns), "turns num"),
      cell(s.cost_usd == null ? "-" : `$${s.cost_usd.toFixed(4)}`, "cost num"),
      cell(s.state === "running" && s.since ? duration(now - s.since) : "-", "uptime"),
      cell(s.program, "program"),
    );
    tr.addEventListener("click", () => { location.hash = `#/s/${encodeURIComponent(s.name)}`; });
    body.appendChild(tr);
  }
  $("#sessions tbody").replaceWith(body);
  const running = [...sessions.values()].filter((s) => s.state === "running").length;
  $("#summary").textContent = `${sessions.size} sessions, ${running} running`;
  if (window.__firstTablePaint === null) {
    requestAnimationFrame(() => { window.__firstTablePaint = performance.now(); });
  }
}

async function relist() {
  const list = await api("GET", "/v1/sessions");
  const before = new Map(sessions);
  sessions.clear();
  for (const s of list) {
    // A list answer can arrive after newer events: a state they changed later stays.
    const old = before.get(s.name);
    if (old && old.since && s.since && old.since > s.since) {
      s.state = old.state; s.pid = old.pid; s.since = old.since; s.last_exit = old.last_exit;
    }
    sessions.set(s.name, s);
  }
  renderTable();
}

function relistSoon() {
  if (relistTimer) return;
  relistTimer = setTimeout(() => { relistTimer = null; relist().catch(() => {}); }, 200);
}

// ---- the event stream ----

function apply(ev) {
  const s = sessions.get(ev.session);
  if (!s) { relistSoon(); return; }
  switch (ev.event) {
    case "state":
      s.state = ev.to; s.since = ev.ts;
      s.pid = (ev.to === "running" || ev.to === "stopping") ? ev.pid : null;
      if (ev.to !== "running") { s.cpu_percent = null; }
      break;
    case "sample":
      s.cpu_percent = ev.cpu_percent; s.rss_bytes = ev.rss_bytes; s.processes = ev.processes;
      break;
    case "health":
      s.health_summary = ev.summary;
      break;
    case "exit":
      s.state = "finished"; s.pid = null; s.cpu_percent = null; s.restarts = ev.restarts; s.since = ev.ts;
      s.last_exit = { reason: ev.reason, code: ev.code, signal: ev.signal, detail: ev.detail };
      break;
  }
  if (current === ev.session) onSessionEvent(ev, s);
}

let pending = false;
function connect() {
  // After the first list's newest event, so nothing between the two is missed (a browser
  // reconnecting sends Last-Event-ID, which the daemon prefers).
  const source = new EventSource(listSeq === null ? "/v1/events/stream" : `/v1/events/stream?since=${encodeURIComponent(listSeq)}`);
  source.onopen = () => { $("#stream-state").textContent = "live"; };
  source.onerror = () => { $("#stream-state").textContent = "reconnecting"; };
  source.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    // Missed events, or numbers started afresh (the daemon restarted): list again.
    if (ev.lagged || ev.reset != null) { relistSoon(); return; }
    apply(ev);
    // One redraw per frame, however many events came.
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; if (!current) renderTable(); }); }
  };
}

// ---- the session page ----

function drawChart() {
  const c = $("#chart");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const pts = chart.points.slice();
  // The stream leaves out samples that repeat the last one: a running session still shows
  // its last values now.
  const s = sessions.get(current);
  if (pts.length && s && s.state === "running") {
    const l = pts[pts.length - 1];
    pts.push({ t: Date.now() / 1000, cpu_percent: l.cpu_percent, rss_bytes: l.rss_bytes });
  }
  if (pts.length === 0) { g.fillStyle = "#6b7280"; g.fillText("no samples yet", 10, 20); return; }
  const t1 = Date.now() / 1000, t0 = t1 - 900;
  const x = (t) => ((t - t0) / 900) * (c.width - 40) + 30;
  const maxCpu = Math.max(100, ...pts.map((p) => p.cpu_percent));
  const maxRss = Math.max(1, ...pts.map((p) => p.rss_bytes));
  g.strokeStyle = "#e5e7eb"; g.beginPath(); g.moveTo(30, c.height - 20); g.lineTo(c.width - 10, c.height - 20); g.stroke();
  const line = (color, y) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    pts.forEach((p, i) => { const px = x(p.t), py = y(p); if (i === 0) g.moveTo(px, py); else g.lineTo(px, py); });
    g.stroke();
    // A dot per point, so a few minutes of data are visible on a 15-minute axis.
    g.fillStyle = color;
    for (const p of pts) { g.beginPath(); g.arc(x(p.t), y(p), 2.5, 0, 2 * Math.PI); g.fill(); }
  };
  line("#15803d", (p) => c.height - 20 - (p.cpu_percent / maxCpu) * (c.height - 40));
  line("#7c3aed", (p) => c.height - 20 - (p.rss_bytes / maxRss) * (c.height - 40));
  g.fillStyle = "#6b7280"; g.fillText(`${maxCpu.toFixed(0)} %`, 0, 12); g.fillText("-15 min", 30, c.height - 5); g.fillText("now", c.width - 30, c.height - 5);
  const last = pts[pts.length - 1];
  $("#chart-now").textContent = `now ${last.cpu_percent.toFixed(1)} %, ${bytes(last.rss_bytes)} (peak ${bytes(maxRss)})`;
}

function showSessionState(s) {
  $("#session-state").textContent = s.state;
  $("#session-state").className = `state-${s.state}`;
  $("#session-pid").textContent = s.pid == null ? "" : `pid ${s.pid}`;
  $("#session-health").textContent = s.health_summary || "-";
  const e = s.last_exit;
  $("#session-exit").textContent = e ? `${e.reason}${e.code != null ? ` (code ${e.code})` : ""}${e.signal != null ? ` (signal ${e.signal})` : ""}: ${e.detail}` : "-";
}

function showExits(exits) {
  const list = $("#session-exits");
  list.textContent = "";
  for (const r of exits) {
    const e = r.exit;
    const how = e.code != null ? ` (code ${e.code})` : e.signal != null ? ` (signal ${e.signal})` : "";
    const li = document.createElement("li");
    li.textContent = `${new Date(r.ended_at * 1000).toLocaleString()}  ${e.reason}${how}: ${e.detail}`;
    list.appendChild(li);
  }
  if (exits.length === 0) list.appendChild(Object.assign(document.createElement("li"), { textContent: "none kept" }));
}

async function refreshExits(name) {
  const history = await api("GET", `/v1/sessions/${encodeURIComponent(name)}/history`);
  if (current === name) showExits(history.exits || []);
}

function addState(t, from, to) {
  const li = document.createElement("li");
  li.textContent = `${new Date(t * 1000).toLocaleTimeString()}  ${from} \u2192 ${to}`;
  $("#session-states").appendChild(li);
}

function onSessionEvent(ev, s) {
  showSessionState(s);
  if (ev.event === "sample") {
    // After repeats left out, the last values held until a second before this one.
    const l = chart.points[chart.points.length - 1];
    if (l && ev.ts - l.t > 2) chart.points.push({ t: ev.ts - 1, cpu_percent: l.cpu_percent, rss_bytes: l.rss_bytes });
    chart.points.push({ t: ev.ts, cpu_percent: ev.cpu_percent, rss_bytes: ev.rss_bytes });
    const cut = Date.now() / 1000 - 900;
    while (chart.points.length && chart.points[0].t < cut) chart.points.shift();
    drawChart();
  } else if (ev.event === "state") {
    addState(ev.ts, ev.from, ev.to);
  } else if (ev.event === "exit") {
    // The registry has the report a moment after the event.
    setTimeout(() => refreshExits(ev.session).catch(() => {}), 300);
  }
}

async function followLog(name) {
  if (logAbort) logAbort.abort();
  logAbort = new AbortController();
  const pre = $("#session-log");
  pre.textContent = "";
  try {
    const r = await fetch(`/v1/sessions/${encodeURIComponent(name)}/logs?follow=true`, { signal: logAbort.signal, credentials: "same-origin" });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pre.textContent += dec.decode(value, { stream: true });
      const lines = pre.textContent.split("\n");
      if (lines.length > 500) pre.textContent = lines.slice(-500).join("\n");
      pre.scrollTop = pre.scrollHeight;
    }
  } catch (_) { /* left the page */ }
}

async function openSession(name) {
  current = name;
  $("#fleet-view").hidden = true;
  $("#session-view").hidden = false;
  $("#session-name").textContent = name;
  $("#action-result").textContent = "";
  $("#session-states").textContent = "";
  const [detail, history] = await Promise.all([
    api("GET", `/v1/sessions/${encodeURIComponent(name)}`),
    api("GET", `/v1/sessions/${encodeURIComponent(name)}/history`),
  ]);
  const s = sessions.get(name) || detail;
  s.last_exit = detail.last_exit;
  showSessionState(s);
  $("#session-program code").textContent = detail.program;
  const limits = $("#session-limits tbody");
  limits.textContent = "";
  for (const l of detail.limits) {
    const tr = document.createElement("tr");
    tr.append(cell(l.limit), cell(l.mechanism));
    limits.appendChild(tr);
  }
  if (detail.limits.length === 0) limits.appendChild(Object.assign(document.createElement("tr"), { textContent: "none" }));
  for (const st of history.states) addState(st.t, st.from, st.to);
  showExits(history.exits || []);
  chart.points = history.points.map((p) => ({ t: p.t, cpu_percent: p.cpu_percent, rss_bytes: p.rss_bytes }));
  drawChart();
  followLog(name);
}

function closeSession() {
  current = null;
  if (logAbort) { logAbort.abort(); logAbort = null; }
  $("#session-view").hidden = true;
  $("#fleet-view").hidden = false;
  renderTable();
}

async function act(verb) {
  if (!current) return;
  const name = current;
  $("#action-result").textContent = `asking for ${verb} ...`;
  try {
    await api("POST", `/v1/sessions/${encodeURIComponent(name)}/${verb}`);
    $("#action-result").textContent = `${verb} asked`;
  } catch (e) {
    $("#action-result").textContent = `${verb} failed: ${e.message}`;
  }
}

// ---- starting a session ----

async function startSession(ev) {
  ev.preventDefault();
  const form = ev.target;
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  const data = new FormData(form);
  const def = { name: data.get("name").trim(), command: data.get("command").trim().split(/\s+/).filter(Boolean) };
  if (data.get("memory").trim()) def.memory = data.get("memory").trim();
  if (data.get("restart")) def.restart = data.get("restart");
  try {
    await api("POST", "/v1/sessions", def);
    form.reset();
    relistSoon();
  } catch (e) {
    const slot = form.querySelector(`.field-error[data-field="${CSS.escape(e.field || "(body)")}"]`) || form.querySelector('.field-error[data-field="(body)"]');
    slot.textContent = e.message;
  }
}

// ---- wiring ----

function route() {
  const m = location.hash.match(/^#\/s\/(.+)$/);
  if (m) openSession(decodeURIComponent(m[1])).catch((e) => { $("#action-result").textContent = e.message; });
  else closeSession();
}

$("#filter").addEventListener("input", () => { page = 0; renderTable(); });
$("#prev").addEventListener("click", () => { page = Math.max(0, page - 1); renderTable(); });
$("#next").addEventListener("click", () => { page += 1; renderTable(); });
for (const th of document.querySelectorAll("th[data-sort]")) th.addEventListener("click", () => { sortKey = th.dataset.sort; renderTable(); });
$("#stop").addEventListener("click", () => act("stop"));
$("#restart").addEventListener("click", () => act("restart"));
$("#start-form").addEventListener("submit", startSession);
window.addEventListener("hashchange", route);
setInterval(() => { if (!current) renderTable(); else drawChart(); }, 1000);

relist().then(() => { connect(); route(); });
