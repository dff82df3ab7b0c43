// The local console: executions, training jobs, endpoints and the model registry, read from
// the console server's JSON API (itself a client of the local cloud's AWS APIs).
"use strict";

const REFRESH_MS = 2000;
const main = document.getElementById("main");
const view = { route: null, timer: null, selected: null, graphKey: null, run: null };

const esc = (value) => String(value ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const cls = (status) => "s-" + String(status || "").toLowerCase().replace(/\s+/g, "");
const badge = (status) => `<span class="badge ${cls(status)}" data-status="${esc(status)}">${esc(status)}</span>`;
const clock = (iso) => (iso ? new Date(iso).toLocaleString() : "-");
const secs = (s) => (s == null ? "-" : s < 60 ? `${Number(s).toFixed(1)} s`
  : `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, "0")} s`);
const num = (v) => String(Number(Number(v).toFixed(4)));
const minute = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const pretty = (text) => {
  if (text == null) return "";
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return String(text); }
};

async function api(path) {
  const response = await fetch("/api/" + path, { cache: "no-store" });
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.message) || `HTTP ${response.status}`);
  return body;
}

function problem(message) {
  const box = document.getElementById("problem");
  box.hidden = !message;
  box.textContent = message || "";
}

function live(on) {
  document.getElementById("live").textContent = on ? "● live, refreshing every 2 s" : "";
}

// ------------------------------------------------------------------------------ routing
const routes = [
  [/^#?\/?$/, executionsPage, "executions"],
  [/^#\/execution\/(.+)$/, executionPage, "executions"],
  [/^#\/training$/, trainingListPage, "training"],
  [/^#\/training\/(.+)$/, trainingPage, "training"],
  [/^#\/tuning$/, tuningListPage, "tuning"],
  [/^#\/tuning\/(.+)$/, tuningPage, "tuning"],
  [/^#\/endpoints$/, endpointsPage, "endpoints"],
  [/^#\/endpoints\/(.+)$/, endpointPage, "endpoints"],
  [/^#\/registry$/, registryPage, "registry"],
];

async function render(first) {
  const hash = location.hash || "#/";
  for (const [pattern, page, section] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === section));
    try {
      const again = await page(first, ...match.slice(1).map(decodeURIComponent));
      problem(null);
      schedule(again);
    } catch (error) {
      problem(error.message);
      if (first) main.innerHTML = `<p class="error">${esc(error.message)}</p>`;
      schedule(true);
    }
    return;
  }
  main.innerHTML = `<p class="error">No page ${esc(hash)}</p>`;
}

function schedule(again) {
  clearTimeout(view.timer);
  live(again);
  if (again) view.timer = setTimeout(() => { if (!document.hidden) render(false); else schedule(true); }, REFRESH_MS);
}

window.addEventListener("hashchange", () => {
  view.selected = null; view.graphKey = null; view.run = null;
  main.innerHTML = '<p class="muted">Loading…</p>';
  render(true);
});

// ------------------------------------------------------------------------------ executions
async function executionsPage() {
  const rows = await api("executions");
  main.innerHTML = `<h1>Executions</h1>` + (rows.length ? `
    <table id="executions"><thead><tr><th>Name</th><th>Status</th><th>Started</th>
    <th>Duration</th><th>Started by</th><th>Error</th></tr></thead><tbody>
    ${rows.map((r) => `<tr class="clickable" data-arn="${esc(r.arn)}" data-name="${esc(r.name)}">
      <td><a href="#/execution/${encodeURIComponent(r.arn)}">${esc(r.name)}</a></td>
      <td>${badge(r.status)}</td><td>${clock(r.start)}</td><td class="num">${secs(r.seconds)}</td>
      <td>${esc(r.started_by)}</td><td class="error">${esc(r.error)}</td></tr>`).join("")}
    </tbody></table>` : `<p class="muted">No executions yet: upload a data set to start one.</p>`);
  main.querySelectorAll("tr.clickable").forEach((tr) => tr.addEventListener("click", () => {
    location.hash = "#/execution/" + encodeURIComponent(tr.dataset.arn);
  }));
  return true; // the list is live
}

async function executionPage(first, arn) {
  const x = await api("execution?arn=" + encodeURIComponent(arn));
  const key = x.graph ? JSON.stringify([x.graph.nodes.map((n) => n.status), x.graph.edges.map((e) => e.taken)]) : "none";
  if (first || key !== view.graphKey || !document.getElementById("graph")) {
    view.graphKey = key;
    main.innerHTML = `
      <h1>Execution ${esc(x.name)} ${badge(x.status)}</h1>
      <div class="card"><dl class="facts">
        <dt>Started</dt><dd>${clock(x.start)}</dd>
        <dt>Duration</dt><dd id="duration">${secs(x.seconds)}</dd>
        <dt>Started by</dt><dd>${esc(x.started_by)}</dd>
        ${x.error || x.cause ? `<dt>Failure</dt><dd class="error" id="execution-failure">${esc(x.error)}${x.cause ? ": " + esc(x.cause) : ""}</dd>` : ""}
        <dt>On AWS it would cost</dt><dd id="execution-cost"></dd>
      </dl></div>
      <div class="split">
        <div class="card">
          <div class="legend">${["succeeded", "failed", "caught", "running", "not-reached"].map((s) =>
            `<span><i style="border-color: var(--${s === "not-reached" ? "idle" : s}); background: var(--${s === "not-reached" ? "idle" : s}-bg)"></i>${s === "running" ? "in progress" : s.replace("-", " ")}</span>`).join("")}</div>
          <div class="graph" id="graph">${x.graph ? drawGraph(x.graph) : `<p class="error">${esc(x.graph_error)}</p>`}</div>
        </div>
        <div class="card" id="state-panel"><p class="muted">Click a state to see its input, output, error and cause.</p></div>
      </div>
      <h2>Event history (${x.events_total} events)</h2>
      <div id="events"></div>`;
    main.querySelectorAll("#graph .node").forEach((g) => g.addEventListener("click", () => {
      view.selected = g.dataset.state; view.run = null; showState(view.lastExecution);
    }));
    // bring what matters into view: the failed state, else the one in progress
    const focus = main.querySelector('#graph .node[data-status="failed"]') || main.querySelector('#graph .node[data-status="running"]');
    if (focus) focus.scrollIntoView({ block: "center", inline: "center" });
    window.scrollTo(0, 0);
  }
  view.lastExecution = x;
  document.getElementById("duration").textContent = secs(x.seconds);
  // the estimate `history` prints (localcloud/run_cost.py), once the run has ended
  document.getElementById("execution-cost").innerHTML = x.cost
    ? `<pre>${esc(x.cost.join("\n"))}</pre>`
    : `<span class="muted">${x.status === "RUNNING" ? "estimated when the run ends" : "nothing: the run did nothing"}</span>`;
  document.getElementById("events").innerHTML = eventsTable(x.events);
  if (view.selected) showState(x);
  return x.status === "RUNNING";
}

function drawGraph(g) {
  const edges = g.edges.map((e) => {
    if (!e.points.length) return "";
    const d = "M" + e.points.map((p) => p.join(",")).join(" L");
    const title = `<title>${esc(e.source)} → ${esc(e.target)}${e.label ? ": " + esc(e.label) : ""}</title>`;
    return `<g class="edge-group"><path class="edge ${e.kind}${e.taken ? " taken" : ""}" data-from="${esc(e.source)}" data-to="${esc(e.target)}" d="${d}" marker-end="url(#arrow${e.kind === "catch" ? "-catch" : ""})"/><path class="edge-hit" d="${d}"/>${title}</g>`;
  }).join("");
  const nodes = g.nodes.map((n) => {
    const terminal = n.name === "__start__" || n.name === "__end__";
    const label = terminal ? n.type : n.name;
    return `<g class="node ${n.status}${terminal ? " terminal" : ""}" data-state="${esc(n.name)}" data-type="${esc(n.type)}" data-status="${n.status}">
      <rect x="${n.x - n.width / 2}" y="${n.y - n.height / 2}" width="${n.width}" height="${n.height}"/>
      <text x="${n.x}" y="${n.y}">${esc(label)}</text>
      <title>${esc(n.type)}${n.comment ? ": " + esc(n.comment) : ""} (${n.status.replace("-", " ")})</title></g>`;
  }).join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${g.width}" height="${g.height}" viewBox="0 0 ${g.width} ${g.height}">
    <defs>
      <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker>
      <marker id="arrow-catch" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#ef6c00"/></marker>
    </defs>${edges}${nodes}</svg>`;
}

function transitions(x, name) {
  const out = x.graph ? x.graph.edges.filter((e) => e.source === name) : [];
  if (!out.length) return "";
  const target = (t) => (t === "__end__" ? "End" : esc(t));
  return `<h2>Transitions</h2><ul class="transitions">${out.map((e) => `<li class="${e.taken ? "taken" : ""}">
    ${e.kind === "catch" ? "on error" : e.kind === "default" ? "otherwise" : e.kind === "choice" ? "if" : "next"}
    ${e.kind === "choice" || e.kind === "catch" ? `<code>${esc(e.label.replace(/^catch /, ""))}</code>` : ""} → ${target(e.target)}
    ${e.taken ? '<span class="muted">(taken)</span>' : ""}</li>`).join("")}</ul>`;
}

function showState(x) {
  const name = view.selected;
  const panel = document.getElementById("state-panel");
  if (!panel || !x) return;
  document.querySelectorAll("#graph .node").forEach((g) => g.classList.toggle("selected", g.dataset.state === name));
  const node = x.graph && x.graph.nodes.find((n) => n.name === name);
  const s = x.states[name];
  if (!s) {
    panel.innerHTML = `<h2>${esc(name)}</h2><p>${badge(node ? node.status : "not-reached")}</p>
      <p class="muted">${node && node.comment ? esc(node.comment) : ""}</p>
      <p class="muted">This execution has not entered this state.</p>${transitions(x, name)}`;
    return;
  }
  const entries = s.entries;
  const index = view.run == null ? entries.length - 1 : Math.min(view.run, entries.length - 1);
  const e = entries[index] || {};
  const retries = s.attempts > s.runs ? ` (${s.attempts - s.runs} retries)` : "";
  panel.innerHTML = `<h2 id="state-name">${esc(name)} ${badge(s.status)}</h2>
    <p class="muted">${esc(s.type)}${node && node.comment ? " · " + esc(node.comment) : ""}</p>
    <dl class="facts">
      <dt>Ran</dt><dd id="state-runs">${s.runs} time${s.runs === 1 ? "" : "s"}${retries}</dd>
      <dt>Time in state</dt><dd>${secs(s.seconds)}</dd>
      ${s.error ? `<dt>Error</dt><dd class="error" id="state-error">${esc(s.error)}</dd>` : ""}
      ${s.cause ? `<dt>Cause</dt><dd class="error" id="state-cause">${esc(s.cause)}</dd>` : ""}
    </dl>
    ${entries.length > 1 ? `<p class="tabs">Run${s.first_entry > 1 ? ` (the last ${entries.length})` : ""}: ${entries.map((_, i) =>
      `<button data-run="${i}" ${i === index ? "disabled" : ""}>${i + s.first_entry}</button>`).join("")}</p>` : ""}
    <h2>Input</h2><pre id="state-input">${esc(pretty(e.input))}</pre>
    <h2>Output</h2><pre id="state-output">${esc(pretty(e.output)) || '<span class="muted">none</span>'}</pre>
    ${e.error ? `<h2>This run's error</h2><pre class="error">${esc(e.error)}: ${esc(e.cause)}</pre>` : ""}
    ${transitions(x, name)}`;
  panel.querySelectorAll("button[data-run]").forEach((b) => b.addEventListener("click", () => {
    view.run = Number(b.dataset.run); showState(x);
  }));
}

function eventsTable(events) {
  return `<table id="event-history"><thead><tr><th>ID</th><th>Type</th><th>Step</th><th>Time</th>
    <th>Details</th></tr></thead><tbody>${events.map((e) => `<tr data-type="${esc(e.type)}">
    <td class="num">${e.id}</td><td>${esc(e.type)}</td><td>${esc(e.state)}</td>
    <td>${clock(e.time)}</td><td class="${/Failed|TimedOut|Aborted/.test(e.type) ? "error" : ""}">${esc(e.detail)}</td></tr>`).join("")}
    </tbody></table>`;
}

// ------------------------------------------------------------------------------ training
async function trainingListPage() {
  const jobs = await api("training-jobs");
  main.innerHTML = `<h1>Training jobs</h1>` + (jobs.length ? `<table id="training-jobs"><thead><tr>
    <th>Name</th><th>Status</th><th>Created</th><th>Ended</th></tr></thead><tbody>
    ${jobs.map((j) => `<tr><td><a href="#/training/${encodeURIComponent(j.name)}">${esc(j.name)}</a></td>
      <td>${badge(j.status)}</td><td>${clock(j.created)}</td><td>${clock(j.ended)}</td></tr>`).join("")}
    </tbody></table>` : `<p class="muted">No training jobs yet.</p>`);
  return jobs.some((j) => j.status === "InProgress" || j.status === "Stopping");
}

async function trainingPage(first, name) {
  const job = await api("training-jobs/" + encodeURIComponent(name));
  const running = job.status === "InProgress" || job.status === "Stopping";
  const points = job.epochs.rows.length;
  const drawn = `${points} ${job.status}`; // redraw only when an epoch or the status is new
  const plot = (first || view.plotDrawn !== drawn)
    ? await api("training-jobs/" + encodeURIComponent(name) + "/plot.svg") : null;
  const { columns, rows } = job.epochs;
  const oldPlot = document.getElementById("plot");
  main.innerHTML = `<h1>Training job ${esc(job.name)} ${badge(job.status)}</h1>
    <div class="card"><dl class="facts">
      <dt>Secondary status</dt><dd>${esc(job.secondary_status)}</dd>
      <dt>Hosts</dt><dd id="hosts">${job.instance_count} × ${esc(job.instance_type)}: ${job.hosts.map(esc).join(", ")}</dd>
      <dt>Training time</dt><dd>${job.seconds == null ? "-" : secs(job.seconds)}</dd>
      <dt>Final metrics</dt><dd id="final-metrics">${Object.entries(job.final_metrics).map(([k, v]) => `${esc(k)} = ${num(v)}`).join(", ") || "-"}</dd>
      <dt>Model</dt><dd>${esc(job.model_artifact)}</dd>
      ${job.failure_reason ? `<dt>Failure</dt><dd class="error">${esc(job.failure_reason)}</dd>` : ""}
    </dl></div>
    <h2>Metrics per epoch</h2>
    <div class="card plot" id="plot" data-epochs="${points}"></div>
    ${rows.length ? `<table id="epochs"><thead><tr>${columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead>
    <tbody>${rows.map((r) => `<tr>${r.map((v, i) => `<td class="num">${v == null ? "" : i === 0 ? v : Number(v).toFixed(4)}</td>`).join("")}</tr>`).join("")}</tbody></table>` : `<p class="muted">No epoch finished yet.</p>`}
    <h2>Status transitions</h2>
    <table><tbody>${job.transitions.map((t) => `<tr><td>${esc(t.status)}</td><td>${clock(t.start)}</td><td>${esc(t.message)}</td></tr>`).join("")}</tbody></table>
    <h2>Log (last ${job.log.length} of ${job.log_total} lines, every host)</h2>
    <pre class="log" id="log">${job.log.map((l) => `${esc(l.stream)}  ${esc(l.message)}`).join("\n")}</pre>`;
  const holder = document.getElementById("plot");
  if (plot != null) { holder.innerHTML = plot; view.plotDrawn = drawn; }
  else if (oldPlot) holder.innerHTML = oldPlot.innerHTML;
  return running;
}

// ------------------------------------------------------------------------------ endpoints
async function endpointsPage() {
  const endpoints = await api("endpoints");
  if (endpoints.length === 1) { location.replace("#/endpoints/" + encodeURIComponent(endpoints[0].name)); return false; }
  main.innerHTML = `<h1>Endpoints</h1>` + (endpoints.length ? `<table><thead><tr><th>Name</th><th>Status</th>
    <th>Created</th><th>Modified</th></tr></thead><tbody>${endpoints.map((e) => `<tr>
    <td><a href="#/endpoints/${encodeURIComponent(e.name)}">${esc(e.name)}</a></td><td>${badge(e.status)}</td>
    <td>${clock(e.created)}</td><td>${clock(e.modified)}</td></tr>`).join("")}</tbody></table>`
    : `<p class="muted">No endpoint yet: a successful run deploys one.</p>`);
  return true;
}

function perMinute(series) {
  const minutes = [...new Set(Object.values(series).flatMap((points) => points.map((p) => p[0])))].sort();
  if (!minutes.length) return `<p class="muted">No invocations in the last hour.</p>`;
  const names = Object.keys(series);
  const value = (name, minute) => (series[name].find((p) => p[0] === minute) || [0, 0])[1];
  return `<table class="per-minute"><thead><tr><th>Minute</th>${names.map((n) => `<th>${esc(n)}</th>`).join("")}</tr></thead>
    <tbody>${minutes.map((m) => `<tr><td>${minute(m)}</td>${names.map((n) =>
      `<td class="num">${value(n, m)}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

async function endpointPage(first, name) {
  const ep = await api("endpoints/" + encodeURIComponent(name));
  main.innerHTML = `<h1>Endpoint ${esc(ep.name)} ${badge(ep.status)}</h1>
    <div class="card"><dl class="facts">
      <dt>Endpoint config</dt><dd id="endpoint-config">${esc(ep.config)}</dd>
      ${ep.pending_config ? `<dt>Deploying</dt><dd>${esc(ep.pending_config)}</dd>` : ""}
      <dt>Created</dt><dd>${clock(ep.created)}</dd><dt>Last modified</dt><dd>${clock(ep.modified)}</dd>
      ${ep.failure_reason ? `<dt>Failure</dt><dd class="error">${esc(ep.failure_reason)}</dd>` : ""}
    </dl></div>
    <h2>Variants</h2>
    <table id="variants"><thead><tr><th>Variant</th><th>Model</th><th>Instance type</th><th>Instances</th>
      <th>Desired</th><th>Weight</th><th>Autoscaling</th></tr></thead><tbody>
    ${ep.variants.map((v) => `<tr data-variant="${esc(v.name)}"><td>${esc(v.name)}</td><td>${esc(v.model)}</td>
      <td>${esc(v.instance_type)}</td><td class="num current-instances">${v.current_instances ?? "-"}</td>
      <td class="num">${v.desired_instances ?? "-"}</td><td class="num">${v.current_weight ?? "-"}</td>
      <td>${v.scaling.targets.map((t) => `${t.min}..${t.max} instances`).join(", ") || "none"}
        ${v.scaling.policies.map((p) => `<br>${esc(p.name)}: ${esc(p.metric)} target ${esc(p.target_value)}`).join("")}</td></tr>`).join("")}
    </tbody></table>
    <h2>Alarms on this endpoint</h2>
    ${ep.alarms.length ? `<table id="alarms"><thead><tr><th>Alarm</th><th>State</th><th>Metric</th><th>Condition</th><th>Reason</th></tr></thead><tbody>
    ${ep.alarms.map((a) => `<tr><td>${esc(a.name)}</td><td>${badge(a.state)}</td><td>${esc(a.metric)}</td>
      <td>${esc(a.condition)}</td><td>${esc(a.reason)}</td></tr>`).join("")}</tbody></table>`
      : `<p class="muted">No CloudWatch alarm watches this endpoint.</p>`}
    <h2>Instances (one log stream each; first and last log line)</h2>
    <table id="instances"><thead><tr><th>Variant</th><th>Instance</th><th>First log</th><th>Last log</th></tr></thead><tbody>
    ${ep.instances.map((i) => `<tr><td>${esc(i.variant)}</td><td class="instance-id">${esc(i.instance)}</td>
      <td>${clock(i.first_log)}</td><td>${clock(i.last_log)}</td></tr>`).join("")}</tbody></table>
    ${ep.variants.map((v) => `<h2>${esc(v.name)}: scaling activity</h2>
      ${v.scaling.activities.length ? `<table><thead><tr><th>Start</th><th>End</th><th>Status</th><th>Description</th><th>Cause</th></tr></thead><tbody>
      ${v.scaling.activities.map((a) => `<tr><td>${clock(a.start)}</td><td>${clock(a.end)}</td><td>${esc(a.status)}</td>
        <td>${esc(a.description)}</td><td>${esc(a.cause)}</td></tr>`).join("")}</tbody></table>`
        : `<p class="muted">${esc(v.scaling.activity_note || "No scaling activity yet.")}</p>`}
      <h2>${esc(v.name)}: invocations and errors per minute (CloudWatch AWS/SageMaker)</h2>
      ${perMinute(v.per_minute)}`).join("")}`;
  return true;
}

// ------------------------------------------------------------------------------ registry
async function registryPage() {
  const registry = await api("registry");
  main.innerHTML = `<h1>Model registry</h1>` + (registry.groups.length ? registry.groups.map((g) => `
    <h2>${esc(g.name)}</h2><table><thead><tr><th>Version</th><th>Approval</th><th>Status</th><th>Created</th>
    <th>Description</th><th>Metrics and metadata</th></tr></thead><tbody>${g.versions.map((v) => `<tr>
    <td class="num">${esc(v.version)}</td><td>${badge(v.approval)}</td><td>${esc(v.status)}</td><td>${clock(v.created)}</td>
    <td>${esc(v.description)}</td><td>${Object.entries(v.metadata).map(([k, x]) => `${esc(k)} = ${esc(x)}`).join("<br>")}</td></tr>`).join("")}
    </tbody></table>`).join("") : `<p class="muted">No model package groups: this stack does not use the model registry.</p>`);
  return false;
}

api("overview").then((o) => {
  document.getElementById("title").textContent = o.title;
  document.title = o.title + " console";
}).catch(() => {});
render(true);

// ------------------------------------------------------------------------------ tuning jobs
const tuningRunning = (status) => status === "InProgress" || status === "Stopping";

async function tuningListPage() {
  const jobs = await api("tuning-jobs");
  main.innerHTML = `<h1>Tuning jobs</h1>` + (jobs.length ? `<table id="tuning-jobs"><thead><tr>
    <th>Name</th><th>Status</th><th>Strategy</th><th>Trials</th><th>Created</th><th>Ended</th></tr></thead><tbody>
    ${jobs.map((j) => `<tr><td><a href="#/tuning/${encodeURIComponent(j.name)}">${esc(j.name)}</a></td>
      <td>${badge(j.status)}</td><td>${esc(j.strategy)}</td>
      <td class="num">${Object.values(j.counters).reduce((a, b) => a + b, 0)}</td>
      <td>${clock(j.created)}</td><td>${clock(j.ended)}</td></tr>`).join("")}
    </tbody></table>` : `<p class="muted">No tuning jobs yet.</p>`);
  return jobs.some((j) => tuningRunning(j.status));
}

async function tuningPage(first, name) {
  const job = await api("tuning-jobs/" + encodeURIComponent(name));
  const plot = await api("tuning-jobs/" + encodeURIComponent(name) + "/plot.svg");
  const names = [...new Set(job.trials.flatMap((t) => Object.keys(t.hyperparameters)))].sort();
  const counters = Object.entries(job.counters).filter(([, n]) => n).map(([k, n]) => `${esc(k)} ${n}`).join(", ");
  main.innerHTML = `<h1>Tuning job ${esc(job.name)} ${badge(job.status)}</h1>
    <div class="card"><dl class="facts">
      <dt>Strategy</dt><dd>${esc(job.strategy)} (early stopping ${esc(job.early_stopping)})</dd>
      <dt>Objective</dt><dd>${esc(job.objective.Type)} ${esc(job.objective.MetricName)}</dd>
      <dt>Trials</dt><dd id="tuning-counters">${counters || "-"} of ${esc(job.limits.MaxNumberOfTrainingJobs ?? "all")}, ${esc(job.limits.MaxParallelTrainingJobs)} at once</dd>
      <dt>Best</dt><dd>${job.best ? `<a href="#/training/${encodeURIComponent(job.best)}">${esc(job.best)}</a>` : "-"}</dd>
      ${job.failure_reason ? `<dt>Failure</dt><dd class="error">${esc(job.failure_reason)}</dd>` : ""}
    </dl></div>
    <h2>Objective over the trials</h2>
    <div class="card plot" id="tuning-plot">${plot}</div>
    <table id="trials"><thead><tr><th>Trial</th><th>Status</th>${names.map((n) => `<th>${esc(n)}</th>`).join("")}
      <th>${esc(job.objective.MetricName)}</th></tr></thead><tbody>
    ${job.trials.map((t) => `<tr class="${t.best ? "best" : ""}">
      <td><a href="#/training/${encodeURIComponent(t.name)}">${esc(t.name)}</a>${t.best ? " (best)" : ""}</td>
      <td>${badge(t.status)}</td>${names.map((n) => `<td class="num">${esc(t.hyperparameters[n])}</td>`).join("")}
      <td class="num">${t.objective == null ? "-" : num(t.objective)}</td></tr>`).join("")}
    </tbody></table>`;
  return tuningRunning(job.status);
}
