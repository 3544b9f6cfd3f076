// Dashboard v0: stream list with live MJPEG view and live status, add/remove.
"use strict";

const cards = new Map();
const $ = (sel, root = document) => root.querySelector(sel);

function render(status) {
  let card = cards.get(status.id);
  if (!card) {
    card = $("#card").content.firstElementChild.cloneNode(true);
    card.dataset.stream = status.id;
    $(".sid", card).textContent = status.id;
    $(".view", card).src = `/api/streams/${encodeURIComponent(status.id)}/mjpeg`;
    $(".remove", card).addEventListener("click", () => removeStream(status.id));
    $("#streams").append(card);
    cards.set(status.id, card);
  }
  const state = $(".state", card);
  state.textContent = status.state;
  state.className = `badge state ${status.state}`;
  card.dataset.state = status.state;
  $(".fps", card).textContent = (status.fps_in ?? 0).toFixed(1);
  $(".frames", card).textContent = status.frames_in;
  $(".size", card).textContent = status.width ? `${status.width}×${status.height}` : "–";
  $(".reconnects", card).textContent = status.reconnects;
  $(".errors", card).textContent = status.decode_errors;
  $(".subs", card).textContent = status.subscribers;
  $(".age", card).textContent = status.last_frame_age_s == null ? "–" : `${status.last_frame_age_s.toFixed(1)} s`;
  $(".url", card).textContent = status.url;
  $(".error", card).textContent = status.state === "live" ? "" : (status.last_error || "");
}

function drop(id) {
  const card = cards.get(id);
  if (card) { card.remove(); cards.delete(id); }
  $("#empty").hidden = cards.size > 0;
}

async function refresh() {
  try {
    const resp = await fetch("/api/streams");
    if (!resp.ok) return;
    const list = await resp.json();
    const seen = new Set(list.map((s) => s.id));
    for (const id of [...cards.keys()]) if (!seen.has(id)) drop(id);
    list.forEach(render);
    $("#empty").hidden = list.length > 0;
  } catch (err) { /* server restarting: the next poll retries */ }
}

async function removeStream(id) {
  const resp = await fetch(`/api/streams/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (resp.ok || resp.status === 404) drop(id);
}

$("#add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const body = Object.fromEntries(new FormData(form));
  const resp = await fetch("/api/streams", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) { $("#form-error").textContent = data.error || `error ${resp.status}`; return; }
  $("#form-error").textContent = "";
  form.reset();
  render(data);
});

function connectEvents(delay = 500) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/events`);
  const conn = $("#conn");
  ws.onopen = () => { conn.textContent = "live"; conn.className = "badge open"; delay = 500; };
  ws.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "stream.state" && cards.has(ev.stream)) render(ev);
  };
  ws.onclose = () => {
    conn.textContent = "disconnected"; conn.className = "badge closed";
    setTimeout(() => connectEvents(Math.min(delay * 2, 10000)), delay);
  };
}

refresh();
setInterval(refresh, 1000);
connectEvents();
