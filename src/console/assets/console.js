/*
 * grok2api operators' console: one plain script, no build step, embedded in the binary.
 * API contract: the admin JSON API (session cookie + X-CSRF-Token on every non-GET).
 *
 * Why the DOM is built with createElement/textContent only: token notes, key names and task
 * errors are user text, and the page runs under a strict CSP (no inline script or style).
 *
 * Stable hooks used by tests/browser/console.py (keep them when restyling):
 *   login:     #login-view #login-form #login-key #login-submit
 *   chrome:    #nav #nav-{overview,tokens,keys,usage,tasks} #logout-btn #banner-persistent
 *              #alerts (children .alert[data-testid=alert]) #app-view #view-{overview,tokens,keys,usage,tasks}
 *   overview:  #ov-rps #ov-error-rate #ov-queue #ov-requests #ov-rate-limited #ov-uptime
 *              #ov-tasks-{pending,processing,success,failed} #ov-tokens-{active,cooling,expired,flagged,disabled}
 *              #ov-replicas-card #ov-replicas-body > tr[data-testid=replica-row][data-replica=ID] (several replicas)
 *   tokens:    #tokens-body > tr[data-testid=token-row][data-token-id=ID]
 *                cells td[data-col=token|id|status|plan|source|note|proxy|q-image|q-imageEdit|q-video|q-video720p|q-imagePro|
 *                             in-flight|fails|last-error|cooldown|checked]
 *                (quota cells hold span[data-testid=quota-remaining]; status holds a .badge, and with several
 *                replicas div[data-testid=token-elsewhere] when another replica sees the token otherwise)
 *                row controls [data-action=select|toggle|check|edit|delete]
 *              #tokens-select-all #bulk-{enable,disable,refresh,delete} #tokens-refresh-all #tokens-reload
 *              #export-txt #export-json #tokens-unavailable
 *              #tokens-search #tokens-prev #tokens-next #tokens-page  th[data-sort=FIELD][aria-sort]
 *              #token-edit-form #token-edit-note #token-edit-proxy #token-edit-save #token-edit-cancel
 *              #import-text #import-file #import-submit #import-report #import-format #import-added
 *              #import-duplicates #import-rejected
 *              #import-report-body > tr[data-testid=import-line][data-result=added|duplicate|rejected]
 *                cells td[data-col=line|result|token|reason]
 *   keys:      #keys-body > tr[data-testid=key-row][data-key-id=ID][data-key-name=NAME]
 *                cells td[data-col=name|prefix|status|source|rps|concurrency|models|expires|last-used|created]
 *                row controls [data-action=rotate|revoke] (absent for config keys)
 *              #key-create-form #key-name #key-expiry #key-rps #key-concurrency
 *              #key-models input[name=key-model][value=MODEL] #key-create-submit
 *              #key-secret-box #key-secret-name #key-secret #key-secret-copy #key-secret-dismiss
 *   usage:     #usage-filter-form #usage-key #usage-from #usage-to #usage-apply #usage-csv
 *              #usage-body > tr[data-testid=usage-row][data-key-id=ID]
 *                cells td[data-col=day|name|requests|images|video-seconds|errors|rate-limited]
 *   tasks:     #tasks-filter-form #tasks-key #tasks-kind #tasks-status #tasks-since #tasks-until #tasks-apply
 *              #tasks-body > tr[data-testid=task-row][data-task-id=ID] (click opens the detail) #tasks-more
 *              #task-detail #task-detail-id #task-detail-fields (dd[data-field=status|error-code|...])
 *              #task-cancel #task-redeliver #task-detail-close #task-result #task-callback-history
 */
"use strict";

const VIEWS = ["overview", "tokens", "keys", "usage", "tasks"];
const PRODUCTS = ["image", "imageEdit", "video", "video720p", "imagePro"];
const POLL_MS = 2000;
const TASK_PAGE = 50;

const state = {
  csrf: null,
  session: null,
  view: null,
  pollTimer: null,
  polling: false,
  lastSample: null,
  tokens: [],
  // The page of the pool shown: the server searches, sorts and pages (a pool can hold 10,000).
  tokenView: { offset: 0, limit: 50, sort: "", q: "" },
  tokenTotal: 0,
  selected: new Set(),
  editingToken: null,
  keys: [],
  tasks: [],
  tasksHasMore: false,
  detailId: null,
};

/* ---------- small DOM helpers ---------- */

const $ = (id) => document.getElementById(id);

// el("td", {text: "x", "data-col": "id", class: "muted"}, child...) — attributes, never HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.className = v;
    else if (k === "checked" || k === "disabled" || k === "hidden") node[k] = Boolean(v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function setText(id, v) { $(id).textContent = v === null || v === undefined ? "–" : String(v); }

function badge(status) {
  return el("span", { class: `badge badge-${status}`, text: status });
}

function button(label, action, cls) {
  return el("button", { type: "button", class: `btn btn-small ${cls || ""}`, "data-action": action, text: label });
}

/* ---------- formatting ---------- */

const pad = (n) => String(n).padStart(2, "0");

function fmtTime(unix) {
  if (unix === null || unix === undefined) return "–";
  const d = new Date(unix * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fmtDuration(secs) {
  if (secs === null || secs === undefined) return "–";
  secs = Math.max(0, Math.round(secs));
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  return `${Math.floor(secs / 86400)}d ${Math.floor((secs % 86400) / 3600)}h`;
}

const nowSecs = () => Date.now() / 1000;
const dash = (v) => (v === null || v === undefined || v === "" ? "–" : String(v));

/* ---------- alerts ---------- */

// Identical messages are not stacked, so a failing 2 s poll shows one alert, not a column of them.
function showAlert(message, kind = "error") {
  const box = $("alerts");
  for (const a of box.children) if (a.dataset.message === message) return;
  const close = el("button", { type: "button", class: "alert-close", "aria-label": "Dismiss", text: "✕" });
  const node = el("div", { class: `alert alert-${kind}`, "data-testid": "alert", "data-message": message },
    el("span", { text: message }), close);
  close.addEventListener("click", () => node.remove());
  box.append(node);
  if (kind === "info") setTimeout(() => node.remove(), 4000);
}

function showError(err) {
  if (err && err.silent) return; // a 401 already sent the user to the login form
  showAlert(err && err.message ? err.message : String(err), "error");
}

const clearAlerts = () => $("alerts").replaceChildren();

/* ---------- API ---------- */

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// opts.raw: return the Response (downloads); opts.anon: a 401 is an answer, not a lost session.
async function api(method, path, body, opts = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", `Network error: ${e.message}`);
  }
  if (!resp.ok) {
    let code = "http_" + resp.status;
    let message = `${method} ${path}: HTTP ${resp.status}`;
    try {
      const j = await resp.json();
      if (j && j.error) {
        code = j.error.code || code;
        if (j.error.message) message = j.error.message;
      }
    } catch (_) { /* not JSON: keep the status line */ }
    const err = new ApiError(resp.status, code, message);
    if (resp.status === 401 && !opts.anon) {
      sessionLost();
      err.silent = true;
    }
    throw err;
  }
  if (opts.raw) return resp;
  if (resp.status === 204) return null;
  return resp.json();
}

// Wraps a UI action: button disabled while it runs (no double submits), errors always shown.
async function act(btn, fn) {
  if (btn) btn.disabled = true;
  try {
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
};

/* ---------- session ---------- */

function showLogin() {
  stopPolling();
  state.csrf = null;
  state.session = null;
  $("app-view").hidden = true;
  $("nav").hidden = true;
  $("logout-btn").hidden = true;
  $("banner-persistent").hidden = true;
  $("session-info").textContent = "";
  $("login-view").hidden = false;
  $("login-key").value = "";
  $("login-key").focus();
}

function sessionLost() {
  if (!$("login-view").hidden) return;
  showLogin();
  showAlert("Your session has ended. Sign in again.", "error");
}

async function loadSession() {
  const s = await api("GET", "/admin/session", undefined, { anon: true });
  state.session = s;
  state.csrf = s.csrf_token;
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("nav").hidden = false;
  $("logout-btn").hidden = false;
  $("banner-persistent").hidden = s.persistent !== false;
  $("session-info").textContent = `v${s.version} · ${s.upstream}`;
  renderModelChoices(s.models || []);
  route();
}

async function boot() {
  try {
    await loadSession();
  } catch (e) {
    if (e.status !== 401) showError(e);
    showLogin();
  }
}

async function onLogin(ev) {
  ev.preventDefault();
  await act($("login-submit"), async () => {
    const key = $("login-key").value;
    let r;
    try {
      r = await api("POST", "/admin/login", { key }, { anon: true });
    } catch (e) {
      if (e.status === 401 || e.status === 429) e.message = `Sign-in failed: ${e.message}`;
      throw e;
    }
    $("login-key").value = "";
    state.csrf = r.csrf_token;
    clearAlerts();
    await loadSession();
  });
}

async function onLogout() {
  await act($("logout-btn"), async () => {
    await api("POST", "/admin/logout");
    showLogin();
  });
}

/* ---------- routing ---------- */

function currentView() {
  const h = location.hash.replace(/^#/, "");
  return VIEWS.includes(h) ? h : "overview";
}

function route() {
  if (!state.session) return;
  const view = currentView();
  for (const a of [...$("alerts").querySelectorAll(".alert-info")]) a.remove(); // errors stay until dismissed
  state.view = view;
  for (const v of VIEWS) {
    $(`view-${v}`).hidden = v !== view;
    $(`nav-${v}`).classList.toggle("is-active", v === view);
    if (v === view) $(`nav-${v}`).setAttribute("aria-current", "page");
    else $(`nav-${v}`).removeAttribute("aria-current");
  }
  if (view === "overview") startPolling(); else stopPolling();
  const loaders = { overview: loadOverview, tokens: loadTokens, keys: loadKeys, usage: enterUsage, tasks: enterTasks };
  loaders[view]().catch(showError);
}

/* ---------- overview ---------- */

function startPolling() {
  stopPolling();
  state.lastSample = null;
  state.pollTimer = setInterval(() => {
    if (document.hidden || state.polling) return; // hidden tab: no load; slow answer: no pile-up
    loadOverview().catch(showError);
  }, POLL_MS);
}

function stopPolling() {
  if (state.pollTimer) clearInterval(state.pollTimer);
  state.pollTimer = null;
}

async function loadOverview() {
  state.polling = true;
  try {
    const o = await api("GET", "/admin/overview");
    renderOverview(o, state.lastSample);
    state.lastSample = o;
  } finally {
    state.polling = false;
  }
}

// Rates come from two samples because the API only has counters since start. With several replicas
// the figures are the cluster's (every live replica's counters summed), and each replica has a row.
function renderOverview(o, prev) {
  const c = o.cluster || o;
  const sum = (x) => x.requests_total;
  const errs = (x) => x.errors_total + x.client_errors_total;
  setText("ov-queue", c.queue_depth);
  setText("ov-requests", c.requests_total);
  setText("ov-rate-limited", c.rate_limited_total);
  setText("ov-uptime", fmtDuration(o.uptime_secs));
  for (const k of ["pending", "processing", "success", "failed"]) setText(`ov-tasks-${k}`, c.tasks[k] ?? 0);
  for (const k of ["active", "cooling", "expired", "flagged", "disabled"]) setText(`ov-tokens-${k}`, o.tokens[k] ?? 0);
  const pc = prev && (prev.cluster || prev);
  // A replica that left takes its counters with it: a drop is no rate.
  if (pc && o.at > prev.at && sum(c) >= sum(pc)) {
    const dReq = sum(c) - sum(pc);
    const dErr = Math.max(0, errs(c) - errs(pc));
    setText("ov-rps", (dReq / ((o.at - prev.at) / 1000)).toFixed(2));
    setText("ov-error-rate", dReq > 0 ? `${((100 * dErr) / dReq).toFixed(1)}%` : "–");
  }
  renderReplicas(o);
  $("ov-updated").textContent = `Last sample ${new Date(o.at).toLocaleTimeString()}.`;
}

function renderReplicas(o) {
  const list = o.replicas || [];
  $("ov-replicas-card").hidden = list.length === 0;
  const rows = list.map((r) => {
    const here = r.replica === o.replica ? " (this one)" : "";
    const states = Object.entries(r.token_states || {});
    const notActive = states.length ? states.slice(0, 5).map(([id, st]) => `${id} ${st}`).join(", ") + (states.length > 5 ? ` … +${states.length - 5}` : "") : "–";
    return el("tr", { "data-testid": "replica-row", "data-replica": r.replica },
      el("td", { "data-col": "replica", class: "mono", text: r.replica + here }),
      el("td", { "data-col": "uptime", text: fmtDuration(r.uptime_secs) }),
      el("td", { "data-col": "requests", text: r.requests_total }),
      el("td", { "data-col": "errors", text: r.errors_total }),
      el("td", { "data-col": "rate-limited", text: r.rate_limited_total }),
      el("td", { "data-col": "queue", text: r.queue_depth }),
      el("td", { "data-col": "running", text: r.tasks.processing ?? 0 }),
      el("td", { "data-col": "in-flight", text: r.in_flight }),
      el("td", { "data-col": "tokens-active", text: r.tokens.active ?? 0 }),
      el("td", { "data-col": "token-states", class: "small", text: notActive }),
      el("td", { "data-col": "seen", text: `${Math.max(0, Math.round((o.at - r.at) / 1000))} s ago` }));
  });
  $("ov-replicas-body").replaceChildren(...rows);
}

/* ---------- tokens ---------- */

async function loadTokens() {
  try {
    const v = state.tokenView;
    const q = new URLSearchParams({ offset: String(v.offset), limit: String(v.limit) });
    if (v.sort) q.set("sort", v.sort);
    if (v.q) q.set("q", v.q);
    const r = await api("GET", `/admin/tokens?${q}`);
    // A page past the end (its last rows deleted): show the last page there is.
    if (!r.data.length && r.total > 0 && v.offset > 0) {
      v.offset = Math.floor((r.total - 1) / v.limit) * v.limit;
      return loadTokens();
    }
    state.tokenTotal = r.total;
    setTokens(r.data);
  } catch (e) {
    if (e.status === 404) {
      $("tokens-unavailable").hidden = false;
      $("tokens-panel").hidden = true;
      return;
    }
    throw e;
  }
}

function setTokens(list) {
  $("tokens-unavailable").hidden = true;
  $("tokens-panel").hidden = false;
  state.tokens = list;
  const ids = new Set(list.map((t) => t.id));
  for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
  renderTokens();
}

function quotaCell(p) {
  const td = el("td", { class: "quota" });
  if (!p) {
    td.textContent = "–";
    return td;
  }
  td.append(el("span", { "data-testid": "quota-remaining", class: "q-num", text: dash(p.remaining) }));
  let wait = null;
  if (p.refills_at) wait = p.refills_at - nowSecs();
  else if (p.cooldown_secs) wait = p.cooldown_secs;
  if (wait !== null && wait > 0) td.append(el("span", { class: "q-refill", text: `refills in ${fmtDuration(wait)}` }));
  return td;
}

// Upstream errors can be paragraphs: two lines here, a click shows the rest.
function lastError(t) {
  if (!t.last_error) return "–";
  const when = t.last_error_at ? ` (${fmtTime(t.last_error_at)})` : "";
  return el("span", { class: "clamp", "data-action": "expand", title: `${t.last_error}${when}`, text: t.last_error });
}

// With several replicas: the replicas that see this token in another state than this one does.
function elsewhere(t) {
  const seen = Object.entries(t.elsewhere || {});
  if (!seen.length) return null;
  return el("div", { class: "small muted", "data-testid": "token-elsewhere", text: seen.map(([r, st]) => `${r}: ${st}`).join(", ") });
}

function tokenRow(t) {
  const readOnly = t.source === "config";
  const cb = el("input", { type: "checkbox", "data-action": "select", "aria-label": `Select ${t.id}`,
    checked: state.selected.has(t.id) });
  const actions = el("td", { class: "row-actions" });
  if (!readOnly) actions.append(button(t.enabled ? "Disable" : "Enable", "toggle"));
  actions.append(button("Check now", "check"));
  if (!readOnly) actions.append(button("Edit", "edit"), button("Delete", "delete", "btn-danger"));
  const tr = el("tr", { "data-testid": "token-row", "data-token-id": t.id },
    el("td", {}, cb),
    el("td", { "data-col": "token" }, el("code", { text: t.token })),
    el("td", { "data-col": "id" }, el("code", { text: t.id })),
    el("td", { "data-col": "status" }, badge(t.status), elsewhere(t)),
    el("td", { "data-col": "plan", text: dash(t.plan) }),
    el("td", { "data-col": "source", text: t.source }),
    el("td", { "data-col": "note", class: "wrap", text: dash(t.note) }),
    el("td", { "data-col": "proxy", class: "wrap", text: dash(t.proxy) }));
  for (const p of PRODUCTS) {
    const td = quotaCell(t.products ? t.products[p] : null);
    td.setAttribute("data-col", `q-${p}`);
    tr.append(td);
  }
  tr.append(
    el("td", { "data-col": "in-flight", text: t.in_flight_elsewhere ? `${t.in_flight} (+${t.in_flight_elsewhere} elsewhere)` : t.in_flight }),
    el("td", { "data-col": "fails", text: t.fail_count }),
    el("td", { "data-col": "last-error", class: "wrap" }, lastError(t)),
    el("td", { "data-col": "cooldown", text: t.cooldown_secs ? fmtDuration(t.cooldown_secs) : "–" }),
    el("td", { "data-col": "checked", text: fmtTime(t.checked_at) }),
    actions);
  return tr;
}

function renderTokens() {
  $("tokens-body").replaceChildren(...state.tokens.map(tokenRow));
  $("tokens-empty").hidden = state.tokens.length > 0 || !!state.tokenView.q;
  const v = state.tokenView;
  const n = state.tokenTotal;
  $("tokens-page").textContent = n
    ? `${v.offset + 1}–${v.offset + state.tokens.length} of ${n}${v.q ? " found" : ""}`
    : (v.q ? "nothing found" : "0 tokens");
  $("tokens-prev").disabled = v.offset === 0;
  $("tokens-next").disabled = v.offset + state.tokens.length >= n;
  const [desc, field] = v.sort.startsWith("-") ? [true, v.sort.slice(1)] : [false, v.sort];
  for (const th of document.querySelectorAll("#tokens-table th[data-sort]")) {
    if (th.dataset.sort === field) th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
  updateSelection();
}

// A header click sorts by its column, a second click the other way round.
function onTokenSort(ev) {
  const th = ev.target.closest("th[data-sort]");
  if (!th) return;
  const v = state.tokenView;
  const field = th.dataset.sort;
  v.sort = v.sort === field ? `-${field}` : field;
  v.offset = 0;
  return act(null, loadTokens);
}

function onTokenPage(delta) {
  const v = state.tokenView;
  v.offset = Math.max(0, v.offset + delta * v.limit);
  return act(null, loadTokens);
}

let searchTimer = null;
function onTokenSearch(ev) {
  clearTimeout(searchTimer);
  // Asks the server once typing pauses, not at every key.
  searchTimer = setTimeout(() => {
    state.tokenView.q = ev.target.value.trim();
    state.tokenView.offset = 0;
    act(null, loadTokens);
  }, 250);
}

function updateSelection() {
  const n = state.selected.size;
  $("tokens-selected-count").textContent = String(n);
  for (const id of ["bulk-enable", "bulk-disable", "bulk-refresh", "bulk-delete"]) $(id).disabled = n === 0;
  const all = $("tokens-select-all");
  all.checked = n > 0 && n === state.tokens.length;
  all.indeterminate = n > 0 && n < state.tokens.length;
}

// Replaces one token in place after a per-row action answered with its TokenInfo.
function replaceToken(info) {
  state.tokens = state.tokens.map((t) => (t.id === info.id ? info : t));
  renderTokens();
}

async function onTokenRowClick(ev) {
  const ctl = ev.target.closest("[data-action]");
  if (!ctl) return;
  const id = ctl.closest("tr").dataset.tokenId;
  const t = state.tokens.find((x) => x.id === id);
  if (!t) return;
  const path = `/admin/tokens/${encodeURIComponent(id)}`;
  switch (ctl.dataset.action) {
    case "select":
      if (ctl.checked) state.selected.add(id); else state.selected.delete(id);
      updateSelection();
      return;
    case "toggle":
      return act(ctl, async () => replaceToken(await api("PATCH", path, { enabled: !t.enabled })));
    case "check":
      return act(ctl, async () => replaceToken(await api("POST", `${path}/refresh`)));
    case "edit":
      return openTokenEdit(t);
    case "expand":
      ctl.classList.toggle("clamp");
      return;
    case "delete":
      if (!window.confirm(`Delete token ${id}? This cannot be undone.`)) return;
      return act(ctl, async () => { await api("DELETE", path); await loadTokens(); });
  }
}

function openTokenEdit(t) {
  state.editingToken = t.id;
  $("token-edit-id").textContent = t.id;
  $("token-edit-note").value = t.note || "";
  $("token-edit-proxy").value = t.proxy || "";
  $("token-edit-form").hidden = false;
  $("token-edit-note").focus();
}

async function onTokenEditSave(ev) {
  ev.preventDefault();
  const id = state.editingToken;
  const t = state.tokens.find((x) => x.id === id);
  if (!t) return;
  const body = {};
  const note = $("token-edit-note").value.trim();
  const proxy = $("token-edit-proxy").value.trim();
  if (note !== (t.note || "")) body.note = note || null;
  // Sending the masked value back would store "***" as the password, so only a changed proxy is sent.
  if (proxy !== (t.proxy || "")) body.proxy = proxy || null;
  await act($("token-edit-save"), async () => {
    if (Object.keys(body).length) replaceToken(await api("PATCH", `/admin/tokens/${encodeURIComponent(id)}`, body));
    closeTokenEdit();
  });
}

function closeTokenEdit() {
  state.editingToken = null;
  $("token-edit-form").hidden = true;
}

async function onBulk(action, btn) {
  const ids = [...state.selected];
  if (!ids.length) return;
  if (action === "delete" && !window.confirm(`Delete ${ids.length} token(s)? This cannot be undone.`)) return;
  await act(btn, async () => {
    const r = await api("POST", "/admin/tokens/bulk", { action, ids });
    if (action === "delete") state.selected.clear();
    await loadTokens();
    const failed = r.results.filter((x) => !x.ok);
    if (failed.length) {
      showAlert(`${failed.length} of ${ids.length} failed: ` + failed.map((f) => `${f.id}: ${f.error}`).join("; "));
    } else {
      const done = { enable: "Enabled", disable: "Disabled", refresh: "Checked", delete: "Deleted" }[action];
      showAlert(`${done} ${ids.length} token(s).`, "info");
    }
  });
}

async function onImport() {
  const fileInput = $("import-file");
  const file = fileInput.files && fileInput.files[0];
  await act($("import-submit"), async () => {
    // Read at click time (not on change) so Import never races a file still being read.
    const content = file ? await file.text() : $("import-text").value;
    if (!content.trim()) throw new Error("Nothing to import: paste tokens or choose a file.");
    const body = { content };
    if (file) body.filename = file.name;
    const r = await api("POST", "/admin/tokens/import", body);
    renderImportReport(r);
    fileInput.value = "";
    $("import-text").value = "";
    await loadTokens();
  });
}

function renderImportReport(r) {
  $("import-report").hidden = false;
  $("import-format").textContent = r.format;
  $("import-added").textContent = String(r.added);
  $("import-duplicates").textContent = String(r.duplicates);
  $("import-rejected").textContent = String(r.rejected);
  $("import-report-body").replaceChildren(...r.lines.map((l) =>
    el("tr", { "data-testid": "import-line", "data-result": l.result },
      el("td", { "data-col": "line", text: l.line }),
      el("td", { "data-col": "result" }, badge(l.result)),
      el("td", { "data-col": "token" }, el("code", { text: dash(l.token) })),
      el("td", { "data-col": "reason", class: "wrap", text: dash(l.reason) }))));
}

function filenameFrom(resp, fallback) {
  const cd = resp.headers.get("Content-Disposition") || "";
  const m = /filename="?([^";]+)"?/i.exec(cd);
  return m ? m[1] : fallback;
}

// Export is a POST (so a link cannot trigger it), hence the blob + object URL dance to save it.
async function onExport(format, btn) {
  await act(btn, async () => {
    const resp = await api("POST", `/admin/tokens/export?format=${format}`, undefined, { raw: true });
    const blob = await resp.blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filenameFrom(resp, `tokens.${format}`), class: "hidden-link" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
}

/* ---------- keys ---------- */

async function loadKeys() {
  const r = await api("GET", "/admin/keys");
  state.keys = r.data;
  renderKeys();
  fillKeySelects();
}

function keyRow(k) {
  const actions = el("td", { class: "row-actions" });
  if (k.source !== "config" && k.status !== "revoked") {
    actions.append(button("Rotate", "rotate"), button("Revoke", "revoke", "btn-danger"));
  } else if (k.source === "config") {
    actions.append(el("span", { class: "muted small", text: "config (read-only)" }));
  }
  return el("tr", { "data-testid": "key-row", "data-key-id": k.id, "data-key-name": k.name },
    el("td", { "data-col": "name", class: "wrap", text: k.name }),
    el("td", { "data-col": "prefix" }, el("code", { text: k.prefix })),
    el("td", { "data-col": "status" }, badge(k.status)),
    el("td", { "data-col": "source", text: k.source }),
    el("td", { "data-col": "rps", text: dash(k.requests_per_second) }),
    el("td", { "data-col": "concurrency", text: dash(k.max_concurrent_tasks) }),
    el("td", { "data-col": "models", class: "wrap", text: k.models && k.models.length ? k.models.join(", ") : "all" }),
    el("td", { "data-col": "expires", text: fmtTime(k.expires_at) }),
    el("td", { "data-col": "last-used", text: fmtTime(k.last_used_at) }),
    el("td", { "data-col": "created", text: fmtTime(k.created_at) }),
    actions);
}

function renderKeys() {
  $("keys-body").replaceChildren(...state.keys.map(keyRow));
}

function renderModelChoices(models) {
  const box = $("key-models");
  box.replaceChildren(box.querySelector("legend") || el("legend", { text: "Models (none checked = all)" }));
  for (const m of models) {
    box.append(el("label", { class: "check" },
      el("input", { type: "checkbox", name: "key-model", value: m }), el("span", { text: m })));
  }
}

// The key selects in Usage and Tasks list every key (revoked too: their history still matters).
function fillKeySelects() {
  for (const id of ["usage-key", "tasks-key"]) {
    const sel = $(id);
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "", text: "All keys" }),
      ...state.keys.map((k) => el("option", { value: k.id, text: `${k.name} (${k.id})` })));
    sel.value = state.keys.some((k) => k.id === keep) ? keep : "";
  }
}

// The date input's day is local; the key lasts to the end of that day.
function dateToEndOfDay(value) {
  const [y, m, d] = value.split("-").map(Number);
  return Math.floor(new Date(y, m - 1, d + 1).getTime() / 1000) - 1;
}

async function onCreateKey(ev) {
  ev.preventDefault();
  const body = { name: $("key-name").value.trim() };
  if ($("key-expiry").value) body.expires_at = dateToEndOfDay($("key-expiry").value);
  if ($("key-rps").value) body.requests_per_second = Number($("key-rps").value);
  if ($("key-concurrency").value) body.max_concurrent_tasks = Number($("key-concurrency").value);
  const models = [...document.querySelectorAll("input[name=key-model]:checked")].map((c) => c.value);
  if (models.length) body.models = models;
  await act($("key-create-submit"), async () => {
    const r = await api("POST", "/admin/keys", body);
    showSecret(r);
    $("key-create-form").reset();
    await loadKeys();
  });
}

function showSecret(r) {
  $("key-secret-name").textContent = r.name;
  $("key-secret").textContent = r.key;
  $("key-secret-box").hidden = false;
  $("key-secret-box").scrollIntoView({ block: "nearest" });
}

function dismissSecret() {
  $("key-secret").textContent = "";
  $("key-secret-box").hidden = true;
}

async function copySecret() {
  const text = $("key-secret").textContent;
  try {
    await navigator.clipboard.writeText(text);
    showAlert("Key copied to the clipboard.", "info");
  } catch (_) {
    // No clipboard permission: select the text so Ctrl+C works.
    const range = document.createRange();
    range.selectNodeContents($("key-secret"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    showAlert("Clipboard not available: the key is selected, press Ctrl+C.", "info");
  }
}

async function onKeyRowClick(ev) {
  const ctl = ev.target.closest("[data-action]");
  if (!ctl) return;
  const id = ctl.closest("tr").dataset.keyId;
  const k = state.keys.find((x) => x.id === id);
  if (!k) return;
  const path = `/admin/keys/${encodeURIComponent(id)}`;
  if (ctl.dataset.action === "revoke") {
    if (!window.confirm(`Revoke key "${k.name}"? Clients using it get 401 from now on.`)) return;
    await act(ctl, async () => { await api("DELETE", path); await loadKeys(); });
  } else if (ctl.dataset.action === "rotate") {
    if (!window.confirm(`Rotate key "${k.name}"? The current key stops working immediately.`)) return;
    await act(ctl, async () => { showSecret(await api("POST", `${path}/rotate`)); await loadKeys(); });
  }
}

/* ---------- usage ---------- */

function usageQuery() {
  return qs({ key: $("usage-key").value, from: $("usage-from").value, to: $("usage-to").value });
}

async function enterUsage() {
  await loadKeys().catch(showError); // names for the key filter; usage itself still loads if this fails
  await loadUsage();
}

async function loadUsage() {
  const q = usageQuery();
  $("usage-csv").setAttribute("href", `/admin/usage.csv${q}`);
  const r = await api("GET", `/admin/usage${q}`);
  $("usage-body").replaceChildren(...r.data.map((u) =>
    el("tr", { "data-testid": "usage-row", "data-key-id": u.key, "data-day": u.day },
      el("td", { "data-col": "day", text: u.day }),
      el("td", { "data-col": "name", class: "wrap", text: u.name || u.key, title: u.key }),
      el("td", { "data-col": "requests", class: "num", text: u.requests }),
      el("td", { "data-col": "images", class: "num", text: u.images }),
      el("td", { "data-col": "video-seconds", class: "num", text: u.video_seconds }),
      el("td", { "data-col": "errors", class: "num", text: u.errors }),
      el("td", { "data-col": "rate-limited", class: "num", text: u.rate_limited }))));
  $("usage-empty").hidden = r.data.length > 0;
}

/* ---------- tasks ---------- */

// datetime-local has no zone: it is the browser's local time, which is what the operator typed.
function localToUnix(value) {
  return value ? Math.floor(new Date(value).getTime() / 1000) : "";
}

function taskQuery(after) {
  return qs({
    key: $("tasks-key").value, kind: $("tasks-kind").value, status: $("tasks-status").value,
    since: localToUnix($("tasks-since").value), until: localToUnix($("tasks-until").value),
    limit: TASK_PAGE, after,
  });
}

async function enterTasks() {
  await loadKeys().catch(showError);
  await loadTasks(false);
}

async function loadTasks(more) {
  const after = more && state.tasks.length ? state.tasks[state.tasks.length - 1].id : "";
  const r = await api("GET", `/admin/tasks${taskQuery(after)}`);
  state.tasks = more ? state.tasks.concat(r.data) : r.data;
  state.tasksHasMore = Boolean(r.has_more);
  renderTasks();
}

function callbackSummary(cb) {
  if (!cb) return "–";
  if (cb.delivered) return "delivered";
  return cb.done ? `gave up (${cb.attempts})` : `${cb.attempts} attempt(s)`;
}

function taskRow(t) {
  return el("tr", { "data-testid": "task-row", "data-task-id": t.id, tabindex: "0",
    class: t.id === state.detailId ? "is-selected" : null },
    el("td", { "data-col": "created", text: fmtTime(t.created_at) }),
    el("td", { "data-col": "id", title: t.id }, el("code", { text: `${t.id.slice(0, 12)}…` })),
    el("td", { "data-col": "kind", text: t.kind }),
    el("td", { "data-col": "api", text: t.api }),
    el("td", { "data-col": "key", class: "wrap", text: t.key_name || t.key }),
    el("td", { "data-col": "status" }, badge(t.status)),
    el("td", { "data-col": "progress", text: `${t.progress}%` }),
    el("td", { "data-col": "error", class: "wrap", text: t.error ? t.error.code : "–" }),
    el("td", { "data-col": "callback", text: callbackSummary(t.callback) }));
}

function renderTasks() {
  $("tasks-body").replaceChildren(...state.tasks.map(taskRow));
  $("tasks-empty").hidden = state.tasks.length > 0;
  $("tasks-more").hidden = !state.tasksHasMore;
}

function onTaskRowActivate(ev) {
  if (ev.type === "keydown" && ev.key !== "Enter") return;
  const tr = ev.target.closest("tr[data-task-id]");
  if (tr) openTask(tr.dataset.taskId).catch(showError);
}

async function openTask(id) {
  const t = await api("GET", `/admin/tasks/${encodeURIComponent(id)}`);
  state.detailId = id;
  renderTaskDetail(t);
}

function field(dl, name, label, value) {
  dl.append(el("dt", { text: label }), el("dd", { "data-field": name, class: "wrap" },
    value instanceof Node ? value : document.createTextNode(dash(value))));
}

function renderTaskDetail(t) {
  $("task-detail").hidden = false;
  $("tasks-layout").classList.add("has-detail");
  $("task-detail-id").textContent = t.id;
  const dl = $("task-detail-fields");
  dl.replaceChildren();
  field(dl, "status", "Status", badge(t.status));
  field(dl, "kind", "Kind", t.kind);
  field(dl, "api", "API", t.api);
  field(dl, "key", "Key", t.key_name ? `${t.key_name} (${t.key})` : t.key);
  field(dl, "progress", "Progress", `${t.progress}%`);
  field(dl, "created", "Created", fmtTime(t.created_at));
  field(dl, "updated", "Updated", fmtTime(t.updated_at));
  field(dl, "error-code", "Error code", t.error ? t.error.code : null);
  field(dl, "error-message", "Error", t.error ? t.error.message : null);
  const cb = t.callback;
  field(dl, "callback-url", "Callback", cb ? cb.url : null);
  if (cb) {
    field(dl, "callback-state", "Delivery", `${callbackSummary(cb)}${cb.last_error ? ` — ${cb.last_error}` : ""}`);
  }
  $("task-result").textContent = t.result === undefined ? "–" : JSON.stringify(t.result, null, 2);
  const history = (cb && cb.history) || [];
  $("task-callback").hidden = !cb;
  $("task-callback-history").replaceChildren(...history.map((h) =>
    el("tr", {}, el("td", { text: fmtTime(h.at) }), el("td", {}, badge(h.ok ? "ok" : "failed")),
      el("td", { class: "wrap", text: dash(h.error) }))));
  const running = t.status === "pending" || t.status === "processing";
  $("task-cancel").hidden = !running;
  $("task-redeliver").hidden = running || !cb;
  for (const tr of $("tasks-body").children) tr.classList.toggle("is-selected", tr.dataset.taskId === t.id);
}

function closeTask() {
  state.detailId = null;
  $("task-detail").hidden = true;
  $("tasks-layout").classList.remove("has-detail");
  for (const tr of $("tasks-body").children) tr.classList.remove("is-selected");
}

// After cancel/redeliver: the answer updates the list row, then the detail is re-read for result/history.
async function taskAction(action, btn) {
  const id = state.detailId;
  if (!id) return;
  if (action === "cancel" && !window.confirm(`Cancel task ${id}? Its client sees it fail with "cancelled".`)) return;
  await act(btn, async () => {
    const t = await api("POST", `/admin/tasks/${encodeURIComponent(id)}/${action}`);
    state.tasks = state.tasks.map((x) => (x.id === t.id ? t : x));
    renderTasks();
    await openTask(id);
  });
}

/* ---------- wiring ---------- */

function wire() {
  $("login-form").addEventListener("submit", onLogin);
  $("logout-btn").addEventListener("click", onLogout);
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.view === "overview" && state.session) loadOverview().catch(showError);
  });

  $("tokens-body").addEventListener("click", onTokenRowClick);
  $("tokens-select-all").addEventListener("change", (ev) => {
    state.selected = ev.target.checked ? new Set(state.tokens.map((t) => t.id)) : new Set();
    renderTokens();
  });
  for (const a of ["enable", "disable", "refresh", "delete"]) {
    $(`bulk-${a}`).addEventListener("click", (ev) => onBulk(a, ev.currentTarget));
  }
  $("tokens-reload").addEventListener("click", (ev) => act(ev.currentTarget, loadTokens));
  $("tokens-refresh-all").addEventListener("click", (ev) =>
    act(ev.currentTarget, async () => { await api("POST", "/admin/tokens/refresh"); await loadTokens(); }));
  document.querySelector("#tokens-table thead").addEventListener("click", onTokenSort);
  $("tokens-prev").addEventListener("click", () => onTokenPage(-1));
  $("tokens-next").addEventListener("click", () => onTokenPage(1));
  $("tokens-search").addEventListener("input", onTokenSearch);
  $("token-edit-form").addEventListener("submit", onTokenEditSave);
  $("token-edit-cancel").addEventListener("click", closeTokenEdit);
  $("import-submit").addEventListener("click", onImport);
  $("export-txt").addEventListener("click", (ev) => onExport("txt", ev.currentTarget));
  $("export-json").addEventListener("click", (ev) => onExport("json", ev.currentTarget));

  $("keys-body").addEventListener("click", onKeyRowClick);
  $("keys-reload").addEventListener("click", (ev) => act(ev.currentTarget, loadKeys));
  $("key-create-form").addEventListener("submit", onCreateKey);
  $("key-secret-copy").addEventListener("click", copySecret);
  $("key-secret-dismiss").addEventListener("click", dismissSecret);

  $("usage-filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act($("usage-apply"), loadUsage);
  });

  $("tasks-filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act($("tasks-apply"), () => loadTasks(false));
  });
  $("tasks-more").addEventListener("click", (ev) => act(ev.currentTarget, () => loadTasks(true)));
  $("tasks-body").addEventListener("click", onTaskRowActivate);
  $("tasks-body").addEventListener("keydown", onTaskRowActivate);
  $("task-detail-close").addEventListener("click", closeTask);
  $("task-cancel").addEventListener("click", (ev) => taskAction("cancel", ev.currentTarget));
  $("task-redeliver").addEventListener("click", (ev) => taskAction("redeliver", ev.currentTarget));
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  boot();
});
