// The framefleet console: one EventSource per filter, a snapshot per message, rendered with
// plain DOM calls (textContent only, so nothing from a job can become markup).
"use strict";

const $ = (id) => document.getElementById(id);
const HEADERS = { "Content-Type": "application/json", "X-Framefleet-Console": "1" };
let source = null;
let latest = null;
const filters = { state: "", batch: "", tenant: "", page: 0 };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (value === true) node.setAttribute(key, "");
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function age(seconds) {
  if (seconds >= 86400) return `${Math.round(seconds / 86400)}d`;
  if (seconds >= 3600) return `${Math.round(seconds / 3600)}h`;
  if (seconds >= 60) return `${Math.round(seconds / 60)}m`;
  return `${Math.max(0, Math.round(seconds))}s`;
}

function shorten(name) {
  return name.length > 32 ? `${name.slice(0, 12)}…${name.slice(-12)}` : name;
}

function bar(done, total, finished, wide) {
  const pct = total ? Math.min(100, (100 * done) / total) : 0;
  const inner = el("span");
  inner.style.width = `${pct.toFixed(1)}%`;
  return el("span", { class: `bar${finished ? " done" : ""}${wide ? " wide" : ""}`, role: "progressbar",
    "aria-valuenow": String(done), "aria-valuemax": String(total) }, inner);
}

async function post(url, body) {
  const response = await fetch(url, { method: "POST", headers: HEADERS, body: JSON.stringify(body || {}) });
  if (!response.ok) alert(`${response.status}: ${await response.text()}`);
  return response;
}

function connect() {
  if (source) source.close();
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
  source = new EventSource(`/console/api/events?${params}`);
  source.onopen = () => $("live").classList.add("on");
  source.onerror = () => $("live").classList.remove("on");
  source.addEventListener("login", () => { source.close(); showLogin(true); });
  source.onmessage = (event) => { latest = JSON.parse(event.data); render(latest); };
}

function showLogin(show) {
  $("login").hidden = !show;
  for (const view of document.querySelectorAll(".view")) view.hidden = show || view.id !== currentView();
}

function currentView() {
  const name = location.hash.slice(1);
  return ["jobs", "batches", "agents"].includes(name) ? name : "jobs";
}

function showView() {
  const name = currentView();
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === name);
  if ($("login").hidden) for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== name;
}

function render(view) {
  showLogin(false);
  showView();
  $("me").textContent = view.me.name ? `${view.me.name} · ${view.me.role}` : "";
  $("tenant-filter").hidden = view.me.role !== "admin";
  $("counts").replaceChildren(...Object.entries(view.counts).map(([state, n]) =>
    el("span", { class: `pill ${state}` }, `${n} ${state === "leased" ? "running" : state}`)));
  renderJobs(view);
  renderBatches(view);
  renderAgents(view);
}

function renderJobs(view) {
  const canWrite = view.me.role !== "read";
  $("job-rows").replaceChildren(...view.jobs.map((job) => {
    const finished = ["succeeded", "failed", "cancelled"].includes(job.state);
    let detail = "";
    if (job.error_class) {
      detail = el("span", { class: "error", title: job.error_message }, el("b", {}, job.error_class), `: ${job.error_message}`);
    } else if (job.output_url) {
      detail = el("span", {}, el("a", { href: job.playable ? `/console/output/${job.id}` : job.output_url, class: "mono", title: job.output_url },
        shorten(job.output_url.split("/").pop())), job.cache_hit ? " · cache hit" : "");
    }
    const actions = el("td");
    if (job.playable) actions.append(el("button", { onclick: () => play(job.id), title: "play" }, "▶"));
    if (!finished && canWrite) actions.append(el("button", { class: "danger", onclick: () => post(`/console/api/jobs/${job.id}/cancel`) }, "Cancel"));
    return el("tr", { "data-job": job.id },
      el("td", { class: "mono", title: job.id }, job.id.slice(0, 12)),
      el("td", {}, el("span", { class: `pill ${job.state}` }, job.state === "leased" ? "running" : job.state)),
      el("td", {}, bar(job.frames_done, job.frames_total, job.state === "succeeded"),
        el("span", { class: "frames" }, `${job.frames_done}/${job.frames_total}`)),
      el("td", {}, job.tenant || "–"),
      el("td", { class: "mono" }, job.batch_id ? el("a", { href: "#jobs", onclick: () => setFilter("batch", job.batch_id) }, job.batch_id.slice(0, 8)) : "–"),
      el("td", {}, job.row_key || "–"),
      el("td", {}, job.agent || "–"),
      el("td", {}, String(job.attempt)),
      el("td", {}, age(job.age_seconds)),
      el("td", { class: "detail" }, detail),
      actions);
  }));
  $("no-jobs").hidden = view.jobs.length > 0;
  $("page").textContent = `page ${view.query.page + 1}`;
  $("prev").disabled = view.query.page === 0;
  $("next").disabled = !view.more;
}

function renderBatches(view) {
  const canWrite = view.me.role !== "read";
  $("batch-cards").replaceChildren(...view.batches.map((b) => {
    const ended = b.succeeded + b.failed + b.cancelled;
    const failures = b.digest ? b.digest.failures : [];
    const open = !b.finished && ended < b.total;
    return el("div", { class: "card", "data-batch": b.id },
      el("h3", {}, el("span", {}, b.name || b.id.slice(0, 8)),
        el("span", { class: `pill ${b.finished ? (b.failed ? "failed" : "succeeded") : "leased"}` }, b.finished ? "done" : "running")),
      el("div", { class: "sub mono" }, b.id, b.tenant ? ` · ${b.tenant}` : ""),
      bar(b.frames_done, b.frames_total, b.finished, true),
      el("div", { class: "nums" },
        el("span", { class: "rows" }, el("b", {}, `${ended}/${b.total}`), " rows"),
        el("span", {}, el("b", {}, String(b.succeeded)), " succeeded"),
        el("span", {}, el("b", {}, String(b.failed)), " failed"),
        el("span", {}, el("b", {}, String(b.running)), " running"),
        el("span", {}, el("b", {}, String(b.cache_hits)), " cached"),
        open && b.eta_seconds ? el("span", {}, "ETA ", el("b", {}, age(b.eta_seconds))) : null),
      b.digest ? el("div", { class: "digest" }, b.digest.summary) : null,
      failures.length ? el("ul", {}, ...failures.map((f) =>
        el("li", {}, `${f.count} × ${f.error_class}: ${f.example_message} (e.g. row ${f.example_row_key})`))) : null,
      b.manifest_url ? el("div", { class: "sub" }, "manifest: ", el("span", { class: "mono" }, b.manifest_url)) : null,
      el("div", { class: "actions" },
        el("button", { onclick: () => { location.hash = "#jobs"; setFilter("batch", b.id); } }, "Rows"),
        canWrite ? el("button", { disabled: !b.failed, onclick: () => post(`/console/api/batches/${b.id}/retry`) }, "Retry failed rows") : null,
        canWrite && open ? el("button", { class: "danger", onclick: () => post(`/console/api/batches/${b.id}/cancel`) }, "Cancel batch") : null));
  }));
  $("no-batches").hidden = view.batches.length > 0;
}

function renderAgents(view) {
  $("agent-rows").replaceChildren(...view.agents.map((a) =>
    el("tr", { "data-agent": a.id },
      el("td", { class: "mono" }, a.id),
      el("td", {}, String(a.slots)),
      el("td", {}, bar(a.leases, a.slots, false), el("span", { class: "frames" }, `${a.leases}/${a.slots}`)),
      el("td", {}, el("span", { class: `pill ${!a.connected || a.silent ? "failed" : a.draining ? "cancelled" : "succeeded"}` },
        !a.connected ? "disconnected" : a.draining ? "draining" : a.silent ? "silent" : "working")),
      el("td", { class: "mono" }, a.version || "–"),
      el("td", {}, `${a.last_seen_seconds.toFixed(1)} s ago`))));
  $("no-agents").hidden = view.agents.some((a) => a.connected);
}

function play(jobId) {
  const dialog = $("player");
  dialog.querySelector("video").src = `/console/output/${jobId}`;
  dialog.showModal();
}

function setFilter(key, value) {
  filters[key] = value;
  if (key !== "page") filters.page = 0;
  const input = $("filters").elements[key];
  if (input) input.value = value;
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", showView);
  for (const input of $("filters").elements) {
    if (input.name) input.addEventListener("change", () => setFilter(input.name, input.value.trim()));
  }
  $("clear").addEventListener("click", () => { for (const key of ["state", "batch", "tenant"]) $("filters").elements[key].value = ""; Object.assign(filters, { state: "", batch: "", tenant: "", page: 0 }); connect(); });
  $("prev").addEventListener("click", () => setFilter("page", Math.max(0, filters.page - 1)));
  $("next").addEventListener("click", () => setFilter("page", filters.page + 1));
  $("player").addEventListener("close", () => { $("player").querySelector("video").removeAttribute("src"); });
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/console/api/login", { method: "POST", headers: HEADERS, body: JSON.stringify({ token: $("token").value }) });
    if (response.ok) { $("login-error").textContent = ""; connect(); }
    else $("login-error").textContent = "That token is not known here.";
  });
  showView();
  connect();
});
