// The wall's model: what each seat shows (stream status, session, the latest readings, its
// open events) and how seats are ordered and filtered. No DOM here.
"use strict";

const SEVERITY_RANK = { info: 1, warning: 2, critical: 3 };
const EMOTION_ICONS = {
  angry: "😠", disgust: "🤢", fear: "😨", happy: "😀", sad: "😢", surprise: "😮", neutral: "😐",
};
const ATTENTION_LABELS = {
  present: "present", absent: "absent", several: "several faces", away: "looking away",
};

const seats = new Map(); // stream id -> seat

function seatOf(id) {
  let seat = seats.get(id);
  if (!seat) {
    seat = { id, status: {}, session: null, bpm: null, emotion: null, attention: null, faces: null, open: new Map() };
    seats.set(id, seat);
  }
  return seat;
}

// A stream status (the hello snapshot, GET /api/streams/{id}) or a stream.state event; the
// latter carries no session, so the one known is kept.
function applyStatus(status) {
  const seat = seatOf(status.id || status.stream);
  Object.assign(seat.status, status);
  if ("session" in status) seat.session = status.session;
  return seat;
}

function applyAnalysis(ev) {
  const seat = seats.get(ev.stream);
  if (!seat) return null;
  const r = ev.result || {};
  if (ev.analyzer === "attention") {
    seat.faces = r.faces;
    seat.attention = r.faces === 0 ? "absent" : r.faces > 1 ? "several" : r.looking_away ? "away" : "present";
  } else if (ev.analyzer === "heart_rate") {
    seat.bpm = r.bpm ?? null;
  } else if (ev.analyzer === "emotion") {
    seat.emotion = r.face_detected ? r.dominant_emotion : null;
  } else {
    return null;
  }
  return seat;
}

// An incident as /api/events and the "event" push give it: kept while open.
function applyEvent(e) {
  const seat = seats.get(e.stream);
  if (!seat) return null;
  if (e.state === "open") seat.open.set(e.id, e);
  else seat.open.delete(e.id);
  return seat;
}

function worstSeverity(seat) {
  let worst = null;
  for (const e of seat.open.values()) {
    if (!worst || SEVERITY_RANK[e.severity] > SEVERITY_RANK[worst]) worst = e.severity;
  }
  return worst;
}

function oldestOpen(seat) {
  let oldest = Infinity;
  for (const e of seat.open.values()) oldest = Math.min(oldest, e.started_at);
  return oldest;
}

// The open events a proctor reads on the tile: worst first, then oldest.
function problems(seat) {
  return [...seat.open.values()].sort(
    (a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.started_at - b.started_at);
}

const byName = (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true });
const NO_SESSION = "\uffff"; // seats without a session go last

const ORDERS = {
  name: byName,
  session: (a, b) =>
    (a.session?.session_id ?? NO_SESSION).localeCompare(b.session?.session_id ?? NO_SESSION, undefined, { numeric: true }) ||
    byName(a, b),
  // Open events first, the worst severity first, then the longest running, then by name.
  problems: (a, b) =>
    (SEVERITY_RANK[worstSeverity(b)] || 0) - (SEVERITY_RANK[worstSeverity(a)] || 0) ||
    oldestOpen(a) - oldestOpen(b) || byName(a, b),
};

function orderedSeats(order, exam) {
  return [...seats.values()]
    .filter((s) => !exam || s.session?.exam_id === exam)
    .sort(ORDERS[order] || ORDERS.problems);
}

function examIds() {
  const ids = new Set();
  for (const s of seats.values()) if (s.session?.exam_id) ids.add(s.session.exam_id);
  return [...ids].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
}

function forgetSeatsExcept(ids) {
  for (const id of [...seats.keys()]) if (!ids.has(id)) seats.delete(id);
}
