// Events: incidents newest first, updated in place as they open, grow and close, with their
// snapshot, clip, a filter by stream and kind, search, acknowledgement, and each stream's
// count of events nobody has acknowledged yet.
"use strict";

const eventItems = new Map();
const EVENTS_SHOWN = 50;
const COUNTS_DELAY_MS = 250; // a burst of event messages costs one counts request
let unacked = {}; // stream id -> events not acknowledged (GET /api/events/counts)
let countsTimer = null;
let loads = 0; // only the newest list request may fill the list (filters change quickly)

function eventTime(ts) {
  return ts == null ? "" : new Date(ts * 1000).toLocaleTimeString();
}

function eventFilter() {
  return {
    stream: document.querySelector("#event-stream").value,
    kind: document.querySelector("#event-kind").value,
    q: document.querySelector("#event-q").value.trim(),
  };
}

function renderEvent(e, { prepend = true } = {}) {
  let li = eventItems.get(e.id);
  if (!li) {
    li = document.querySelector("#event-item").content.firstElementChild.cloneNode(true);
    li.dataset.event = e.id;
    li.querySelector(".ack").addEventListener("click", () => acknowledge(e.id));
    const list = document.querySelector("#event-list");
    if (prepend) list.prepend(li); else list.append(li);
    eventItems.set(e.id, li);
    while (list.children.length > EVENTS_SHOWN) {
      eventItems.delete(list.lastElementChild.dataset.event);
      list.lastElementChild.remove();
    }
  }
  li.dataset.state = e.state;
  li.dataset.kind = e.kind;
  li.dataset.stream = e.stream;
  li.dataset.acknowledged = e.acknowledged;
  const sev = li.querySelector(".severity");
  sev.textContent = e.severity;
  sev.className = `badge severity ${e.severity}`;
  li.querySelector(".ev-title").textContent = `${e.title} · ${e.stream}`;
  li.querySelector(".ev-summary").textContent = e.summary;
  li.querySelector(".ev-when").textContent =
    `${e.state} · ${eventTime(e.started_at)}${e.ended_at ? ` – ${eventTime(e.ended_at)}` : ""}`;
  li.querySelector(".ev-evidence").textContent = e.evidence_error ? `no evidence: ${e.evidence_error}` : "";
  const img = li.querySelector(".ev-snapshot");
  if (e.snapshot_url && !img.getAttribute("src")) img.src = withToken(e.snapshot_url);
  img.hidden = !e.snapshot_url;
  const clip = li.querySelector(".ev-clip");
  clip.hidden = !e.clip_url;
  if (e.clip_url) clip.href = withToken(e.clip_url);
  li.querySelector(".ack").hidden = e.acknowledged;
  document.querySelector("#events").hidden = false;
}

async function loadEvents() {
  const params = new URLSearchParams({ limit: EVENTS_SHOWN });
  for (const [key, value] of Object.entries(eventFilter())) if (value) params.set(key, value);
  const load = ++loads;
  const resp = await fetch(`/api/events?${params}`);
  if (!resp.ok) return;
  const events = await resp.json();
  if (load !== loads) return;
  const list = document.querySelector("#event-list");
  list.replaceChildren();
  eventItems.clear();
  events.forEach((e) => renderEvent(e, { prepend: false }));
  document.querySelector("#events").hidden = false;
}

async function acknowledge(id) {
  const resp = await fetch(`/api/events/${encodeURIComponent(id)}/ack`, { method: "POST" });
  const data = await resp.json().catch(() => ({}));
  const out = document.querySelector("#event-error");
  if (!resp.ok) { out.textContent = data.error || `error ${resp.status}`; return; }
  out.textContent = "";
  renderEvent(data);
  scheduleCounts();
}

// The count badge of one stream's card (app.js calls it for each new card too).
function showUnacked(card) {
  const n = unacked[card.dataset.stream] || 0;
  const badge = card.querySelector(".unacked");
  badge.dataset.count = n;
  badge.textContent = `${n} new`;
  badge.hidden = n === 0;
}

// The stream filter offers every stream with a card or with events, each with its count.
function syncStreamOptions() {
  const select = document.querySelector("#event-stream");
  const ids = new Set(Object.keys(unacked));
  document.querySelectorAll("#streams article.stream").forEach((c) => ids.add(c.dataset.stream));
  for (const id of [...ids].sort()) {
    let option = select.querySelector(`option[value="${CSS.escape(id)}"]`);
    if (!option) {
      option = document.createElement("option");
      option.value = id;
      select.append(option);
    }
    option.textContent = unacked[id] ? `${id} (${unacked[id]})` : id;
  }
}

async function loadCounts() {
  const resp = await fetch("/api/events/counts").catch(() => null);
  if (!resp || !resp.ok) return;
  const counts = await resp.json();
  unacked = Object.fromEntries(Object.entries(counts).map(([id, c]) => [id, c.unacknowledged]));
  document.querySelectorAll("#streams article.stream").forEach(showUnacked);
  syncStreamOptions();
}

function scheduleCounts() {
  if (countsTimer) return;
  countsTimer = setTimeout(() => { countsTimer = null; loadCounts(); }, COUNTS_DELAY_MS);
}

// A live event joins the list only if it matches the filter (a search shows its own results).
function onIncident(e) {
  scheduleCounts();
  const f = eventFilter();
  const matches = !f.q && (!f.stream || e.stream === f.stream) && (!f.kind || e.kind === f.kind);
  if (matches || eventItems.has(e.id)) renderEvent(e);
}

function searchEvents(ev) {
  ev.preventDefault();
  loadEvents();
}

document.querySelector("#event-search").addEventListener("submit", searchEvents);
document.querySelector("#event-search-go").addEventListener("click", searchEvents);
document.querySelector("#event-stream").addEventListener("change", loadEvents);
document.querySelector("#event-kind").addEventListener("change", loadEvents);

loadEvents();
loadCounts();
