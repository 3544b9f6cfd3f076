// The proctor's wall: every seat as a tile, kept current by /ws/events pushes (no polling),
// problems first; arrows move, Enter opens a student, Esc returns to the wall.
"use strict";

const ui = {
  grid: document.querySelector("#grid"),
  sort: document.querySelector("#sort"),
  exam: document.querySelector("#exam"),
  focused: null, // stream id of the tile the keyboard is on
  order: [], // stream ids as shown
  layoutTimer: null,
};

function openSeat(id) {
  ui.focused = id;
  thumbs.pause(true); // the wall is covered: its pictures would go unseen
  detail.open(id);
}

function closeSeat() {
  const id = detail.close();
  if (id == null) return;
  thumbs.pause(false);
  focusTile(id);
}

function updateSeat(seat) {
  if (!seat) return;
  renderTile(seat, openSeat);
  detail.render(seat);
  scheduleLayout();
}

// Sorting waits a moment, so a burst of pushes moves tiles once.
function scheduleLayout() {
  if (ui.layoutTimer == null) ui.layoutTimer = setTimeout(layout, 200);
}

function layout() {
  ui.layoutTimer = null;
  const ordered = orderedSeats(ui.sort.value, ui.exam.value);
  placeTiles(ordered);
  ui.order = ordered.map((s) => s.id);
  ui.grid.dataset.order = ui.order.join(",");
  document.querySelector("#empty").hidden = seats.size > 0;
  const open = ordered.filter((s) => s.open.size).length;
  document.querySelector("#counts").textContent = `${ordered.length} shown · ${open} with open events`;
  const exams = examIds();
  const have = [...ui.exam.options].slice(1).map((o) => o.value);
  if (exams.join() !== have.join()) {
    const keep = ui.exam.value;
    ui.exam.replaceChildren(new Option("all", ""), ...exams.map((e) => new Option(e, e)));
    ui.exam.value = exams.includes(keep) ? keep : "";
  }
  if (ui.focused && !ui.order.includes(ui.focused)) ui.focused = null;
  markFocus();
  // Pictures start once tiles exist: their size decides the picture width.
  if (!thumbs.ws && ui.order.length) thumbs.connect();
}

function markFocus() {
  for (const el of ui.grid.querySelectorAll(".tile.focused")) el.classList.remove("focused");
  const el = ui.focused && tileEls.get(ui.focused);
  if (el) el.classList.add("focused");
}

function focusTile(id) {
  ui.focused = id;
  markFocus();
  const el = tileEls.get(id);
  if (el) { el.focus({ preventScroll: true }); el.scrollIntoView({ block: "nearest" }); }
}

function columns() {
  return getComputedStyle(ui.grid).gridTemplateColumns.split(" ").filter(Boolean).length || 1;
}

const MOVES = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: "up", ArrowDown: "down" };

document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { closeSeat(); return; }
  if (detail.id != null || ev.target.closest("select, input, button")) return;
  if (ev.key === "Enter" && ui.focused) { ev.preventDefault(); openSeat(ui.focused); return; }
  const move = MOVES[ev.key];
  if (move === undefined || !ui.order.length) return;
  ev.preventDefault();
  const at = ui.order.indexOf(ui.focused);
  if (at < 0) { focusTile(ui.order[0]); return; }
  const step = move === "up" ? -columns() : move === "down" ? columns() : move;
  const next = at + step;
  if (next >= 0 && next < ui.order.length) focusTile(ui.order[next]);
});

document.querySelector("#detail .d-close").addEventListener("click", closeSeat);
ui.sort.addEventListener("change", layout);
ui.exam.addEventListener("change", layout);
window.addEventListener("resize", () => thumbs.resized());

async function loadOpenEvents() {
  const resp = await fetch("/api/events?state=open&limit=1000");
  if (!resp.ok) return;
  for (const seat of seats.values()) seat.open.clear();
  (await resp.json()).forEach((e) => applyEvent(e));
  seats.forEach((seat) => updateSeat(seat));
}

// A stream the wall has not seen: its status once, for the session (state pushes carry none).
async function learnStream(id) {
  const resp = await fetch(`/api/streams/${encodeURIComponent(id)}`);
  if (resp.ok) updateSeat(applyStatus(await resp.json()));
}

let lastSeq = null;

function connectEvents(delay = 500) {
  const since = lastSeq == null ? "" : `?since_seq=${lastSeq}`;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(withToken(`${proto}://${location.host}/ws/events${since}`));
  const conn = document.querySelector("#conn");
  ws.onopen = () => { conn.textContent = "live"; conn.className = "badge open"; delay = 500; };
  ws.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "hello") {
      const ids = new Set(ev.streams.map((s) => s.id));
      for (const id of [...tileEls.keys()]) if (!ids.has(id)) dropTile(id);
      forgetSeatsExcept(ids);
      ev.streams.forEach((s) => updateSeat(applyStatus(s)));
      // First contact, or events were missed beyond replay: the open ones, asked once.
      if (lastSeq == null || !ev.complete) loadOpenEvents();
      if (lastSeq == null) lastSeq = ev.seq;
      return;
    }
    if (ev.seq != null) lastSeq = ev.seq;
    if (ev.type === "stream.state") {
      const known = seats.has(ev.stream);
      updateSeat(applyStatus(ev));
      if (!known) learnStream(ev.stream);
      // A stream removed and added again needs asking for anew: its pictures ended with it.
      if (ev.state === "live") thumbs.announce();
    } else if (ev.type === "analysis") {
      updateSeat(applyAnalysis(ev));
      detail.analysis(ev);
    } else if (ev.type === "event") {
      updateSeat(applyEvent(ev.event));
      detail.event(ev.event);
    }
  };
  ws.onclose = () => {
    conn.textContent = "disconnected"; conn.className = "badge closed";
    setTimeout(() => connectEvents(Math.min(delay * 2, 10000)), delay);
  };
}

// The "for how long" of each tile's problem moves on between pushes.
setInterval(() => { for (const seat of seats.values()) if (seat.open.size) renderTile(seat, openSeat); }, 5000);
connectEvents();
