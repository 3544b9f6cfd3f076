// Events: incidents newest first, updated in place as they open, grow and close, with their
// snapshot, clip, search and acknowledgement.
"use strict";

const eventItems = new Map();
const EVENTS_SHOWN = 50;

function eventTime(ts) {
  return ts == null ? "" : new Date(ts * 1000).toLocaleTimeString();
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
  li.dataset.acknowledged = e.acknowledged;
  const sev = li.querySelector(".severity");
  sev.textContent = e.severity;
  sev.className = `badge severity ${e.severity}`;
  li.querySelector(".ev-title").textContent = `${e.title} · ${e.stream}`;
  li.querySelector(".ev-summary").textContent = e.summary;
  li.querySelector(".ev-when").textContent =
    `${e.state} · ${eventTime(e.started_at)}${e.ended_at ? ` – ${eventTime(e.ended_at)}` : ""}`;
  const img = li.querySelector(".ev-snapshot");
  if (e.snapshot_url && !img.getAttribute("src")) img.src = withToken(e.snapshot_url);
  img.hidden = !e.snapshot_url;
  const clip = li.querySelector(".ev-clip");
  clip.hidden = !e.clip_url;
  if (e.clip_url) clip.href = withToken(e.clip_url);
  li.querySelector(".ack").hidden = e.acknowledged;
  document.querySelector("#events").hidden = false;
}

async function loadEvents(q = "") {
  const params = new URLSearchParams({ limit: EVENTS_SHOWN });
  if (q) params.set("q", q);
  const resp = await fetch(`/api/events?${params}`);
  if (!resp.ok) return;
  const list = document.querySelector("#event-list");
  list.replaceChildren();
  eventItems.clear();
  (await resp.json()).forEach((e) => renderEvent(e, { prepend: false }));
  document.querySelector("#events").hidden = false;
}

async function acknowledge(id) {
  const resp = await fetch(`/api/events/${encodeURIComponent(id)}/ack`, { method: "POST" });
  const data = await resp.json().catch(() => ({}));
  const out = document.querySelector("#event-error");
  if (!resp.ok) { out.textContent = data.error || `error ${resp.status}`; return; }
  out.textContent = "";
  renderEvent(data);
}

// A live event joins the list unless a search is showing other results.
function onIncident(e) {
  if (document.querySelector("#event-q").value && !eventItems.has(e.id)) return;
  renderEvent(e);
}

function searchEvents(ev) {
  ev.preventDefault();
  loadEvents(document.querySelector("#event-q").value.trim());
}

document.querySelector("#event-search").addEventListener("submit", searchEvents);
document.querySelector("#event-search-go").addEventListener("click", searchEvents);

loadEvents();
