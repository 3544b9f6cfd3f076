// Proctoring on a stream card: the attention badges (present / no face / several faces /
// looking away, and each open incident with its age) from the attention analyzer's results,
// the "degraded" badge from the stream status while overload sheds its analyzers, and the
// proctor's report of the stream's exam session (GET /api/sessions/{id}/summary).
"use strict";

const INCIDENT_LABELS = { absent: "absent", multiple_faces: "several faces", looking_away: "looking away" };

// What a proctor reads first: the open incident if any, else what the last frame showed.
function attentionState(r) {
  if (r.incident && r.incident.length) return { text: INCIDENT_LABELS[r.incident[0]] || r.incident[0], level: "alarm" };
  if (!r.present) return { text: "no face", level: "warn" };
  if (r.faces > 1) return { text: `${r.faces} faces`, level: "warn" };
  if (r.looking_away) return { text: "looking away", level: "warn" };
  return { text: "present", level: "ok" };
}

function showAttention(card, r, ts) {
  const box = card.querySelector(".attention");
  box.hidden = false;
  const state = attentionState(r);
  const main = box.querySelector(".attention-state");
  main.textContent = state.text;
  main.className = `badge attention-state ${state.level}`;
  const pose = r.yaw == null ? "" : `yaw ${r.yaw.toFixed(0)}° · pitch ${r.pitch.toFixed(0)}°`;
  box.querySelector(".attention-note").textContent = [`${r.faces} face(s)`, pose].filter(Boolean).join(" · ");
  const list = box.querySelector(".incidents");
  list.replaceChildren(...(r.incident || []).map((kind) => {
    const since = (r.incident_since || {})[kind];
    const b = document.createElement("span");
    b.className = "badge incident";
    b.dataset.kind = kind;
    b.textContent = `${INCIDENT_LABELS[kind] || kind}${since ? ` ${Math.max(0, ts - since).toFixed(0)} s` : ""}`;
    return b;
  }));
}

function showDegraded(card, status) {
  const badge = card.querySelector(".degraded");
  const why = status.degraded;
  badge.hidden = !why;
  if (why) {
    badge.textContent = why.reason === "overload" ? `degraded ${Math.round(why.share * 100)}%` : "degraded";
    badge.title = why.detail;
  }
  const button = card.querySelector(".report-toggle");
  button.hidden = !status.session;
  card.dataset.session = status.session ? status.session.session_id : "";
}

const minutes = (m) => `${m.toFixed(1)} min`;
const clock = (t) => (t == null ? "now" : new Date(t * 1000).toLocaleTimeString());

function reportView(s) {
  const root = document.createElement("div");
  const line = (text) => { const p = document.createElement("p"); p.textContent = text; root.append(p); return p; };
  line(`Present ${minutes(s.minutes_present)} of ${minutes(s.minutes_observed)} observed`).className = "presence";
  const table = document.createElement("table");
  table.className = "incident-table";
  table.innerHTML = "<thead><tr><th>incident</th><th>count</th><th>minutes</th><th>episodes</th></tr></thead>";
  const body = document.createElement("tbody");
  for (const [kind, found] of Object.entries(s.incidents)) {
    const tr = document.createElement("tr");
    tr.dataset.kind = kind;
    const episodes = found.episodes.map((e) => `${clock(e.start)}–${e.open ? "now" : clock(e.end)}`).join(", ");
    for (const text of [INCIDENT_LABELS[kind] || kind, found.count, found.minutes.toFixed(1), episodes || "–"]) {
      const td = document.createElement("td");
      td.textContent = String(text);
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(body);
  root.append(table);
  const hr = s.heart_rate;
  line(hr.mean == null ? "Heart rate: no trusted reading"
    : `Heart rate ${hr.mean} bpm (${hr.min}–${hr.max}), trusted ${Math.round(hr.trusted_share * 100)}% of the time`).className = "hr-summary";
  const dist = s.emotions.distribution;
  if (dist) {
    const bars = document.createElement("div");
    bars.className = "emotion-share";
    for (const [label, share] of Object.entries(dist)) {
      if (!share) continue;
      const seg = document.createElement("i");
      seg.style.width = `${(share * 100).toFixed(1)}%`;
      seg.style.background = EMOTION_COLORS[label] || "#ccc";
      seg.title = `${label} ${(share * 100).toFixed(0)}%`;
      bars.append(seg);
    }
    root.append(bars);
    line(`Mostly ${s.emotions.dominant}`);
  }
  return root;
}

async function toggleReport(card) {
  const section = card.querySelector(".report");
  if (!section.hidden) { section.hidden = true; return; }
  const id = card.dataset.session;
  const resp = await fetch(`/api/sessions/${encodeURIComponent(id)}/summary`);
  const data = await resp.json().catch(() => ({}));
  section.hidden = false;
  section.querySelector(".report-body").replaceChildren(
    resp.ok ? reportView(data) : Object.assign(document.createElement("p"), { textContent: data.error || `error ${resp.status}` }));
}
