// Flows: list with state and controls, and a live view of a run (nodes in topological order,
// with a timeline bar per node so parallel branches show side by side).
"use strict";

const flowRows = new Map();
let shownRun = null; // {flow, run_id, record}

async function api(method, path) {
  const resp = await fetch(path, { method });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || `error ${resp.status}`);
  return data;
}

function renderFlow(f) {
  let row = flowRows.get(f.id);
  if (!row) {
    row = document.querySelector("#flow-row").content.firstElementChild.cloneNode(true);
    row.dataset.flow = f.id;
    row.querySelector(".fid").textContent = f.id;
    row.querySelector(".start").addEventListener("click", () => control(f.id, "start"));
    row.querySelector(".stop").addEventListener("click", () => control(f.id, "stop"));
    row.querySelector(".run").addEventListener("click", () => control(f.id, "run"));
    row.querySelector(".fid").addEventListener("click", () => showLatest(f.id));
    document.querySelector("#flow-list").append(row);
    flowRows.set(f.id, row);
  }
  row.querySelector(".trigger").textContent = f.trigger;
  const state = row.querySelector(".fstate");
  state.textContent = f.state;
  state.className = `badge fstate ${f.state === "running" ? "live" : ""}`;
  row.dataset.state = f.state;
  const last = f.last_run;
  if (last) {
    row.querySelector(".last").textContent =
      `${last.status}${last.duration_s != null ? ` · ${last.duration_s.toFixed(2)} s` : ""}`;
  }
  document.querySelector("#flows").hidden = false;
}

async function loadFlows() {
  try {
    (await api("GET", "/api/flows")).forEach(renderFlow);
  } catch (err) { /* retried on the next event */ }
}

async function control(id, action) {
  const out = document.querySelector("#flow-error");
  try {
    const data = await api("POST", `/api/flows/${encodeURIComponent(id)}/${action}`);
    out.textContent = "";
    if (action === "run") await showRun(id, data.run_id);
    else renderFlow(data);
  } catch (err) { out.textContent = `${id}: ${err.message}`; }
}

async function showLatest(id) {
  const runs = await api("GET", `/api/flows/${encodeURIComponent(id)}/runs?limit=1`);
  if (runs.length) await showRun(id, runs[0].run_id);
}

async function showRun(flow, runId) {
  const record = await api("GET", `/api/flows/${encodeURIComponent(flow)}/runs/${runId}`);
  shownRun = { flow, run_id: runId, record };
  drawRun();
}

function drawRun() {
  const view = document.querySelector("#run-view");
  const { record } = shownRun;
  view.hidden = false;
  view.querySelector(".run-title").textContent =
    `${record.flow_id} · run ${record.run_id} · ${record.status}` +
    (record.duration_s != null ? ` · ${record.duration_s.toFixed(3)} s` : "") +
    (record.error ? ` · ${record.error}` : "");
  const t0 = record.started_at;
  const ends = record.nodes.map((n) => n.finished_at || Date.now() / 1000);
  const span = Math.max(0.001, Math.max(...ends) - t0);
  const body = view.querySelector("tbody");
  body.replaceChildren();
  for (const n of record.nodes) {
    const tr = document.createElement("tr");
    tr.dataset.node = n.id;
    tr.dataset.status = n.status;
    const start = n.started_at != null ? n.started_at - t0 : null;
    const dur = n.duration_s;
    tr.innerHTML = `<td class="nid"></td><td class="ntype"></td><td><span class="badge nstatus ${n.status}"></span></td>` +
      `<td class="num">${start == null ? "–" : (start * 1000).toFixed(0)}</td>` +
      `<td class="num">${dur == null ? "–" : (dur * 1000).toFixed(0)}</td><td class="gantt"><i></i></td><td class="note"></td>`;
    tr.querySelector(".nid").textContent = n.id;
    tr.querySelector(".ntype").textContent = n.type;
    tr.querySelector(".nstatus").textContent = n.status;
    tr.querySelector(".note").textContent = n.error || n.reason || "";
    if (start != null) {
      const bar = tr.querySelector(".gantt i");
      bar.style.marginLeft = `${(start / span) * 100}%`;
      bar.style.width = `${Math.max(0.5, (((dur ?? span - start)) / span) * 100)}%`;
      bar.dataset.start = String(start);
      bar.dataset.end = String(start + (dur ?? 0));
    }
    body.append(tr);
  }
}

function onFlowEvent(ev) {
  if (ev.type === "flow.state" || ev.type === "flow.run") {
    loadFlows();
    if (ev.type === "flow.run" && shownRun && shownRun.run_id === ev.run_id) showRun(ev.flow, ev.run_id);
    else if (ev.type === "flow.run" && ev.status === "running" && (!shownRun || shownRun.flow === ev.flow)) {
      showRun(ev.flow, ev.run_id).catch(() => {});
    }
  } else if (ev.type === "flow.node" && shownRun && shownRun.run_id === ev.run_id) {
    showRun(ev.flow, ev.run_id).catch(() => {});
  }
}

loadFlows();
